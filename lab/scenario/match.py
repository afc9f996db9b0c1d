"""How a step's output is judged against its expectations (pure): contains, regex, JSON subset."""
from __future__ import annotations

import json
import re
from typing import Any, Optional

from lab.scenario.spec import Match

SHOWN = 200  # characters of output quoted in a failure


def check(m: Match, text: str, stream: str) -> Optional[str]:
    """None when `text` meets the expectation, else why not (quoting the output)."""
    if m.how == "contains":
        return None if m.value in text else f"{stream} does not contain {m.value!r}: {_quote(text)}"
    if m.how == "regex":
        return None if re.search(m.value, text, re.M) else f"{stream} does not match /{m.value}/: {_quote(text)}"
    try:
        data = json.loads(text)
    except ValueError as e:
        return f"{stream} is not JSON ({e}): {_quote(text)}"
    miss = subset(m.value, data)
    return None if miss is None else f"{stream} JSON: {miss}"


def subset(want: Any, got: Any, path: str = "$") -> Optional[str]:
    """munet's JSON match: every key of a wanted mapping is in the got one with a matching value
    (others may be there too); every item of a wanted list matches some item of the got list, in
    any order; scalars are equal. None when it matches, else the first difference."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return f"{path}: expected a mapping, got {_short(got)}"
        for k, v in want.items():
            if k not in got:
                return f"{path}.{k}: missing"
            miss = subset(v, got[k], f"{path}.{k}")
            if miss:
                return miss
        return None
    if isinstance(want, list):
        if not isinstance(got, list):
            return f"{path}: expected a list, got {_short(got)}"
        for i, w in enumerate(want):
            if all(subset(w, g) is not None for g in got):
                return f"{path}[{i}]: no item matches {_short(w)}"
        return None
    return None if want == got else f"{path}: expected {_short(want)}, got {_short(got)}"


def _short(v: Any) -> str:
    text = json.dumps(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _quote(text: str) -> str:
    text = text.strip()
    if not text:
        return "(empty)"
    return repr(text if len(text) <= SHOWN else text[:SHOWN] + "...")
