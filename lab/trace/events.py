"""`xtables-monitor --trace` output, parsed (pure).

Why xtables-monitor rather than `nft monitor trace`: iptables here is iptables-nft, so kube-proxy's
and the policies' rules are nf_tables rules with xt matches; nft prints them without their
comments, xtables-monitor prints them as iptables-save does, comment (the policy's name) included,
and still names the native nft tables' chains and verdicts (a fault's `k8snetlab_fault_*`).

A PACKET line starts a visit: the packet as one base chain sees it; the TRACE lines after it with
the same id are the rules that matched there and the chain's verdict.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

_COMMENT = re.compile(r'--comment (?:"((?:[^"\\]|\\.)*)"|(\S+))')


@dataclass(frozen=True)
class Packet:
    id: str
    fields: tuple[tuple[str, str], ...]

    def get(self, key: str) -> str:
        return dict(self.fields).get(key, "")

    def summary(self) -> str:
        port = lambda p: f":{p}" if p else ""  # noqa: E731
        ifs = " ".join(f"{k.lower()} {self.get(k)}" for k in ("IN", "OUT") if self.get(k))
        return f"{self.get('SRC')}{port(self.get('SPORT'))} → {self.get('DST')}{port(self.get('DPORT'))} ({ifs})"


@dataclass(frozen=True)
class Event:
    table: str
    chain: str
    kind: str          # rule | policy | return
    verdict: str       # ACCEPT, DROP, CONTINUE, RETURN, JUMP:CHAIN, GOTO:CHAIN
    rule: str = ""     # the rule as iptables-save writes it ("" for native nft rules)

    @property
    def comment(self) -> str:
        m = _COMMENT.search(self.rule)
        return (m.group(1) if m.group(1) is not None else m.group(2)).replace('\\"', '"') if m else ""

    def describe(self) -> str:
        """What dropped or accepted, as a reader names it: the comment, or table/chain."""
        where = f"{self.table} {self.chain}"
        return f"{where}: {self.comment}" if self.comment else (f"{where}: {self.rule}" if self.rule else where)


@dataclass
class Visit:
    packet: Packet
    events: list[Event] = field(default_factory=list)

    @property
    def hook(self) -> str:
        return f"{self.events[0].table} {self.events[0].chain}" if self.events else ""

    @property
    def verdict(self) -> Optional[Event]:
        """The event that ended the visit: a DROP/ACCEPT rule or the chain's policy."""
        for e in reversed(self.events):
            if e.verdict in ("ACCEPT", "DROP") or e.kind == "policy":
                return e
        return None

    def targets(self) -> list[Event]:
        return [e for e in self.events if e.kind == "rule" and e.verdict not in ("CONTINUE",)]


_VERDICTS = {"0xfffffffb": "RETURN", "0xfffffffd": "JUMP", "0xfffffffc": "GOTO"}


def _event(spec: str, rule: str) -> Optional[Event]:
    parts = spec.split(":")
    if len(parts) < 4:
        return None
    table, chain, kind = parts[0], parts[1], parts[2]
    if kind == "policy":
        return Event(table, chain, "policy", parts[3])
    verdict = ":".join(parts[4:]) if len(parts) > 4 else ""
    verdict = _VERDICTS.get(verdict, verdict)
    return Event(table, chain, kind, verdict, rule.strip())


def parse(text: str) -> list[Visit]:
    """Every visit in monitor output; lines that are neither PACKET nor TRACE are skipped."""
    visits: list[Visit] = []
    current: dict[str, Visit] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) < 3:
            continue
        if words[0] == "PACKET:":
            fields = tuple(tuple(w.split("=", 1)) for w in words[3:] if "=" in w)
            flags = tuple((w, "") for w in words[3:] if "=" not in w and w.isupper() and w.isalpha())
            visit = Visit(Packet(words[2], fields + flags))  # type: ignore[arg-type]
            visits.append(visit)
            current[words[2]] = visit
        elif words[0] == "TRACE:" and len(words) >= 4 and words[2] in current:
            spec, _, rule = line.split(None, 3)[3].partition(" ")
            event = _event(spec, rule)
            if event is not None:
                current[words[2]].events.append(event)
    return visits


def drops(visits: list[Visit]) -> list[Event]:
    """The rules that dropped a packet (REJECT too: its verdict is DROP once the answer is sent)."""
    return [v.verdict for v in visits if v.verdict is not None and v.verdict.verdict == "DROP"]


@dataclass(frozen=True)
class Leg:
    """The probe after a masquerade, whose source port (or echo id) may be remapped (kube-proxy's
    MASQUERADE --random-fully): from one of `sources` to one of `destinations`, destination port
    one of `ports`. Matched in both directions; the visits are kept afterwards only if they carry
    the port conntrack says the masquerade picked."""

    sources: tuple[str, ...]
    destinations: tuple[str, ...]
    ports: tuple[int, ...]


VXLAN_PORT = "8472"


def of_probe(visits: list[Visit], ports: set[str]) -> list[Visit]:
    """The visits of the probe's own packets: its source port (or the one a masquerade picked) as
    source or destination. Packets without ports (ICMP: matched by echo id) and VXLAN outer headers
    (their inner ports were matched by the rule and are not printed) are kept."""
    def mine(v: Visit) -> bool:
        sp, dp = v.packet.get("SPORT"), v.packet.get("DPORT")
        return not sp or sp in ports or dp in ports or VXLAN_PORT in (sp, dp)
    return [v for v in visits if mine(v)]


_CAPTURED = re.compile(r"^(\S+)\s+(In|Out|P|M|B|U)\s+(.*)$")


@dataclass(frozen=True)
class Captured:
    """One packet tcpdump saw (-i any -t): the interface, the direction, the decode (a VXLAN
    packet's outer and inner headers on one line)."""

    interface: str
    direction: str      # In, Out, P (a bridge port: to another host), M, B
    text: str


def _short(text: str) -> str:
    """Without sequence numbers and TCP options: the addresses, flags and length are the point."""
    text = re.sub(r", seq [^,]+(, ack \d+)?, win \d+(, options \[[^]]*\])?", "", text)
    return re.sub(r"\s+", " ", text).strip()


def parse_capture(text: str) -> list[Captured]:
    """`tcpdump -i any -nn -t -T vxlan` output: one record per packet; a line that does not start
    with an interface and direction continues the one before (a VXLAN packet's inner header)."""
    out: list[Captured] = []
    for line in text.splitlines():
        if not line.strip() or line.startswith(("tcpdump:", "listening on")) or \
                re.match(r"^\d+ packets? (captured|received|dropped)", line):
            continue
        m = _CAPTURED.match(line)
        if m and not line.startswith("IP"):
            out.append(Captured(m.group(1), m.group(2), _short(m.group(3))))
        elif out:
            last = out[-1]
            out[-1] = Captured(last.interface, last.direction, f"{last.text} | {_short(line)}")
    return out


def captures_of_probe(records: list[Captured], ports: set[str]) -> list[Captured]:
    """The captured packets that carry one of the probe's ports (ICMP records have none: kept)."""
    def mine(c: Captured) -> bool:   # a VXLAN packet: its inner header (after " | ") decides
        found = set(re.findall(r"(?:\d+\.\d+\.\d+\.\d+|[0-9a-f]*:[0-9a-f:]+)\.(\d+)[ :]", c.text.rpartition(" | ")[2] + " "))
        return not found or bool(found & ports)
    return [c for c in records if mine(c)]


TIMED_OUT = "timed out"  # Observed.error for a probe nothing answered (silence)


@dataclass
class Observed:
    """What one probe connection did: its answer, the traces per namespace, conntrack, routes."""

    sport: int
    ok: bool = False
    error: str = ""
    seen: str = ""          # the client address the server reported
    server: str = ""        # netexec's hostname: which pod answered
    elapsed: float = 0.0
    visits: dict[str, list[Visit]] = field(default_factory=dict)
    conntrack: dict[str, list[str]] = field(default_factory=dict)
    routes: dict[tuple[str, str], str] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)
    captures: dict[str, list[Captured]] = field(default_factory=dict)
    ports: list[int] = field(default_factory=list)   # the probe's port first, then any a masquerade picked
    # node netns -> the flows a program at its ingress translated, read from its map (proxy ebpf's
    # lb_nat): "SRC:SPORT → DST:DPORT/proto => SRC:SPORT → DST:DPORT"
    nat: dict[str, list[str]] = field(default_factory=dict)
