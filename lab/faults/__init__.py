"""Faults a running lab can be given on purpose (`lab fault ...`): pure planning. The model reads
nothing: it says what the executor (lab.runtime.faults) must look at first, and turns what it saw
into operations that break the lab and operations that undo exactly that."""
