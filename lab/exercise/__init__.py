"""Coursework: exercise folders, their sessions on a live lab, and autograding."""
