"""Readiness, as the kubelet decides it: each container's readinessProbe is run from its node
(httpGet and tcpSocket connect from the node's namespace to the pod IP, exec runs inside the pod),
and consecutive results move the container between ready and not ready by the probe's thresholds."""
from __future__ import annotations

import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Mapping

from lab.controlplane.state import ClusterState, ContainerState, PodState, ReadinessState
from lab.runtime.netns import in_netns

Alive = Callable[[str], bool]


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
    return {
        p.key: all(alive(f"{p.key}/{c.name}") and container_ready.get(f"{p.key}/{c.name}", True) for c in p.containers)
        for p in state.pods
    }


def _connect(host: str, port: int, timeout: float, request: bytes | None) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            if request is None:
                return True
            s.sendall(request)
            status = s.recv(64).split(b" ", 2)
            return len(status) >= 2 and status[1].isdigit() and 200 <= int(status[1]) < 400
    except OSError:
        return False


def run_probe(state: ClusterState, pod: PodState, c: ContainerState) -> bool:
    """One probe, as the kubelet runs it; any error is a failure."""
    r = c.readiness
    if r.kind == "exec":
        try:
            return subprocess.run(["ip", "netns", "exec", pod.netns, *r.command], capture_output=True,
                                  timeout=r.timeout).returncode == 0
        except (subprocess.TimeoutExpired, OSError):
            return False
    request = None
    if r.kind == "http":
        request = f"GET {r.path} HTTP/1.1\r\nHost: {pod.ip}:{r.port}\r\nUser-Agent: kube-probe/lab\r\nConnection: close\r\n\r\n".encode()
    return in_netns(state.node(pod.node).netns, lambda: _connect(pod.ip, r.port, r.timeout, request))


def run_probes(state: ClusterState, targets: list[tuple[PodState, ContainerState]]) -> list[bool]:
    if not targets:
        return []
    with ThreadPoolExecutor(min(16, len(targets))) as pool:
        return list(pool.map(lambda t: run_probe(state, *t), targets))


def first_round(state: ClusterState) -> dict[str, bool]:
    """What `lab up` knows before it returns: each probe without an initial delay run once."""
    targets = [(p, c) for p, c in probed(state) if c.readiness.initial_delay == 0]
    verdicts = {f"{p.key}/{c.name}": False for p, c in probed(state)}
    for (p, c), ok in zip(targets, run_probes(state, targets)):
        tracker = Tracker(c.readiness)
        tracker.record(ok)
        verdicts[f"{p.key}/{c.name}"] = tracker.ready
    return verdicts
