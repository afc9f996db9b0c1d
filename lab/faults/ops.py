"""Operations and reads as plain data (JSON round-trips them into the lab's record), and their text.

An op is (kind, where, body):
  ("ip", netns, [lines])        one `ip -batch` in netns
  ("tc", netns, [lines])        one `tc -batch` in netns
  ("nft", netns, script)        one `nft -f -` transaction in netns
  ("iptables", netns, [args])   one iptables call in netns
  ("sysctl", netns, {key: v})   net.* sysctls of netns
  ("signal", [pid, start], sig) a signal to the process with that PID and start time (never a reused PID)
  ("start", container key, "")  start a pod's container again (it was killed)
  ("sleep", seconds, "")        a pause (link-flap)
A read is a tuple of words the executor answers (lab.runtime.faults.observe); its text is its key in `observed`.
"""
from __future__ import annotations

from ipaddress import ip_network
from typing import Any, Sequence

Op = tuple
Read = tuple


def key(read: Read) -> str:
    return " ".join(str(w) for w in read)


def text(op: Op) -> str:
    """One op as a line a person reads (`lab fault list -v`, unit-test goldens)."""
    kind, where, body = op
    if kind in ("ip", "tc"):
        return f"{kind} -n {where} -batch: " + "; ".join(body)
    if kind == "nft":
        return f"nft -f in {where}: " + " ".join(body.split())
    if kind == "iptables":
        return f"iptables in {where}: " + " ".join(body)
    if kind == "sysctl":
        return f"sysctl in {where}: " + ", ".join(f"{k}={v}" for k, v in body.items())
    if kind == "signal":
        return f"kill -{body} {where[0]}"
    if kind == "start":
        return f"start container {where}"
    return f"{kind} {where}"


def normal(op: Sequence[Any]) -> Op:
    """An op as JSON gave it back (lists) made hashable and comparable with a fresh plan's."""
    kind, where, body = op
    return (kind, tuple(where) if isinstance(where, list) else where, tuple(body) if isinstance(body, list) else body)


def route_line(r: dict) -> str:
    """An `ip route replace` argument from one route of `ip -d -j route show`: the route exactly."""
    words = [] if r.get("type", "unicast") == "unicast" else [r["type"]]
    words.append(r["dst"])
    for field, word in (("gateway", "via"), ("dev", "dev"), ("protocol", "proto"), ("scope", "scope"),
                        ("prefsrc", "src"), ("metric", "metric")):
        if field in r:
            words += [word, str(r[field])]
    return " ".join(words + [f for f in r.get("flags", []) if f == "onlink"])


def same_dst(r: dict, cidr: str) -> bool:
    return r["dst"] != "default" and ip_network(r["dst"], strict=False) == ip_network(cidr, strict=False)
