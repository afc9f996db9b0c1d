"""The observed walk: one probe connection through the real kernel, watched (effects).

In every namespace on the path a table of the lab's own (`ip k8snetlab_trace_PORT`) sets nftrace on
the probe's packets only — matched on its fresh source port (lab.probe.ports) or, for ICMP, its echo
id, in the VXLAN payload too, and after a masquerade on the translated tuple — and `xtables-monitor
--trace` prints every rule they meet; tcpdump, if installed, captures the same packets on every
interface, written as pcap (-w) and read back as text in the same namespace (its interface names).
Tracing sets a flag and never a verdict, so other traffic is judged as before.
Afterwards: the conntrack entries of the probe (the DNAT and SNAT really applied) and `ip route get`
per routing hop. Tables, monitors and captures are removed in a finally: an error or a Ctrl-C
leaves nothing. Given a directory of the lab's (lab.trace.saved), the pcaps stay there, merged too.
"""
from __future__ import annotations

import shutil
import socket
import struct
import tempfile
import time
from ipaddress import ip_address
from pathlib import Path
from typing import Iterable, Optional

from lab import host
from lab.host import cgroup
from lab.errors import LabError
from lab.probe import ports
from lab.topology.constants import VXLAN_PORT
from lab.trace import compare, events, pcap, saved
from lab.trace.events import Leg, Observed

TABLE = "k8snetlab_trace"
NFNLGRP_NFTRACE = 1 << 8      # netlink group 9 of NETLINK_NETFILTER (12), as /proc/net/netlink shows it
READY_WAIT = 3.0
CAPTURE_LIMIT = 200           # packets per namespace: a TCP connection is ~10 per interface


def _set(items: Iterable[object]) -> str:
    return "{ " + ", ".join(map(str, sorted(set(items), key=str))) + " }"


def _hex(ips: Iterable[str]) -> str:
    return _set("0x" + ip_address(ip).packed.hex() for ip in ips)


def table_name(sport: int) -> str:
    return f"{TABLE}_{sport}"


def trace_rules(protocol: str, sport: int, leg: Optional[Leg] = None, family: int = 4) -> str:
    """The nft table for one probe: nftrace on its packets, before raw (a fault's drop is seen).
    The matches jump to a chain whose one rule sets nftrace: xtables-monitor prints (and must be
    able to parse) every rule a traced packet meets, and it cannot parse e.g. `icmp id`; the
    matching rules run before the flag is set, so they are never printed.
    Offsets in a VXLAN packet (@th: its UDP header): the inner IPv4 header starts at bit 240
    (UDP 8 + VXLAN 8 + Ethernet 14 bytes): protocol at 312, addresses at 336 and 368; the inner
    transport header at 400 (ports at 400 and 416, the TCP flags at 504, the ICMP id at 432).
    family 6: an `ip6` table; flannel-v6.1's inner IPv6 header (40 bytes) puts the inner ports at
    560 and 576 and the TCP flags at 664 (a masquerade's leg is matched outside VXLAN only)."""
    p = protocol.lower()
    if family == 6:
        return _trace_rules6(p, sport, leg)
    if p == "icmp":
        marks = [f"icmp type {{ echo-request, echo-reply }} icmp id {sport}",
                 f"udp dport {VXLAN_PORT} @th,312,8 1 @th,432,16 {sport}"]
    else:
        # TCP: the handshake only (NAT and policy are decided there; a whole connection's traces can
        # overflow the monitor's netlink buffer)
        syn, inner_syn = (" tcp flags & syn == syn", " @th,504,8 & 0x02 == 0x02") if p == "tcp" else ("", "")
        marks = [f"{p} sport {sport}{syn}", f"{p} dport {sport}{syn}",
                 f"udp dport {VXLAN_PORT} @th,400,16 {sport}{inner_syn}",
                 f"udp dport {VXLAN_PORT} @th,416,16 {sport}{inner_syn}"]
        if leg is not None and leg.sources and leg.destinations and leg.ports:
            src, dst, ports = _set(leg.sources), _set(leg.destinations), _set(leg.ports)
            hsrc, hdst = _hex(leg.sources), _hex(leg.destinations)
            marks += [f"ip saddr {src} ip daddr {dst} {p} dport {ports}{syn}",
                      f"ip saddr {dst} ip daddr {src} {p} sport {ports}{syn}",
                      f"udp dport {VXLAN_PORT} @th,312,8 {6 if p == 'tcp' else 17} @th,336,32 {hsrc} "
                      f"@th,368,32 {hdst} @th,416,16 {ports}{inner_syn}",
                      f"udp dport {VXLAN_PORT} @th,312,8 {6 if p == 'tcp' else 17} @th,336,32 {hdst} "
                      f"@th,368,32 {hsrc} @th,400,16 {ports}{inner_syn}"]
    return _table("ip", table_name(sport), marks)


def _table(family: str, t: str, marks: list[str]) -> str:
    body = "".join(f"    {m} jump flag\n" for m in marks)
    chains = "".join(f"  chain {hook} {{\n    type filter hook {hook} priority -350; policy accept;\n{body}  }}\n"
                     for hook in ("prerouting", "output"))
    return f"table {family} {t} {{}}\ndelete table {family} {t}\ntable {family} {t} {{\n  chain flag {{\n" \
           f"    meta nftrace set 1\n  }}\n{chains}}}\n"


def _trace_rules6(p: str, sport: int, leg: Optional[Leg]) -> str:
    syn, inner_syn = (" tcp flags & syn == syn", " @th,664,8 & 0x02 == 0x02") if p == "tcp" else ("", "")
    marks = [f"{p} sport {sport}{syn}", f"{p} dport {sport}{syn}",
             f"udp dport {VXLAN_PORT} @th,560,16 {sport}{inner_syn}",
             f"udp dport {VXLAN_PORT} @th,576,16 {sport}{inner_syn}"]
    if leg is not None and leg.sources and leg.destinations and leg.ports:
        src, dst, ports = _set(leg.sources), _set(leg.destinations), _set(leg.ports)
        marks += [f"ip6 saddr {src} ip6 daddr {dst} {p} dport {ports}{syn}",
                  f"ip6 saddr {dst} ip6 daddr {src} {p} sport {ports}{syn}"]
    return _table("ip6", table_name(sport), marks)


def capture_filter(protocol: str, sport: int, leg: Optional[Leg] = None, family: int = 4) -> str:
    """tcpdump's BPF filter for the same packets (the whole connection, not only its handshake).
    udp[N] counts from the outer UDP header: the inner IPv4 header at 30, the inner ports at 50/52.
    family 6: tcpdump has no udp[N] over IPv6; ip6[N] counts from flannel-v6.1's outer IPv6 header
    (40 bytes, then UDP 8, VXLAN 8, Ethernet 14, the inner IPv6 header 40): the inner ports at 110/112."""
    p = protocol.lower()
    if family == 6:
        parts = [f"({p} port {sport})",
                 f"(udp port {VXLAN_PORT} and (ip6[110:2] = {sport} or ip6[112:2] = {sport}))"]
        if leg is not None and leg.sources and leg.destinations and leg.ports:
            def any6(fmt: str, items: Iterable[object]) -> str:
                return "(" + " or ".join(fmt.format(i) for i in sorted(set(items), key=str)) + ")"
            parts.append(f"({p} and {any6('host {}', leg.sources)} and {any6('host {}', leg.destinations)} and "
                         f"{any6('port {}', leg.ports)})")
        return " or ".join(parts)
    if p == "icmp":
        return f"(icmp and icmp[4:2] = {sport}) or (udp port {VXLAN_PORT} and udp[39:1] = 1 and udp[54:2] = {sport})"
    parts = [f"({p} port {sport})", f"(udp port {VXLAN_PORT} and (udp[50:2] = {sport} or udp[52:2] = {sport}))"]
    if leg is not None and leg.sources and leg.destinations and leg.ports:
        def any_of(fmt: str, items: Iterable[object]) -> str:
            return "(" + " or ".join(fmt.format(i) for i in sorted(set(items), key=str)) + ")"

        s, d = any_of("host {}", leg.sources), any_of("host {}", leg.destinations)
        ports = any_of("port {}", leg.ports)
        parts.append(f"({p} and {s} and {d} and {ports})")
        inner_s = any_of("udp[42:4] = {}", (int(ip_address(i)) for i in leg.sources))
        inner_d = any_of("udp[46:4] = {}", (int(ip_address(i)) for i in leg.destinations))
        inner_s2 = any_of("udp[46:4] = {}", (int(ip_address(i)) for i in leg.sources))
        inner_d2 = any_of("udp[42:4] = {}", (int(ip_address(i)) for i in leg.destinations))
        parts.append(f"(udp port {VXLAN_PORT} and (({inner_s} and {inner_d}) or ({inner_s2} and {inner_d2})))")
    return " or ".join(parts)


def _subscribed(pid: int) -> bool:
    """Has the monitor joined the trace group yet? Its netlink sockets in /proc/PID/net/netlink."""
    try:
        inodes = {link[8:-1] for link in host.fd_targets(pid)}
        lines = host.read_text(f"/proc/{pid}/net/netlink").splitlines()[1:]
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


def _connect(obs: Observed, netns: str, dst: str, port: int, protocol: str, timeout: float, cgroup_dir: str = "") -> None:
    family, any_address = (socket.AF_INET6, "::") if ":" in dst else (socket.AF_INET, "0.0.0.0")

    """One connection from netns, bound to the reserved source port: netexec's /clientip over TCP,
    its 'whoami' over UDP. cgroup_dir (proxy ebpf): the socket is made there, so the source's node's
    socket LB sees its connect() as it would a pod's."""
    def go() -> None:
        kind = socket.SOCK_STREAM if protocol == "TCP" else socket.SOCK_DGRAM
        t0 = time.monotonic()
        with socket.socket(family, kind) as s:
            s.settimeout(timeout)
            s.bind((any_address, obs.sport))
            try:
                s.connect((dst, port))
                if protocol == "TCP":
                    s.sendall(b"GET /clientip HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    reply = b""
                    while not _complete(reply) and (chunk := s.recv(65536)):
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
                obs.seen = text.strip().rpartition(":")[0].strip("[]")   # netexec writes [IPv6]:port
                obs.ok = True
            except OSError as e:
                obs.error = events.TIMED_OUT if isinstance(e, socket.timeout) else (e.strerror or str(e)).lower()
            obs.elapsed = time.monotonic() - t0

    if not cgroup_dir:
        return host.in_ns(netns, go)
    with cgroup.joined() as join:
        join(cgroup_dir)
        host.in_ns(netns, go)


def _complete(reply: bytes) -> bool:
    """An HTTP answer with its whole Content-Length body: read no further. A proxy (Envoy) waits for
    the client to close first (its delayed close), so waiting for the server's close would time out."""
    head, sep, body = reply.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return len(body) >= int(value.strip())
    return False


def _checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data + b"\0" * (len(data) % 2)))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


def echo_request(ident: int, seq: int = 1, payload: bytes = b"k8s-netlab trace") -> bytes:
    """An ICMP echo request with its checksum (pure)."""
    head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return head[:2] + struct.pack("!H", _checksum(head + payload)) + head[4:] + payload


def _ping(obs: Observed, netns: str, dst: str, timeout: float) -> None:
    """One echo request from netns whose id is the reserved number, through a raw socket (the
    lab's namespaces allow no ping sockets); the answer is the echo reply with that id, or an ICMP
    error quoting it."""
    errors = {0: "network unreachable", 1: "host unreachable", 3: "port unreachable", 9: "network prohibited",
              10: "host prohibited", 13: "administratively prohibited"}

    def go() -> None:
        t0 = time.monotonic()
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
            s.sendto(echo_request(obs.sport), (dst, 0))
            while (left := timeout - (time.monotonic() - t0)) > 0:
                s.settimeout(left)
                try:
                    data, (addr, _) = s.recvfrom(65536)
                except socket.timeout:
                    break
                at = (data[0] & 0x0F) * 4
                kind, code, _, ident = struct.unpack("!BBHH", data[at:at + 6])
                if kind == 0 and ident == obs.sport:
                    obs.ok, obs.server = True, addr
                    break
                if kind == 3 and len(data) >= at + 8 + 28:
                    inner = at + 8 + (data[at + 8] & 0x0F) * 4
                    if struct.unpack("!H", data[inner + 4:inner + 6])[0] == obs.sport:
                        obs.error = f"{errors.get(code, f'destination unreachable (code {code})')} from {addr}"
                        break
            if not obs.ok and not obs.error:
                obs.error = events.TIMED_OUT
        obs.elapsed = time.monotonic() - t0

    host.in_ns(netns, go)


def _tuples(line: str) -> str:
    """An entry without its state and timers: what stays the same for one connection."""
    return " ".join(w for w in line.split() if "=" in w and not w.startswith(("mark=", "use=")))


def _conntrack(netns: str, protocol: str, sport: int, family: int = 4) -> list[str]:
    """The entries whose original source port (or echo id) is sport."""
    if protocol == "ICMP":
        done = host.run(["conntrack", "-L", "-p", "icmp"], netns=netns, check=False)
        lines = [l for l in done.stdout.splitlines() if f" id={sport} " in f"{l} "] if done.ok else []
        return [l for l in lines if l.split(" id=")[1].split()[0] == str(sport)]
    done = host.run(["conntrack", "-L", "-f", "ipv6" if family == 6 else "ipv4", "-p", protocol.lower(),
                     "--orig-port-src", str(sport)], netns=netns,
                    check=False)
    return [l for l in done.stdout.splitlines() if l.strip()] if done.ok else []


def _listening(path: Path) -> bool:
    try:
        return b"listening on" in path.read_bytes()
    except OSError:
        return False


def _read_back(ns: str, path: Path) -> str:
    """A pcap as tcpdump's text, read in the namespace it was captured in (interface names resolve
    there), exactly as a live `tcpdump -nn -t -T vxlan` prints it."""
    if not host.path_exists(path):
        return ""
    done = host.run(["ip", "netns", "exec", ns, "tcpdump", "-r", str(path), "-nn", "-t", "-T", "vxlan"], check=False)
    return done.stdout if done.ok else ""


def _merge(keep: Path, files: list[Path]) -> None:
    """The namespaces' pcaps as one, in time order (what a user opens in Wireshark)."""
    try:
        data = pcap.merge(b for b in map(host.read_bytes, files) if b)
    except LabError as e:
        raise LabError(f"the trace's captures in {keep} cannot be merged: {e}") from None
    if data:
        host.write_file(keep / saved.MERGED, data, 0o600)


def observe(src_netns: str, dst_ip: str, port: int, protocol: str, namespaces: Iterable[str],
            nodes: Iterable[str], timeout: float = 1.0, leg: Optional[Leg] = None,
            capture: bool = True, cgroup_dir: str = "", keep: Optional[Path] = None) -> Observed:
    """Watch one connection (or echo request) from src_netns to dst_ip:port in `namespaces` (node
    namespaces among them are read for conntrack entries). leg: the tuple after a masquerade that
    may remap the port. capture: tcpdump on every interface of each namespace too, if installed.
    keep: the lab's directory for this trace's pcaps (lab.trace.saved.create); None: a temporary one."""
    if protocol not in ("TCP", "UDP", "ICMP"):
        raise LabError(f"only TCP, UDP and ICMP are observed, not {protocol}")
    namespaces, nodes = list(dict.fromkeys(n for n in namespaces if n)), set(nodes)
    obs = Observed(ports.reserve({src_netns: 1})[src_netns])
    table, family = table_name(obs.sport), ip_address(dst_ip).version
    before = {ns: {_tuples(c) for c in _conntrack(ns, protocol, obs.sport, family)} for ns in namespaces if ns in nodes}
    tcpdump = capture and shutil.which("tcpdump") is not None
    installed: list[str] = []
    monitors: list = []
    captures: list = []
    with tempfile.TemporaryDirectory(prefix="k8snetlab-trace-") as tmp:
        logs = {ns: Path(tmp) / f"{ns}.log" for ns in namespaces}
        said = {ns: Path(tmp) / f"{ns}.tcpdump" for ns in namespaces}   # tcpdump's stderr: "listening on"
        pcaps = {ns: Path(keep or tmp) / f"{ns}.pcap" for ns in namespaces} if tcpdump else {}
        try:
            rules, bpf = trace_rules(protocol, obs.sport, leg, family), capture_filter(protocol, obs.sport, leg, family)
            for ns in namespaces:
                installed.append(ns)
                host.restore(ns, ["nft", "-f", "-"], rules, "the trace table")
                argv = ["ip", "netns", "exec", ns, "stdbuf", "-oL", "xtables-monitor", "--trace"]
                monitors.append(host.spawn(argv, log=logs[ns], fresh_log=True))
                if ns in pcaps:
                    argv = ["ip", "netns", "exec", ns, "tcpdump", "-i", "any", "--immediate-mode", "-U", "-Z", "root",
                            "-w", pcaps[ns],
                            "-c", str(CAPTURE_LIMIT), bpf]
                    captures.append(host.spawn(argv, log=said[ns], fresh_log=True))
            deadline = time.monotonic() + READY_WAIT
            while not (all(_subscribed(m.pid) for m in monitors) and all(_listening(said[ns]) for ns in pcaps)):
                if time.monotonic() > deadline:
                    raise LabError("xtables-monitor or tcpdump did not start listening within "
                                   f"{READY_WAIT:g}s (is iptables-nft installed?)")
                time.sleep(0.01)
            if protocol == "ICMP":
                _ping(obs, src_netns, dst_ip, timeout)
            else:
                _connect(obs, src_netns, dst_ip, port, protocol, timeout, cgroup_dir)
            _settle([*logs.values(), *pcaps.values()])
        finally:
            for m in [*monitors, *captures]:
                m.kill()
                m.wait()
            for ns in installed:
                host.run(["nft", "delete", "table", "ip6" if family == 6 else "ip", table], netns=ns, check=False)
        for ns, path in logs.items():
            obs.raw[ns] = path.read_text(errors="replace") if path.exists() else ""
            obs.visits[ns] = events.parse(obs.raw[ns])
        for ns, path in pcaps.items():
            obs.captures[ns] = events.parse_capture(_read_back(ns, path))
        if keep is not None and pcaps:
            _merge(keep, [p for p in pcaps.values() if host.path_exists(p)])
    for ns in namespaces:
        if ns in nodes:
            obs.conntrack[ns] = [c for c in _conntrack(ns, protocol, obs.sport, family) if _tuples(c) not in before[ns]]
    # a masquerade that picked another port: the namespaces after it know the probe by that port
    remapped = compare.translated_ports(obs, protocol) if leg is not None else set()
    for new in sorted(remapped):
        for ns in namespaces:
            if ns in nodes:
                obs.conntrack[ns] += [c for c in _conntrack(ns, protocol, new, family) if c not in obs.conntrack[ns]]
    obs.ports = [obs.sport, *sorted(remapped - {obs.sport})]  # the probe's own first, then what NAT picked
    keep = {str(p) for p in obs.ports}
    for ns in obs.visits:
        obs.visits[ns] = events.of_probe(obs.visits[ns], keep)
        obs.captures[ns] = events.captures_of_probe(obs.captures.get(ns, []), keep) if ns in obs.captures else []
    obs.captures = {ns: c for ns, c in obs.captures.items() if ns in pcaps}
    return obs


def lookup_routes(obs: Observed, lookups: Iterable[tuple[str, str]]) -> None:
    """`ip route get DST` in each (namespace, DST) of the walk's routing hops, right after the probe,
    and `ip route get fibmatch DST`: the route entry itself, with its prefix and who installed it
    (proto bgp for a route FRR learned)."""
    for ns, ip in lookups:
        done = host.run(["ip", "route", "get", ip], netns=ns, check=False)
        lines = (done.stdout or done.stderr).strip().splitlines()
        text = " ".join(lines[0].split()) if lines else ""
        fib = host.run(["ip", "route", "get", "fibmatch", ip], netns=ns, check=False)
        if fib.ok and fib.stdout.strip():
            text += f" (fib: {' '.join(fib.stdout.strip().splitlines()[0].split())})"
        obs.routes[(ns, ip)] = text
