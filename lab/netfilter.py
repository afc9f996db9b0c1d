"""iptables-save's own spelling, shared by everything the lab writes for iptables-restore
(kube-proxy's rules, network policies), so rules read back exactly as written."""
from __future__ import annotations

import re

_PLAIN = re.compile(r"[A-Za-z0-9_-]+")


def quote(text: str) -> str:
    """As iptables-save prints a string (xtables_save_string): bare if plain, else quoted."""
    if _PLAIN.fullmatch(text):
        return text
    return '"' + re.sub(r"([\"'\\])", r"\\\1", text) + '"'


def comment(text: str) -> str:
    return f"-m comment --comment {quote(text)}"
