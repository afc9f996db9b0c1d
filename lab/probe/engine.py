"""Probe pod-to-pod connectivity from inside the source namespaces, all probes at once.

A worker thread enters each source namespace in turn (setns is per-thread) and creates that
source's sockets there; one selectors loop then drives every socket, whatever its namespace.
The far end is netexec, which reports the client address it saw: that is how NAT is observed.

A verdict is final only when it is certain: a probe without a reply is tried again with a fresh
socket and source port (lab.probe.ports: never a tuple conntrack may still track) and a timeout
adapted to the round trips the passing probes measured, as the upstream e2e suite retries before
it judges. A reply at any try is final. What a probe saw is one of four kinds (ProbeResult.seen,
the one classification every judge uses): a reply; silence (every try unanswered: a drop); a
refusal (a reset or an ICMP unreachable at some try: something said no, which is not a drop); or
an error of the probe itself (no source namespace, a socket or bind error, a malformed reply),
which no expectation accepts.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import resource
import selectors
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from lab.probe import ports
from lab.probe.netns import interface_addresses, interface_addresses_many
from lab.host import cgroup
from lab.host.netns import NetnsError, enter, in_worker, open_netns

__all__ = ["Probe", "ProbeResult", "run_probes", "interface_addresses", "interface_addresses_many",
           "REPLY", "SILENCE", "REFUSED", "ERROR"]

TCP_REQUEST = b"GET /clientip HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
UDP_REQUEST = b"whoami"
MAX_REPLY = 65536  # netexec's answer is a few dozen bytes; more is not netexec
ATTEMPTS = 3       # tries before "no reply" is a verdict (a reply is one at once)
RETRY_CONCURRENCY = 64  # retries go slower: the first round may have failed from sheer load
CONFIRMATIONS = 2  # a reply that needed retries is asked again this many times: is the state settled?
MAX_TIMEOUT = 10.0
SLACK = 64         # spare source ports per namespace, for ports a server of the pod holds
REPLY, SILENCE, REFUSED, ERROR = "reply", "silence", "refused", "error"
# The kernel's "no" from the far side: a reset (nothing listens, or a REJECT with tcp-reset) or an
# ICMP unreachable (port, host, net; a REJECT rule, a node that does not forward, no route).
REFUSALS = {errno.ECONNREFUSED: "nothing listens on that port there",
            errno.ECONNRESET: "the connection was reset",
            errno.EHOSTUNREACH: "an ICMP host unreachable (a node without a route, a REJECT rule)",
            errno.ENETUNREACH: "no route to that network (or an ICMP net unreachable)"}
# A drop in the sender's own namespace (filter OUTPUT) the kernel reports at send: silence.
LOCAL_DROP = errno.EPERM


@dataclass(frozen=True)
class Probe:
    src_netns: str  # name under /run/netns
    dst_ip: str
    port: int
    protocol: str = "TCP"  # "TCP" or "UDP"


@dataclass(frozen=True)
class ProbeResult:
    probe: Probe
    ok: bool  # got a well-formed reply
    seen_source: str | None  # the client IP the server reported; None if no reply
    error: str | None  # e.g. "timeout after 1.0s (connecting)", "connection refused", "bad reply: ..."
    elapsed: float  # seconds, from socket creation to verdict (of the last try)
    server: str | None = None  # the pod that answered (netexec's hostname): who a Service picked
    attempts: int = 1  # tries made: 1 unless the first went unanswered
    earlier: tuple[str, ...] = ()  # what each try before the last saw (kinds, see `seen`)
    settled: bool = True  # False: a reply that needed retries, and a confirmation went unanswered

    @property
    def kind(self) -> str:
        """What the last try saw: REPLY, SILENCE (a timeout), REFUSED or ERROR."""
        if self.ok:
            return REPLY
        if (self.error or "").startswith("timeout") or self.error == _error_text(LOCAL_DROP):
            return SILENCE
        return REFUSED if self.error in _REFUSAL_TEXTS else ERROR

    @property
    def seen(self) -> str:
        """What the probe saw over every try: a reply is final; an error at any try is an error; a
        refusal at any try is a refusal; silence only when every try was silent."""
        kinds = {*self.earlier, self.kind}
        return next(k for k in (REPLY, ERROR, REFUSED, SILENCE) if k in kinds)

    @property
    def hint(self) -> str:
        """Why a refusal is what it is (for a deny that got one): '' for anything else."""
        return next((why for code, why in REFUSALS.items() if self.error == _error_text(code)), "") \
            if self.kind == REFUSED else ""


class _Attempt:
    """One probe in flight: its socket and how far it got."""

    __slots__ = ("index", "probe", "sock", "start", "deadline", "out", "reply", "connected")

    def __init__(self, index: int, probe: Probe, sock: socket.socket, start: float, deadline: float):
        self.index, self.probe, self.sock = index, probe, sock
        self.start, self.deadline = start, deadline
        self.out = TCP_REQUEST if probe.protocol == "TCP" else b""
        self.reply = bytearray()
        self.connected = probe.protocol == "UDP"  # UDP has no handshake to wait for


def _check(probes: Sequence[Probe]) -> None:
    """Refuse malformed probes up front: a hostname would mean a blocking DNS lookup mid-loop."""
    for p in probes:
        if p.protocol not in ("TCP", "UDP"):
            raise ValueError(f"{p}: protocol must be 'TCP' or 'UDP'")
        if not 0 < p.port < 65536:
            raise ValueError(f"{p}: port out of range")
        try:
            ipaddress.ip_address(p.dst_ip)
        except ValueError:
            raise ValueError(f"{p}: dst_ip must be an IP address") from None


def _fd_budget(concurrency: int) -> int:
    """How many sockets may be open at once: raise the soft fd limit to the hard one, keep half spare."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return max(1, min(concurrency, soft // 2))


def _error_text(code: int) -> str:
    """'connection refused', 'no route to host', ... from an errno."""
    return os.strerror(code)[:1].lower() + os.strerror(code)[1:]


_REFUSAL_TEXTS = frozenset(map(_error_text, REFUSALS))


def _parse_clientip(text: str) -> str | None:
    """The IP of netexec's "ip:port" / "[ip]:port", or None if it is not that."""
    host, sep, port = text.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return host if sep and port.isdigit() else None


def _verdict(protocol: str, reply: bytes) -> tuple[str | None, str | None, str | None]:
    """(seen_source, error, server) for a complete reply."""
    server = None
    if protocol == "TCP":
        head, sep, body = reply.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = lines[0].split(b" ")
        if not sep or len(status) < 2 or not status[0].startswith(b"HTTP/"):
            return None, f"bad reply: not HTTP: {reply[:60]!r}", None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"x-netexec-hostname":
                server = value.strip().decode("utf-8", "replace")
        if status[1] != b"200":
            return None, f"bad reply: HTTP {status[1].decode('latin-1')}", server
        text = body.decode("latin-1")
    else:
        server, _, text = reply.decode("utf-8", "replace").rpartition(" ")
        server = server or None
    seen = _parse_clientip(text)
    return (seen, None, server) if seen else (None, f"bad reply: {reply[:60]!r}", server)


class _Runner:
    """The worker thread's loop: start probes source by source, drive them all with one selector."""

    def __init__(self, probes: Sequence[Probe], fds: dict[str, int], timeout: float, budget: int,
                 first_port: dict[str, int], cgroups: Mapping[str, str]):
        self.probes, self.fds, self.timeout, self.budget = probes, fds, timeout, budget
        self.cgroups = cgroups
        self.results: list[ProbeResult | None] = [None] * len(probes)
        self.first_port, self.used = first_port, dict.fromkeys(first_port, 0)
        self.sel = selectors.DefaultSelector()
        self.inflight: dict[int, _Attempt] = {}  # by fd; insertion order is deadline order

    def run(self) -> list[ProbeResult]:
        if not self.cgroups:
            return self._run(lambda _: None)
        with cgroup.joined() as join:
            return self._run(lambda netns: join(self.cgroups.get(netns)))

    def _run(self, join: Callable[[str], None]) -> list[ProbeResult]:
        """join(netns): the process moves to the cgroup of that namespace's node (proxy ebpf), so
        the sockets it makes there meet the node's socket LB, as the pod's own would."""
        groups: dict[str, deque[int]] = {}
        for i, p in enumerate(self.probes):
            groups.setdefault(p.src_netns, deque()).append(i)
        pending = deque(groups.items())  # a whole namespace at a time: one setns each
        current = None
        try:
            while pending or self.inflight:
                while pending and len(self.inflight) < self.budget:
                    netns, queue = pending[0]
                    if netns != current:
                        enter(self.fds[netns], netns)
                        join(netns)
                        current = netns
                    self.start(queue.popleft())
                    if not queue:
                        pending.popleft()
                if not self.inflight:
                    continue
                first = next(iter(self.inflight.values()))
                for key, mask in self.sel.select(max(0.0, first.deadline - time.monotonic())):
                    self.step(key.data, mask)
                now = time.monotonic()
                late = [a for a in self.inflight.values() if a.deadline <= now]
                for a in late:
                    phase = "waiting for reply" if a.connected else "connecting"
                    self.finish(a, None, f"timeout after {self.timeout}s ({phase})")
        finally:
            for a in list(self.inflight.values()):
                a.sock.close()
            self.sel.close()
        return self.results  # type: ignore[return-value]  # every slot was filled

    def start(self, index: int) -> None:
        probe = self.probes[index]
        family = socket.AF_INET6 if ":" in probe.dst_ip else socket.AF_INET
        kind = socket.SOCK_STREAM if probe.protocol == "TCP" else socket.SOCK_DGRAM
        start = time.monotonic()
        try:
            sock = socket.socket(family, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        except OSError as e:
            self.results[index] = ProbeResult(probe, False, None, f"socket: {e.strerror}", 0.0)
            return
        a = _Attempt(index, probe, sock, start, start + self.timeout)
        self.inflight[sock.fileno()] = a
        code = self.bind(sock, probe.src_netns)
        if code:
            return self.finish(a, None, f"bind: {_error_text(code)}")
        # UDP is connected too, so ICMP errors (port/host unreachable) come back on recv
        code = sock.connect_ex((probe.dst_ip, probe.port))
        if code not in (0, errno.EINPROGRESS):
            return self.finish(a, None, _error_text(code))
        if probe.protocol == "UDP":
            try:
                sock.send(UDP_REQUEST)
            except OSError as e:
                return self.finish(a, None, _error_text(e.errno))
        self.sel.register(sock, selectors.EVENT_READ if a.connected else selectors.EVENT_WRITE, a)

    def bind(self, sock: socket.socket, netns: str) -> int:
        """Bind to this namespace's next reserved source port, skipping ports a server holds;
        0 or the errno that stopped it."""
        for _ in range(SLACK):
            port = ports.port_at(self.first_port[netns], self.used[netns])
            self.used[netns] += 1
            try:
                sock.bind(("::" if sock.family == socket.AF_INET6 else "0.0.0.0", port))
                return 0
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    return e.errno
        return errno.EADDRINUSE

    def step(self, a: _Attempt, mask: int) -> None:
        """Advance one probe: connect done -> send request -> read reply to EOF (one datagram for UDP)."""
        sock = a.sock
        if not a.connected:
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                return self.finish(a, None, _error_text(code))
            a.connected = True
        try:
            if a.out:
                a.out = a.out[sock.send(a.out):]
                if not a.out:
                    self.sel.modify(sock, selectors.EVENT_READ, a)
                return
            if not mask & selectors.EVENT_READ:
                return
            data = sock.recv(MAX_REPLY)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            return self.finish(a, None, _error_text(e.errno))
        a.reply += data
        if len(a.reply) > MAX_REPLY:
            return self.finish(a, None, f"bad reply: more than {MAX_REPLY} bytes")
        if a.probe.protocol == "UDP" or not data:
            self.finish(a, *_verdict(a.probe.protocol, bytes(a.reply)))

    def finish(self, a: _Attempt, seen: str | None, error: str | None, server: str | None = None) -> None:
        fd = a.sock.fileno()
        if fd in self.inflight:
            del self.inflight[fd]
            if fd in self.sel.get_map():
                self.sel.unregister(fd)
            a.sock.close()
        self.results[a.index] = ProbeResult(a.probe, error is None, seen, error, time.monotonic() - a.start, server)


def adapted_timeout(timeout: float, rtts: Sequence[float], attempt: int) -> float:
    """The wait for try `attempt` (2, 3, ...): at least four times the round trip that 95% of the
    passing probes stayed under (a loaded machine answers late, not never; one straggler that
    waited in the engine's own queue does not count), doubling with each try."""
    ordered = sorted(rtts)
    slow = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] if ordered else 0.0
    return min(MAX_TIMEOUT, max(timeout, 4 * slow) * 2 ** (attempt - 2))


def to_retry(results: Sequence[ProbeResult], expect: Sequence[str | None], judged_with: Sequence[float],
             wait: float) -> list[int]:
    """Which probes get another try: every unanswered one where a reply is expected (or nothing is
    said); one expected to be refused that was not (the kernel rate-limits ICMP errors, so one may
    be lost); one expected to be silent only while the machine proved slower than the timeout that
    judged it (its silence might have been load, not a drop)."""
    def again(r: ProbeResult, e: str | None, t: float) -> bool:
        if r.ok:
            return False
        if e == SILENCE:
            return t < wait and r.kind == SILENCE
        return e != REFUSED or r.kind != REFUSED
    return [i for i, (r, e, t) in enumerate(zip(results, expect, judged_with)) if again(r, e, t)]


def _round(probes: Sequence[Probe], timeout: float, concurrency: int, cgroups: Mapping[str, str]) -> list[ProbeResult]:
    wanted: dict[str, int] = {}
    for p in probes:
        wanted[p.src_netns] = wanted.get(p.src_netns, 0) + 1
    first_port = ports.reserve({ns: n + SLACK for ns, n in wanted.items()})
    fds: dict[str, int] = {}
    gone: dict[str, str] = {}
    try:
        for ns in wanted:
            try:
                fds[ns] = open_netns(ns)
            except NetnsError as e:  # a pod deleted meanwhile: its probes fail, the others run
                gone[ns] = str(e)
        runnable = [p for p in probes if p.src_netns in fds]
        runner = _Runner(runnable, fds, timeout, _fd_budget(concurrency), first_port, cgroups)
        done = iter(in_worker(runner.run) if runnable else [])
        return [ProbeResult(p, False, None, gone[p.src_netns], 0.0) if p.src_netns in gone else next(done)
                for p in probes]
    finally:
        for fd in fds.values():
            os.close(fd)


def run_probes(probes: Sequence[Probe], timeout: float = 1.0, concurrency: int = 256,
               expect: Sequence[str | None] | None = None, attempts: int = ATTEMPTS,
               cgroups: Mapping[str, str] | None = None) -> list[ProbeResult]:
    """Run every probe concurrently (at most `concurrency` sockets at once); results in input order.

    expect (parallel to probes): the kind each should see (REPLY, SILENCE, REFUSED), None where
    nothing is said. Probes are retried (see to_retry) up to `attempts` tries in all; each result
    keeps what its earlier tries saw, and a reply that needed retries is confirmed (`_confirm`).
    A source namespace that does not exist fails its probes with that reason; a malformed probe
    raises ValueError. cgroups: source namespace -> the cgroup its sockets are made in (proxy ebpf:
    lab.kube_proxy.ebpf.netns_cgroups), so they meet that node's socket LB.
    """
    cgroups = cgroups or {}
    _check(probes)
    if not probes:
        return []
    expect = list(expect) if expect is not None else [None] * len(probes)
    if len(expect) != len(probes):
        raise ValueError(f"{len(probes)} probes but {len(expect)} expectations")
    results = _round(probes, timeout, concurrency, cgroups)
    rtts = [r.elapsed for r in results if r.ok]
    judged_with = [timeout] * len(probes)
    for attempt in range(2, attempts + 1):
        wait = adapted_timeout(timeout, rtts, attempt)
        again = to_retry(results, expect, judged_with, wait)
        if not again:
            break
        retried = _round([probes[i] for i in again], wait, min(concurrency, RETRY_CONCURRENCY), cgroups)
        for i, r in zip(again, retried):
            results[i] = replace(r, attempts=results[i].attempts + 1,
                                 earlier=results[i].earlier + (results[i].kind,))
            judged_with[i] = wait
    return _confirm(probes, results, adapted_timeout(timeout, rtts, attempts), concurrency, cgroups)


def _confirm(probes: Sequence[Probe], results: list[ProbeResult], wait: float, concurrency: int,
             cgroups: Mapping[str, str]) -> list[ProbeResult]:
    """Ask every probe that was answered only after retries again, CONFIRMATIONS times at once: a
    settled state (a machine that was merely slow) answers each; a stale rule that drops some
    picks does not. The reply stays final; `settled` records what the confirmations saw."""
    late = [i for i, r in enumerate(results) if r.ok and r.attempts > 1]
    if not late:
        return results
    again = _round([probes[i] for i in late for _ in range(CONFIRMATIONS)], wait, min(concurrency, RETRY_CONCURRENCY),
                   cgroups)
    for n, i in enumerate(late):
        results[i] = replace(results[i], settled=all(r.ok for r in again[n * CONFIRMATIONS:(n + 1) * CONFIRMATIONS]))
    return results
