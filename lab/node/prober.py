"""Readiness, as the kubelet decides it: each container's readinessProbe is run from its node
(httpGet, tcpSocket and grpc connect from the node's namespace to the pod IP, exec runs inside the pod),
and consecutive results move the container between ready and not ready by the probe's thresholds."""
from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Mapping

from lab.controlplane.state import ClusterState, ContainerState, PodState, ReadinessState, container_key
from lab import host
from lab.host.record import LabRecord
from lab.node import grpc_health

Alive = Callable[[str], bool]
KUBELET = "kubelet"  # the kubelet's section of the lab's record


@dataclass(frozen=True)
class Status:
    """The kubelet's status: each probed container's verdict, what its probe last saw, and its
    failure event ([first, last, count], as the agent counts them). `lab get`, `describe`, `wait`
    and `check` read it; the kubelet's loop (`lab up`'s first round, `lab apply`'s, the agent)
    writes it, through write_status only."""

    ready: dict[str, bool]
    detail: dict[str, str]
    failing: dict[str, list]


def status(record: LabRecord) -> Status:
    s = record.sections.get(KUBELET, {})
    return Status(dict(s.get("ready", {})), dict(s.get("detail", {})), dict(s.get("failing", {})))


def write_status(record: LabRecord, ready: Mapping[str, bool], detail: Mapping[str, str],
                 failing: Mapping[str, list]) -> None:
    record.section(KUBELET).update(ready=dict(ready), detail=dict(detail), failing=dict(failing))


@dataclass
class Tracker:
    """One container's probe history: the kubelet's success/failure counting."""

    spec: ReadinessState
    ready: bool = False
    successes: int = 0
    failures: int = 0

    def record(self, ok: bool) -> None:
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= self.spec.success_threshold:
                self.ready = True
        else:
            self.successes, self.failures = 0, self.failures + 1
            if self.failures >= self.spec.failure_threshold:
                self.ready = False


def probed(state: ClusterState) -> list[tuple[PodState, ContainerState]]:
    return [(p, c) for p in state.pods for c in p.containers if c.readiness]


def pod_readiness(state: ClusterState, container_ready: Mapping[str, bool], alive: Alive) -> dict[str, bool]:
    """A pod is ready when each of its containers runs and passes its probe (if it has one)."""
    return {p.key: all(alive(k) and container_ready.get(k, True) for k in (container_key(p, c) for c in p.containers))
            for p in state.pods}


def _connect(host: str, port: int, timeout: float, request: bytes | None, what: str) -> tuple[bool, str]:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            if request is None:
                return True, f"{what}: connected"
            s.sendall(request)
            status = s.recv(64).split(b" ", 2)
            if len(status) >= 2 and status[1].isdigit():
                code = int(status[1])
                return 200 <= code < 400, f"{what} -> {code}"
            return False, f"{what} -> not an HTTP answer"
    except OSError as e:
        return False, f"{what}: {e.strerror or e}"


def _grpc(host: str, port: int, timeout: float, service: str, what: str) -> tuple[bool, str]:
    """One Health/Check call, as the kubelet's gRPC probe makes it: ready only on SERVING."""
    reply, buffer = grpc_health.Reply(), bytearray()
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(grpc_health.request(f"{host}:{port}", service))
            while not reply.ended:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = s.recv(65536)
                if not chunk:
                    break
                buffer += chunk
                for kind, flags, stream, payload in grpc_health.frames(buffer):
                    if kind == grpc_health.SETTINGS and not flags & grpc_health.ACK:
                        s.sendall(grpc_health.frame(grpc_health.SETTINGS, grpc_health.ACK, 0))
                    reply.feed(kind, flags, stream, payload)
    except TimeoutError:
        return False, f"{what}: timed out after {timeout}s"
    except OSError as e:
        return False, f"{what}: {e.strerror or e}"
    except (IndexError, ValueError):
        return False, f"{what} -> not an HTTP/2 gRPC answer"
    ok, result = reply.verdict()
    return ok, f"{what} -> {result}"


def run_probe(state: ClusterState, pod: PodState, c: ContainerState) -> tuple[bool, str]:
    """One probe, as the kubelet runs it; any error is a failure. Returns the verdict and what
    happened (e.g. "GET /_healthz -> 404"), which `lab check` shows for a Service left without
    ready endpoints."""
    r = c.readiness
    if r.kind == "exec":
        what = f"exec {' '.join(r.command)}"
        done = host.run(["ip", "netns", "exec", pod.netns, *r.command], timeout=r.timeout, check=False)
        if done.code is None:
            return False, f"{what}: timed out after {r.timeout}s"
        return done.ok, f"{what} -> exit {done.code}"
    if r.kind == "grpc":
        what = f"grpc Health/Check{f' {r.service}' if r.service else ''} (port {r.port})"
        return host.in_ns(state.node(pod.node).netns, lambda: _grpc(pod.ip, r.port, r.timeout, r.service, what))
    request, what = None, f"tcp {r.port}"
    if r.kind == "http":
        what = f"GET {r.path} (port {r.port})"
        request = (f"GET {r.path} HTTP/1.1\r\nHost: {pod.ip}:{r.port}\r\nUser-Agent: kube-probe/lab\r\n"
                   "Connection: close\r\n\r\n").encode()
    return host.in_ns(state.node(pod.node).netns, lambda: _connect(pod.ip, r.port, r.timeout, request, what))


def run_probes(state: ClusterState, targets: list[tuple[PodState, ContainerState]]) -> list[tuple[bool, str]]:
    if not targets:
        return []
    with ThreadPoolExecutor(min(16, len(targets))) as pool:
        return list(pool.map(lambda t: run_probe(state, *t), targets))


def first_round(state: ClusterState) -> tuple[dict[str, bool], dict[str, str], dict[str, list]]:
    """What `lab up` knows before it returns: each probe without an initial delay run once.
    Returns the verdicts, what each probe saw, and the failures as the agent counts them
    (key -> [first, last, count])."""
    targets = [(p, c) for p, c in probed(state) if c.readiness.initial_delay == 0]
    now, failing = time.time(), {}
    verdicts = {container_key(p, c): False for p, c in probed(state)}
    details = {container_key(p, c): f"initialDelaySeconds {c.readiness.initial_delay}: not probed yet"
               for p, c in probed(state)}
    for (p, c), (ok, detail) in zip(targets, run_probes(state, targets)):
        tracker = Tracker(c.readiness)
        tracker.record(ok)
        verdicts[container_key(p, c)] = tracker.ready
        details[container_key(p, c)] = detail
        if not ok:
            failing[container_key(p, c)] = [now, now, 1]
    return verdicts, details, failing
