"""Containers without a runtime: each container is a process inside its pod's network namespace.

Programs (`command:`) start through `ip netns exec`, so /etc/netns/<pod>/ files apply, as
docs/PITFALLS.md explains. The built-in netexec image starts from a fork server: one interpreter forks
a child per container, which enters the pod's namespace and serves — a fork costs a fraction of a
millisecond where a fresh Python costs ~12 ms, and a `lab up` starts dozens of them."""
from __future__ import annotations

import select
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Mapping

from lab.controlplane.state import HOST_PORT, ContainerState, HostState, PodState, container_key
from lab.errors import LabError
from lab import host
from lab.host import netns_path
from lab.host.record import LabRecord

NETEXEC = Path(__file__).resolve().parent.parent / "images" / "netexec.py"
READY_TIMEOUT = 10.0


# a pod or host with an IPv6 address serves on both families, each on its own socket
DUAL_BINDS = ["--bind", "0.0.0.0", "--bind", "::"]


def netexec_args(pod: PodState, c: ContainerState) -> list[str]:
    args = ["--hostname", pod.uts_name, "--namespace", pod.namespace]
    for p in c.ports:
        args += ["--tcp" if p.protocol == "TCP" else "--udp", str(p.port)]
    return args + (DUAL_BINDS if pod.ip_of(6) else [])


def argv_for(c: ContainerState) -> list[str]:
    """The program of a non-netexec container."""
    return ["sleep", "infinity"] if c.image == "pause" else list(c.argv)


def env_for(pod: PodState, c: ContainerState) -> dict[str, str]:
    """As the kubelet orders them: the Service variables, then the container's own env (which wins)."""
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME": pod.uts_name,
            **dict(pod.service_env), **dict(c.env)}


Programs = Mapping[str, Callable[[LabRecord, PodState], list[str]]]  # image -> program: the controllers' images


class Starter:
    """Starts the containers of a `lab up` and knows when the netexec ones are ready. `programs`
    gives the program of each add-on image (lab.runtime.controllers.programs(): the controllers own
    them); any other image runs its own command."""

    def __init__(self, record: LabRecord, programs: Programs):
        self.record = record
        self.programs = programs
        record.subdir("logs")
        self.lock = threading.Lock()
        self.logs: dict[str, Path] = {}
        self.server = host.spawn([sys.executable, "-I", "-S", str(NETEXEC), "--forkserver"], pipes=True)

    def start_pod(self, pod: PodState) -> None:
        for c in pod.containers:
            key, log = container_key(pod, c), self.record.log_path(pod, c)
            if c.image == "netexec":
                line = "\t".join([key, netns_path(pod.netns), str(self.record.pod_uts(pod)), str(log),
                                  self.record.node_cgroup(pod.node) or "-", *netexec_args(pod, c)])
                with self.lock:
                    self.logs[key] = log
                    self.server.stdin.write(line + "\n")
                    self.server.stdin.flush()
                continue
            program = self.programs[c.image](self.record, pod) if c.image in self.programs else argv_for(c)
            proc = host.spawn(self.record.in_pod(pod, program), log=log, env=env_for(pod, c), fresh_log=True)
            with self.lock:
                self.record.pids[key] = proc.pid

    def start_host(self, machine: HostState) -> None:
        """Plain underlay hosts answer like netexec on HOST_PORT (TCP and UDP): what the outside
        world sees of the lab, e.g. the node address egress NAT gives a pod."""
        key = f"host/{machine.name}/netexec"
        self.logs[key] = self.record.dir / "logs" / f"host_{machine.name}.log"
        line = "\t".join([key, netns_path(machine.netns), str(self.record.uts_path(machine.netns)), str(self.logs[key]), "-",
                          "--hostname", machine.name,
                           "--tcp", str(HOST_PORT), "--udp", str(HOST_PORT), *(DUAL_BINDS if machine.ip6 else [])])
        with self.lock:
            self.server.stdin.write(line + "\n")
            self.server.stdin.flush()

    def abandon(self) -> None:
        """Stop starting: the fork server forks what is queued and exits; record every child."""
        self.server.stdin.close()
        self.server.wait(timeout=5)
        for line in self.server.stdout.read().splitlines():
            word, key, value = (line.split() + [""])[:3]
            if word == "pid":
                self.record.pids[key] = int(value)
        self.record.save()

    def wait_ready(self) -> None:
        """Every netexec bound its ports, or a LabError naming the ones that did not."""
        self.server.stdin.close()
        out = self.server.stdout
        deadline = time.monotonic() + READY_TIMEOUT
        ready, failed = set(), {}
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([out], [], [], left)[0]:
                    break
                line = out.readline()
                if not line:
                    break  # every child reported and let go of the pipe
                word, key, value = (line.split() + [""])[:3]  # pid KEY PID | ready KEY | failed KEY CODE
                if word == "pid":
                    self.record.pids[key] = int(value)
                elif word == "ready":
                    ready.add(key)
                else:
                    failed[key] = value
        finally:
            self.record.save()
            out.close()
            self.server.wait(timeout=5)
        missing = [k for k in self.logs if k not in ready]
        if missing:
            raise LabError("containers not ready: " + "; ".join(self._why(k, failed.get(k)) for k in missing))

    def _why(self, key: str, code) -> str:
        try:
            tail = self.logs[key].read_text(errors="replace").strip().splitlines()[-2:]
        except OSError:
            tail = []
        status = f"exited (code {code})" if code is not None else f"no answer within {READY_TIMEOUT:.0f}s"
        return f"{key} {status}: {' | '.join(tail) or 'no output'}"
