"""Scenarios: a topology, steps that change and break it, and assertions on what then happens."""
