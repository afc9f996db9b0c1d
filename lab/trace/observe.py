"""The observed walk: one probe connection through the real kernel, watched (effects).

In every namespace on the path a table of the lab's own (`ip k8snetlab_trace`) sets nftrace on the
probe's packets only — matched on its fresh source port (lab.probe.ports), in the VXLAN payload
too — and `xtables-monitor --trace` prints every rule they meet. Tracing sets a flag and never a
verdict, so other traffic is judged as before. Afterwards: the conntrack entries of the probe (the
DNAT and SNAT really applied) and `ip route get` per routing hop. Tables and monitors are removed
in a finally: an error or a Ctrl-C leaves nothing.
"""
from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterable

from lab import host
from lab.errors import LabError
from lab.probe import ports
from lab.routing import vxlan
from lab.trace import events
from lab.trace.events import Observed

TABLE = "k8snetlab_trace"
NFNLGRP_NFTRACE = 1 << 8      # netlink group 9 of NETLINK_NETFILTER (12), as /proc/net/netlink shows it
READY_WAIT = 3.0


def trace_rules(protocol: str, sport: int) -> str:
    """The nft table for one probe: nftrace on its packets, before raw (a fault's drop is seen).
    Only matches xtables-monitor can print: it stops at the first rule it cannot parse (a `ct
    original proto-src` match is one), so a reply whose port a masquerade remapped is not traced."""
    p = protocol.lower()
    # TCP: the handshake only (NAT and policy are decided there; a whole connection's traces can
    # overflow the monitor's netlink buffer)
    syn, inner_syn = (" tcp flags & syn == syn", " @th,504,8 & 0x02 == 0x02") if p == "tcp" else ("", "")
    marks = [f"{p} sport {sport}{syn}", f"{p} dport {sport}{syn}",
             f"udp dport {vxlan.PORT} @th,400,16 {sport}{inner_syn}", f"udp dport {vxlan.PORT} @th,416,16 {sport}{inner_syn}"]
    body = "".join(f"    {m} meta nftrace set 1\n" for m in marks)
    chains = "".join(f"  chain {hook} {{\n    type filter hook {hook} priority -350; policy accept;\n{body}  }}\n"
                     for hook in ("prerouting", "output"))
    return f"table ip {TABLE} {{}}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n{chains}}}\n"


def _subscribed(pid: int) -> bool:
    """Has the monitor joined the trace group yet? Its netlink sockets in /proc/PID/net/netlink."""
    try:
        inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] for fd in os.listdir(f"/proc/{pid}/fd")}
        lines = Path(f"/proc/{pid}/net/netlink").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(w[1] == "12" and w[9] in inodes and int(w[3], 16) & NFNLGRP_NFTRACE
               for w in (l.split() for l in lines) if len(w) >= 10)


def _settle(paths: Iterable[Path], quiet: float = 0.08, limit: float = 1.0) -> None:
    """Wait until the monitors stop writing (their events arrive after the probe's last packet)."""
    paths = list(paths)
    last, still, deadline = None, time.monotonic(), time.monotonic() + limit
    while time.monotonic() < deadline:
        sizes = [p.stat().st_size if p.exists() else 0 for p in paths]
        if sizes != last:
            last, still = sizes, time.monotonic()
        elif time.monotonic() - still >= quiet:
            return
        time.sleep(0.02)


def _connect(obs: Observed, netns: str, dst: str, port: int, protocol: str, timeout: float) -> None:
    """One connection from netns, bound to the reserved source port: netexec's /clientip over TCP,
    its 'whoami' over UDP."""
    def go() -> None:
        kind = socket.SOCK_STREAM if protocol == "TCP" else socket.SOCK_DGRAM
        t0 = time.monotonic()
        with socket.socket(socket.AF_INET, kind) as s:
            s.settimeout(timeout)
            s.bind(("0.0.0.0", obs.sport))
            try:
                s.connect((dst, port))
                if protocol == "TCP":
                    s.sendall(b"GET /clientip HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    reply = b""
                    while chunk := s.recv(65536):
                        reply += chunk
                    head, _, body = reply.partition(b"\r\n\r\n")
                    for line in head.split(b"\r\n"):
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"x-netexec-hostname":
                            obs.server = value.strip().decode()
                    text = body.decode(errors="replace")
                else:
                    s.send(b"whoami")
                    obs.server, _, text = s.recv(65536).decode(errors="replace").rpartition(" ")
                obs.seen = text.strip().rpartition(":")[0]
                obs.ok = True
            except OSError as e:
                obs.error = "timed out" if isinstance(e, socket.timeout) else (e.strerror or str(e)).lower()
            obs.elapsed = time.monotonic() - t0

    host.in_ns(netns, go)


def _tuples(line: str) -> str:
    """An entry without its state and timers: what stays the same for one connection."""
    return " ".join(w for w in line.split() if "=" in w and not w.startswith(("mark=", "use=")))


def _conntrack(netns: str, protocol: str, sport: int) -> list[str]:
    done = host.run(["conntrack", "-L", "-p", protocol.lower(), "--orig-port-src", str(sport)], netns=netns,
                    check=False)
    return [l for l in done.stdout.splitlines() if l.strip()] if done.ok else []


def observe(src_netns: str, dst_ip: str, port: int, protocol: str, namespaces: Iterable[str],
            nodes: Iterable[str], timeout: float = 1.0) -> Observed:
    """Watch one connection from src_netns to dst_ip:port in `namespaces` (node namespaces among
    them get the conntrack chain and are read for conntrack entries)."""
    if protocol not in ("TCP", "UDP"):
        raise LabError(f"only TCP and UDP connections are observed; {protocol} is predicted only")
    namespaces, nodes = list(dict.fromkeys(n for n in namespaces if n)), set(nodes)
    obs = Observed(ports.reserve({src_netns: 1})[src_netns])
    before = {ns: {_tuples(c) for c in _conntrack(ns, protocol, obs.sport)} for ns in namespaces if ns in nodes}
    installed: list[str] = []
    monitors: list = []
    with tempfile.TemporaryDirectory(prefix="k8snetlab-trace-") as tmp:
        logs = {ns: Path(tmp) / f"{ns}.log" for ns in namespaces}
        try:
            for ns in namespaces:
                installed.append(ns)
                host.restore(ns, ["nft", "-f", "-"], trace_rules(protocol, obs.sport), "the trace table")
                argv = ["ip", "netns", "exec", ns, "stdbuf", "-oL", "xtables-monitor", "--trace"]
                monitors.append(host.spawn(argv, log=logs[ns], fresh_log=True))
            deadline = time.monotonic() + READY_WAIT
            while not all(_subscribed(m.pid) for m in monitors):
                if time.monotonic() > deadline:
                    raise LabError("xtables-monitor did not start listening for traces within "
                                   f"{READY_WAIT:g}s (is iptables-nft installed?)")
                time.sleep(0.01)
            _connect(obs, src_netns, dst_ip, port, protocol, timeout)
            _settle(logs.values())
        finally:
            for m in monitors:
                m.kill()
                m.wait()
            for ns in installed:
                host.run(["nft", "delete", "table", "ip", TABLE], netns=ns, check=False)
        for ns, path in logs.items():
            obs.raw[ns] = path.read_text(errors="replace") if path.exists() else ""
            obs.visits[ns] = events.parse(obs.raw[ns])
    for ns in namespaces:
        if ns in nodes:
            obs.conntrack[ns] = [c for c in _conntrack(ns, protocol, obs.sport) if _tuples(c) not in before[ns]]
    return obs


def lookup_routes(obs: Observed, lookups: Iterable[tuple[str, str]]) -> None:
    """`ip route get DST` in each (namespace, DST) of the walk's routing hops, right after the probe."""
    for ns, ip in lookups:
        done = host.run(["ip", "route", "get", ip], netns=ns, check=False)
        lines = (done.stdout or done.stderr).strip().splitlines()
        obs.routes[(ns, ip)] = " ".join(lines[0].split()) if lines else ""
