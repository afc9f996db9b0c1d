"""Prediction beside observation (pure): one row per hop, marked where they differ.

Marks: "=" the kernel did what the model says — the value the hop predicts (addresses, device,
endpoint, verdict) was observed, not merely a packet —, "≠" it did something else, "?" nothing on
this hop can be observed (the wire, a bridge port) or was not, "·" not reached: the packet stopped
before. A drop the model did not predict gets a row of its own naming what dropped it. The
probe's own result ("no answer") is always a value: never "?", masquerade or not.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from lab.trace import events
from lab.trace.events import Observed
from lab.trace.predict import Hop

SAME, DIFFERENT, UNSEEN, NOT_REACHED = "=", "≠", "?", "·"


@dataclass(frozen=True)
class Row:
    step: str
    component: str
    namespace: str
    interface: str
    predicted: str
    observed: str
    mark: str


@dataclass(frozen=True)
class Conn:
    """One conntrack entry: the original tuple and the reply tuple."""

    orig: tuple[str, str, str, str]     # src, dst, sport, dport
    reply: tuple[str, str, str, str]

    @property
    def dnat(self) -> Optional[str]:
        ip = f"[{self.reply[0]}]" if ":" in self.reply[0] else self.reply[0]   # as an Endpoint writes it
        return f"{ip}:{self.reply[2]}" if (self.reply[0], self.reply[2]) != (self.orig[1], self.orig[3]) \
            else None

    @property
    def snat(self) -> Optional[str]:
        return self.reply[1] if self.reply[1] != self.orig[0] else None


def parse_conntrack(line: str) -> Optional[Conn]:
    """`conntrack -L` text: the first src/dst/sport/dport are the original tuple, the second the reply.
    ICMP has an echo id instead of ports: it stands for both (NAT remaps it as it would a port)."""
    def grab(key: str) -> list[str]:
        return re.findall(rf"\b{key}=(\S+)", line)

    src, dst, sport, dport = grab("src"), grab("dst"), grab("sport"), grab("dport")
    if not sport and len(grab("id")) >= 2:
        sport = dport = grab("id")
    if min(len(src), len(dst), len(sport), len(dport)) < 2:
        return None
    return Conn((src[0], dst[0], sport[0], dport[0]), (src[1], dst[1], sport[1], dport[1]))


def translated_ports(obs: Observed, protocol: str = "TCP") -> set[int]:
    """The source ports (echo ids) a masquerade gave the probe: a conntrack entry of the probe whose
    reply comes back to another port than the one it left from."""
    out = set()
    for ns in obs.conntrack:
        for c in conns(obs, ns):
            if c.orig[2] == str(obs.sport) and c.reply[3] != c.orig[2] and protocol != "ICMP":
                out.add(int(c.reply[3]))
    return out


def conns(obs: Observed, netns: str) -> list[Conn]:
    return [c for c in map(parse_conntrack, obs.conntrack.get(netns, ())) if c is not None]


def picked(obs: Observed, netns: str) -> Optional[str]:
    """The endpoint kube-proxy chose on the node that translated the probe (its conntrack entry)."""
    return next((c.dnat for c in conns(obs, netns) if c.dnat), None)


def _route(hop: Hop, obs: Observed) -> tuple[str, str]:
    dev, via, ip, proto = (hop.expect + ("",))[:4]
    text = obs.routes.get((hop.namespace, ip))
    if not text:
        return "no `ip route get` result", UNSEEN
    got_dev = re.search(r"\bdev (\S+)", text)
    got_via = re.search(r"\bvia (\S+)", text)
    ok = got_dev is not None and got_dev.group(1).startswith(dev) and (got_via.group(1) if got_via else "") == via
    if text.startswith(("local ", "RTNETLINK")) or "unreachable" in text or "blackhole" in text:
        ok = ok and dev == "lo"
    if proto and f"proto {proto}" not in text:
        ok = False
    return text, SAME if ok else DIFFERENT


def _visits(obs: Observed, netns: str) -> list[events.Visit]:
    return obs.visits.get(netns, [])


def _filter(hop: Hop, obs: Observed) -> tuple[str, str]:
    verdict, by = hop.expect
    dropped = events.drops(_visits(obs, hop.namespace))
    if dropped:
        text = f"DROP by {dropped[0].describe()}"
        return text, SAME if verdict == "drop" and dropped[0].comment and dropped[0].comment in by else DIFFERENT
    forwarded = [v for v in _visits(obs, hop.namespace) if v.hook == "filter FORWARD"]
    if not forwarded:
        return "no packet of the probe reached filter FORWARD here", DIFFERENT if verdict == "accept" else UNSEEN
    policy = [e.describe() for v in forwarded for e in v.events if e.chain.startswith("LAB-NP-")]
    text = "accepted" + (f" ({'; '.join(policy)})" if policy else " (no policy chain matched)")
    return text, SAME if verdict == "accept" else DIFFERENT


def _dnat(hop: Hop, obs: Observed) -> tuple[str, str]:
    entries = conns(obs, hop.namespace)
    if not entries:
        return "no conntrack entry here", UNSEEN
    chosen = next((c.dnat for c in entries if c.dnat), None)
    if chosen is None:
        return "conntrack: no DNAT", SAME if not hop.expect else DIFFERENT
    return f"conntrack: DNAT to {chosen}", SAME if chosen in hop.expect else DIFFERENT


def _snat(hop: Hop, obs: Observed) -> tuple[str, str]:
    entries = conns(obs, hop.namespace)
    if not entries:
        return "no conntrack entry here", UNSEEN
    got = next((c for c in entries if c.snat), None)
    if got is None:
        return "conntrack: no SNAT", SAME if not hop.expect else DIFFERENT
    port = f", source port {got.orig[2]} → {got.reply[3]}" if got.reply[3] != got.orig[2] else ""
    return f"conntrack: SNAT to {got.snat}{port}", SAME if hop.expect == (got.snat,) else DIFFERENT


def _encap(hop: Hop, obs: Observed) -> tuple[str, str]:
    outer = [v.packet for v in _visits(obs, hop.namespace) if v.packet.get("DPORT") == hop.expect[2]
             and v.packet.get("OUT")]
    if not outer:
        return "no encapsulated packet of the probe seen leaving", DIFFERENT
    p = outer[0]
    ok = (p.get("SRC"), p.get("DST")) == hop.expect[:2]
    return f"outer {p.get('SRC')} → {p.get('DST')} UDP dport {p.get('DPORT')} out {p.get('OUT')}", SAME if ok else DIFFERENT


def _addressed(prefix: str, packets: list[events.Packet], src: str, dst: str) -> tuple[str, str]:
    """SAME only when a packet carrying the predicted addresses was seen (the value, not a packet)."""
    match = next((p for p in packets if (p.get("SRC"), p.get("DST")) == (src, dst)), None)
    if match is None:
        return f"{prefix}{packets[0].summary()}, not {src} → {dst}", DIFFERENT
    return f"{prefix}{match.summary()}", SAME


def _send(hop: Hop, obs: Observed) -> tuple[str, str]:
    seen = _visits(obs, hop.namespace)
    if not seen:
        return "no packet of the probe traced here", UNSEEN
    return _addressed(f"{len(seen)} netfilter visits: ", [v.packet for v in seen], *hop.expect[:2])


def _arrive(hop: Hop, obs: Observed) -> tuple[str, str]:
    """The packet seen coming in on the interface (with the VXLAN port: its outer header), with the
    predicted addresses."""
    dev, port, src, dst = hop.expect
    seen = [v.packet for v in _visits(obs, hop.namespace) if v.packet.get("IN").startswith(dev)
            and (not port or v.packet.get("DPORT") == port)]
    if not seen:
        return f"nothing of the probe seen coming in on {dev}", DIFFERENT
    return _addressed(f"in on {seen[0].get('IN')}: ", seen, src, dst)


def _deliver(hop: Hop, obs: Observed) -> tuple[str, str]:
    if not obs.ok:
        return f"no answer: {obs.error}", DIFFERENT
    if not obs.seen:   # ICMP: no server reports the client; the trace in its namespace shows the source
        came = [v.packet for v in _visits(obs, hop.namespace) if v.packet.get("IN") and not v.packet.get("OUT")
                and not v.packet.get("SPORT")]
        if not came:
            return f"echo reply from {obs.server}; the request was not traced arriving here", UNSEEN
        return f"the request came in on {came[0].get('IN')} from {came[0].get('SRC')}; echo reply from {obs.server}", \
            SAME if came[0].get("SRC") == hop.expect[0] else DIFFERENT
    who = f" ({obs.server})" if obs.server else ""
    return f"the server{who} saw the client as {obs.seen}", SAME if obs.seen == hop.expect[0] else DIFFERENT


def _unanswered(hop: Hop, obs: Observed) -> tuple[str, str]:
    """Predicted silence: only silence is the same; a refusal (an ICMP unreachable) is an answer."""
    if obs.ok:
        return f"answered{f' by {obs.server}' if obs.server else ''} in {obs.elapsed * 1000:.1f} ms", DIFFERENT
    if obs.error != events.TIMED_OUT:
        return f"refused: {obs.error} (an answer, not silence)", DIFFERENT
    return f"no reply: {obs.error}", SAME


def _reply(hop: Hop, obs: Observed) -> tuple[str, str]:
    if not obs.ok:
        return f"no reply: {obs.error} after {obs.elapsed:.2f}s", DIFFERENT
    return f"reply received in {obs.elapsed * 1000:.1f} ms", SAME


def _socklb(hop: Hop, obs: Observed) -> tuple[str, str]:
    """proxy ebpf: a rewrite at connect() leaves no DNAT in any conntrack; the answering server is
    one of the predicted endpoints; a refusal or drop fails connect() itself."""
    dnat = next((c.dnat for ns in obs.conntrack for c in conns(obs, ns) if c.dnat), None)
    if dnat:
        return f"a DNAT to {dnat} in netfilter: the socket LB did not rewrite this connection", DIFFERENT
    if hop.expect in (("refuse",), ("drop",)):
        want = "connection refused" if hop.expect == ("refuse",) else "operation not permitted"
        if obs.ok:
            return f"answered{f' by {obs.server}' if obs.server else ''}", DIFFERENT
        return f"connect(): {obs.error}", SAME if obs.error == want else DIFFERENT
    if not hop.expect:
        return "no DNAT in netfilter", SAME
    if not obs.ok:
        return f"no answer: {obs.error}", UNSEEN
    return f"no DNAT in netfilter; answered by {obs.server or 'a server'}", SAME


def _tclb(hop: Hop, obs: Observed) -> tuple[str, str]:
    """proxy ebpf from outside: the tc program rewrites the packet before netfilter, so the node's
    netfilter sees it come in on the device already addressed to a predicted backend, from the
    predicted source (the SNAT's or the client's), and its conntrack holds no DNAT. Untranslated
    (the program detached, no map entry) it arrives addressed to the NodePort: a difference."""
    if hop.expect in (("refuse",), ("drop",)):
        want = "connection refused" if hop.expect == ("refuse",) else events.TIMED_OUT
        if obs.ok:
            return f"answered{f' by {obs.server}' if obs.server else ''}", DIFFERENT
        return f"no answer: {obs.error}", SAME if obs.error.startswith(want) else DIFFERENT
    client, source, *endpoints = hop.expect
    dnat = next((c.dnat for c in conns(obs, hop.namespace) if c.dnat), None)
    if dnat:
        return f"conntrack: DNAT to {dnat}: netfilter translated it, not the tc program", DIFFERENT
    came = [v.packet for v in _visits(obs, hop.namespace) if v.packet.get("IN").startswith(hop.interface)]
    if not came:
        return f"nothing of the probe seen coming in on {hop.interface}", DIFFERENT if obs.ok else UNSEEN
    ips = {e.rpartition(":")[0].strip("[]") for e in endpoints}
    done = next((p for p in came if p.get("SRC") == source and p.get("DST") in ips
                 and f"{p.get('DST')}:{p.get('DPORT')}" in endpoints), None)
    if done is None:
        return f"in on {came[0].get('IN')} untranslated: {came[0].summary()}, not {source} → one of " \
               f"{', '.join(endpoints)}", DIFFERENT
    text = f"netfilter saw it come in on {done.get('IN')} already as {done.summary()}; conntrack: no DNAT"
    if hop.namespace not in obs.nat:  # the map was not read (no record given)
        return text, SAME
    entry = next((line for line in obs.nat[hop.namespace] if line.startswith(f"{client}:{obs.sport} → ")), None)
    if entry is None:
        return f"{text}; but lb_nat holds no entry for {client}:{obs.sport}", DIFFERENT
    made = entry.partition(" => ")[2]
    ok = made.startswith(f"{source}:") and made.rpartition(" → ")[2] in endpoints
    return f"{text}; lb_nat: {entry}", SAME if ok else DIFFERENT


_CHECKS = {"socklb": _socklb, "tclb": _tclb,
           "route": _route, "filter": _filter, "dnat": _dnat, "snat": _snat, "encap": _encap, "send": _send, "arrive": _arrive,
           "deliver": _deliver, "reply": _reply, "unanswered": _unanswered}


def _unpredicted_drops(hops: list[Hop], obs: Observed) -> dict[str, events.Event]:
    """Drops in namespaces whose hops predicted none (a fault's table, a FORWARD policy DROP)."""
    predicted = {h.namespace for h in hops if h.kind == "filter" and h.expect and h.expect[0] == "drop"}
    filtered = {h.namespace for h in hops if h.kind == "filter"}
    out = {}
    for ns, visits in obs.visits.items():
        dropped = events.drops(visits)
        if dropped and ns not in predicted and (ns not in filtered or dropped[0].table != "filter"):
            out[ns] = dropped[0]
    return out


_DIRECTION = {"send": "Out", "encap": "Out", "arrive": "In", "deliver": "In", "tclb": "In"}


def _carries(text: str, hop: Hop) -> bool:
    """Whether a tcpdump line shows the addresses the hop predicts. Coming in (arrive, deliver) only
    the source: on a bridge with bridge-nf-call-iptables the capture already shows the DNAT; before
    a tc program (tclb) the client's own, as tcpdump taps ahead of tc ingress."""
    wanted = {"send": hop.expect[:2], "encap": hop.expect[:2], "arrive": hop.expect[2:3],
              "deliver": hop.expect[:1], "tclb": hop.expect[:1]}[hop.kind]
    return all(re.search(rf"(?<![\w.:]){re.escape(ip)}(?!\w)", text) for ip in wanted)


def _capture(hop: Hop, obs: Observed) -> Optional[Row]:
    """The packets tcpdump saw on the hop's interface (the VXLAN outer header on a node's eth0)."""
    if hop.kind not in _DIRECTION or hop.namespace not in obs.captures or hop.expect in (("refuse",), ("drop",)):
        return None
    ifname = hop.expect[0] if hop.kind == "arrive" and hop.expect else hop.interface
    if hop.kind == "encap":
        ifname = "eth0"
    records = [c for c in obs.captures[hop.namespace] if c.interface.startswith(ifname)]
    ahead = [c for c in records if c.direction == _DIRECTION[hop.kind]]
    if hop.kind == "encap":
        ahead = [c for c in ahead if "VXLAN" in c.text] or ahead
    where = f"tcpdump -i {ifname}"
    if not records:
        return Row(f"{hop.step}c", where, hop.namespace, ifname, "", "no packet of the probe captured here", UNSEEN)
    carrying = [c for c in ahead if _carries(c.text, hop)]
    first = (carrying or ahead or records)[0]
    mark = SAME if carrying else DIFFERENT if ahead else UNSEEN
    return Row(f"{hop.step}c", where, hop.namespace, ifname, "", f"{len(records)} packet(s); "
               f"{first.direction} {first.text}" + ("" if carrying or not ahead else " (not the predicted addresses)"),
               mark)


# Hops observed by matching the probe's packets (its source port): a masquerade that picked another
# port may hide them from the trace. The probe's own result (deliver, reply) is never hidden.
_MATCHED = ("send", "arrive", "encap", "filter")


def rows(hops: list[Hop], obs: Optional[Observed]) -> list[Row]:
    """The table: each predicted hop with what was observed there."""
    if obs is None:
        return [Row(str(h.step), h.component, h.namespace, h.interface, h.what, "not observed", UNSEEN) for h in hops]
    extra = _unpredicted_drops(hops, obs)
    out: list[Row] = []
    stopped = remapped = False
    for h in hops:
        if stopped and h.kind not in ("reply",):
            out.append(Row(str(h.step), h.component, h.namespace, h.interface, h.what, "not reached", NOT_REACHED))
            continue
        check = _CHECKS.get(h.kind)
        text, mark = check(h, obs) if check else ("", UNSEEN)
        if remapped and mark == DIFFERENT and text.startswith(("no ", "nothing")) and h.kind in _MATCHED:
            text, mark = f"{text} (MASQUERADE --random-fully changed the source port the trace matches)", UNSEEN
        remapped = remapped or (h.kind == "snat" and "random-fully" in h.what)
        out.append(Row(str(h.step), h.component, h.namespace, h.interface, h.what, text, mark))
        cap = _capture(h, obs)
        if cap is not None:
            out.append(cap)
        drop = extra.pop(h.namespace, None) if h.namespace else None
        if drop is not None:
            out.append(Row(f"{h.step}!", f"dropped in {h.namespace}", h.namespace, "", "(not predicted)",
                           f"DROP by {drop.describe()}", DIFFERENT))
            stopped = True
        if h.kind == "filter" and mark != UNSEEN and text.startswith("DROP"):
            stopped = True
    return out
