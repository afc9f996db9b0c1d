"""Containers without a runtime: each container is a process started inside its pod's namespace
through `ip netns exec` (so /etc/netns/<pod>/ files apply, as PITFALLS.md explains). Built-in
images are programs the lab ships; any other image runs the container's `command:`."""
from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

from lab.controlplane.state import ContainerState, PodState
from lab.errors import LabError
from lab.runtime.record import LabRecord

NETEXEC = Path(__file__).resolve().parent.parent / "images" / "netexec.py"
READY_TIMEOUT = 10.0


def container_key(pod: PodState, c: ContainerState) -> str:
    return f"{pod.namespace}/{pod.name}/{c.name}"


def argv_for(pod: PodState, c: ContainerState, ready_fd: int | None) -> list[str]:
    if c.image == "netexec":
        argv = [sys.executable, "-I", "-S", str(NETEXEC), "--hostname", pod.name]
        for p in c.ports:
            argv += ["--tcp" if p.protocol == "TCP" else "--udp", str(p.port)]
        return argv + (["--ready-fd", str(ready_fd)] if ready_fd is not None else [])
    if c.image == "pause":
        return ["sleep", "infinity"]
    return list(c.argv)


def env_for(pod: PodState, c: ContainerState) -> dict[str, str]:
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME": pod.name,
            **dict(c.env)}


def log_path(record: LabRecord, pod: PodState, c: ContainerState) -> Path:
    return record.subdir("logs") / f"{pod.namespace}_{pod.name}_{c.name}.log"


Waiting = dict[int, tuple[str, subprocess.Popen, Path]]  # ready-pipe fd -> (container, process, log)


def start_pod(record: LabRecord, pod: PodState) -> Waiting:
    """Start a pod's containers; the returned pipes say when each netexec has bound its ports."""
    waiting: Waiting = {}
    for c in pod.containers:
        r, w = os.pipe() if c.image == "netexec" else (None, None)
        log = log_path(record, pod, c)
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", pod.netns, *argv_for(pod, c, w)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env_for(pod, c),
                start_new_session=True, pass_fds=(w,) if w is not None else (),
            )
        record.pids[container_key(pod, c)] = proc.pid
        if w is not None:
            os.close(w)
            waiting[r] = (container_key(pod, c), proc, log)
    return waiting


def wait_ready(waiting: Waiting) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    try:
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LabError(f"containers not ready after {READY_TIMEOUT:.0f}s: {', '.join(k for k, _, _ in waiting.values())}")
            readable, _, _ = select.select(list(waiting), [], [], left)
            for fd in readable:
                key, proc, log = waiting.pop(fd)
                data = os.read(fd, 64)
                os.close(fd)
                if not data.startswith(b"ready"):
                    proc.wait(timeout=2)
                    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                    raise LabError(f"container {key} exited (code {proc.returncode}) before it was ready: "
                                   f"{' | '.join(tail) or 'no output'} (log: {log})")
    finally:
        for fd in waiting:
            os.close(fd)
