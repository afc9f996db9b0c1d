"""Waiting for readiness the way kubectl users do (`kubectl wait --for=condition=Ready`, `kind
create cluster --wait`): which pods a target names, how long their readiness probes may take,
what is still awaited (pure); and the loop that watches the lab's record, where the agent (the
lab's kubelet) writes each pod's readiness."""
from __future__ import annotations

import re
import time
from typing import Callable, Optional, Sequence

from lab.controlplane.state import ClusterState, PodState, container_key
from lab.errors import LabError
from lab.host import record as records
from lab.node import prober

STARTUP = 5.0  # seconds a pod without a readinessProbe may take to count as ready (its containers run)
CONDITIONS = ("condition=Ready", "condition=Available")  # Available: a Deployment's, all its pods ready


_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def duration(text: str) -> float:
    """kubectl's durations: 30s, 2m, 1m30s, 500ms, or plain seconds."""
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise LabError(f"invalid duration {text!r}: write e.g. 30s, 2m or 1m30s")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def select(state: ClusterState, targets: Sequence[str], namespace: Optional[str], every: bool) -> list[PodState]:
    """The pods of `pod/NAME` and `deploy/NAME` (also deployment/NAME), or of the namespace with
    --all (namespace None: every namespace)."""
    mine = [p for p in state.pods if namespace is None or p.namespace == namespace]
    if every:
        return mine
    if not targets:
        raise LabError("say what to wait for: pod/NAME, deploy/NAME or --all")
    out: list[PodState] = []
    for target in targets:
        kind, _, name = target.partition("/")
        if kind in ("pod", "pods", "po") and name:
            found = [p for p in mine if p.name == name]
        elif kind in ("deploy", "deployment", "deployments") and name:
            found = [p for p in mine if p.owner == f"Deployment/{name}"]
        else:
            raise LabError(f"cannot wait for {target!r}: give pod/NAME, deploy/NAME or --all")
        if not found:
            raise LabError(f'{target} not found in namespace "{namespace}"')
        out += [p for p in found if p not in out]
    return out


def bound(pods: Sequence[PodState]) -> float:
    """How long the kubelet may take to find them ready: the slowest readinessProbe's
    initialDelaySeconds + periodSeconds x failureThreshold (a probe that fails that often is
    judged not ready), or STARTUP for pods without one."""
    return max([STARTUP] + [c.readiness.initial_delay + c.readiness.period * c.readiness.failure_threshold
                            for p in pods for c in p.containers if c.readiness])


def progress(pods: Sequence[PodState]) -> str:
    """The line a waiting user reads: how many pods, and the slowest probe's initial delay."""
    slowest = max(((c.readiness.initial_delay, p.name) for p in pods for c in p.containers if c.readiness),
                  default=(0, ""))
    why = f" ({slowest[1]}: initialDelaySeconds {slowest[0]})" if slowest[0] else ""
    return f"waiting for {len(pods)} pod{'s' if len(pods) != 1 else ''} to be ready{why}"


def why_not(rec: records.LabRecord, pod: PodState) -> str:
    """A pod not ready, with its probes' last results (kubectl wait's timeout line, and why)."""
    seen = prober.status(rec).detail
    details = [f"{c.name}: {seen[container_key(pod, c)]}" for c in pod.containers
               if c.readiness and container_key(pod, c) in seen]
    return f"pod/{pod.name}" + (f" (readinessProbe {'; '.join(details)})" if details else " (not running)")


def probed(state: ClusterState) -> list[PodState]:
    """The pods with a readinessProbe: those `lab run` waits for before it checks."""
    return [p for p in state.pods if any(c.readiness for c in p.containers)]


def until_ready(lab: Optional[str], choose: Callable[[ClusterState], list[PodState]], timeout: Optional[float] = None,
                progress_line: Callable[[str], None] = lambda _: None, poll: float = 0.25) -> tuple[list[PodState], list[str]]:
    """Wait until the pods `choose` picks are ready, or `timeout` (default: their probes' bound)
    passes. Returns the pods waited for, and those still not ready, each with why."""
    rec = records.find(lab)
    pods = choose(rec.state)
    deadline = time.monotonic() + (bound(pods) if timeout is None else timeout)
    waiting = [p for p in pods if not rec.pod_ready.get(p.key)]
    said = ""
    while waiting and time.monotonic() < deadline:
        line = progress(waiting)
        if line != said:
            progress_line(line)
            said = line
        time.sleep(poll)
        rec = records.load(rec.name)
        waiting = [p for p in waiting if not rec.pod_ready.get(p.key)]
    return pods, [why_not(rec, p) for p in waiting]
