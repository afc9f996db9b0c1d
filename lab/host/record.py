"""The lab's record on disk: what it is (the ClusterState) and everything it owns.

Ownership is written *before* a thing is created (write-ahead), so a `lab up` killed at any point
leaves a record from which `lab clean` removes exactly what the lab made and nothing else.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

from lab.controlplane.state import ClusterState, ContainerState, PodState
from lab.errors import LabError
from lab.host.cgroup import placed

RUN_ROOT = Path(os.environ.get("K8S_NETLAB_RUN", "/run/k8s-netlab"))


def proc_start(pid: int) -> Optional[str]:
    """A live process's start time (field 22 of /proc/PID/stat): with the PID it identifies a
    process. None when it is gone, or a zombie (it has ended; only its parent has not reaped it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if stat[0] == "Z" else stat[19]


LEDGER = ("netns", "links", "ovs_bridges", "shells", "port_tag", "etc_netns", "pids", "agent", "cgroups", "bpffs")
ETC_NETNS = Path("/etc/netns")  # a namespace's files that `ip netns exec` bind-mounts (its resolv.conf)


@dataclass
class LabRecord:
    """The lab on disk, in three parts. The ownership ledger (LEDGER): everything the lab created
    outside what its state says, each claimed before it exists, so that `lab down` and `lab clean`
    remove exactly that with no other code. The state and readiness the controllers last synced,
    entering together through commit(). And the status sections: one per owner (a controller by
    its registered name, the kubelet, `lab node`, `lab fault`, `lab exercise`), each written only by
    its owner through section()."""

    name: str
    state: ClusterState
    status: str = "creating"                       # creating | running | deleting
    owner_pid: int = 0                             # the `lab up` building it, while creating
    owner_start: Optional[str] = None
    created: float = field(default_factory=time.time)
    # --- the ownership ledger ---
    netns: list[str] = field(default_factory=list)  # named namespaces, in creation order
    links: list[str] = field(default_factory=list)  # links in the root namespace
    ovs_bridges: list[str] = field(default_factory=list)
    shells: list[str] = field(default_factory=list)  # Mininet shell names ("mininet:<name>")
    port_tag: str = ""                              # this run's part of the switch port names
    etc_netns: list[str] = field(default_factory=list)  # /etc/netns/<name> folders (resolv.conf)
    pids: dict[str, int] = field(default_factory=dict)  # "<ns>/<pod>/<container>" -> pid
    agent: int = 0                                  # the lab's kubelet-like agent process
    cgroups: list[str] = field(default_factory=list)  # proxy ebpf: the lab's cgroup, then one per node
    bpffs: str = ""                                 # proxy ebpf: the lab's own bpffs mount (pins of programs and maps)
    # --- committed with the state ---
    pod_ready: dict[str, bool] = field(default_factory=dict)  # pod key -> ready, as the controllers synced it
    # --- status sections: owner -> its own data (JSON) ---
    sections: dict[str, dict] = field(default_factory=dict)
    _dumped: tuple = field(default=(), repr=False, compare=False)  # (state, state.to_dict()): see save()

    @property
    def dir(self) -> Path:
        return RUN_ROOT / self.name

    def section(self, owner: str) -> dict:
        """The owner's status section, made empty on first use; only the owner writes it (the
        caller saves)."""
        return self.sections.setdefault(owner, {})

    # --- life cycle ---
    @classmethod
    def create(cls, state: ClusterState) -> "LabRecord":
        RUN_ROOT.mkdir(parents=True, exist_ok=True)
        rec = cls(name=state.lab, state=state, owner_pid=os.getpid(), owner_start=proc_start(os.getpid()))
        try:
            rec.dir.mkdir()
        except FileExistsError:
            ensure_free(state.lab)
            raise
        rec.save()
        return rec

    def save(self) -> None:
        if not self._dumped or self._dumped[0] is not self.state:
            # A ClusterState is frozen: its dict is made once, not at every save (asdict of a
            # 1000-pod state takes ~0.15 s, and `lab up` saves the record 8 times).
            self._dumped = (self.state, self.state.to_dict())
        data = {
            "format": FORMAT, "name": self.name, "status": self.status, "owner_pid": self.owner_pid,
            "owner_start": self.owner_start, "created": self.created,
            **{k: getattr(self, k) for k in LEDGER},  # the ledger's fields stay where format 1 had them
            "pod_ready": self.pod_ready, "sections": self.sections, "state": self._dumped[1],
        }
        tmp = self.dir / f"record.json.{os.getpid()}.{threading.get_ident()}.tmp"  # each writer its own
        tmp.write_text(json.dumps(data, separators=(",", ":")))  # no indent: the C encoder, ~10x faster
        os.replace(tmp, self.dir / "record.json")

    def owner_alive(self) -> bool:
        return self.owner_start is not None and proc_start(self.owner_pid) == self.owner_start

    def remove_etc_netns(self, names: Optional[Sequence[str]] = None) -> None:
        """Remove the lab's /etc/netns folders (all, or those of `names`) and their ledger entries."""
        from lab import host

        for ns in self.etc_netns if names is None else names:
            host.remove(ETC_NETNS / ns)
        self.etc_netns = [n for n in self.etc_netns if names is not None and n not in names]

    def remove_dir(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def commit(self, state: ClusterState, pod_ready: dict[str, bool]) -> None:
        """The one place a new cluster state enters the record: the orchestrator calls it once
        every effect of the change is in place (the caller saves)."""
        self.state, self.pod_ready = state, dict(pod_ready)

    # --- write-ahead claims ---
    def claim(self, *, netns: tuple[str, ...] = (), links: tuple[str, ...] = (), ovs: tuple[str, ...] = (),
              shells: tuple[str, ...] = (), etc_netns: tuple[str, ...] = ()) -> None:
        self.etc_netns += [n for n in etc_netns if n not in self.etc_netns]
        self.netns += [n for n in netns if n not in self.netns]
        self.links += [n for n in links if n not in self.links]
        self.ovs_bridges += [n for n in ovs if n not in self.ovs_bridges]
        self.shells += [n for n in shells if n not in self.shells]
        self.save()

    # --- places ---
    def log_path(self, pod: PodState, container: ContainerState) -> Path:
        """Where a container's output goes (`lab logs` reads it)."""
        return self.dir / "logs" / f"{pod.namespace}_{pod.name}_{container.name}.log"

    def uts_path(self, netns: str) -> Path:
        """The bind mount that keeps a pod's (or node's) UTS namespace, its hostname."""
        return self.dir / "uts" / netns

    def pod_uts(self, pod: PodState) -> Path:
        """Where a pod's hostname lives: its own UTS namespace, or its node's (hostNetwork)."""
        return self.uts_path(self.state.node(pod.node).netns if pod.host_network else pod.netns)

    def in_pod(self, pod: PodState, argv: list[str]) -> list[str]:
        """argv run as one of the pod's containers: in its network namespace (with its
        /etc/netns files, through `ip netns exec`) and its UTS namespace (its hostname)."""
        return self.in_node_cgroup(pod.node, ["nsenter", f"--uts={self.pod_uts(pod)}", "ip", "netns", "exec", pod.netns, *argv])

    def in_node_cgroup(self, node: str, argv: list[str]) -> list[str]:
        """argv started in the node's cgroup under proxy ebpf (its sockets meet the node's socket
        LB from the first), unchanged under the other modes."""
        cgroup = self.node_cgroup(node)
        return placed(argv, cgroup) if cgroup else argv

    def node_cgroup(self, node: str) -> str:
        """proxy ebpf: the node's cgroup, where its pods' processes belong (socket LB); else ""."""
        return next((c for c in self.cgroups[1:] if c.endswith(f"/{node}")), "")

    def uts_paths(self) -> list[Path]:
        from lab import host
        return [Path(p) for p in host.list_dir(self.dir / "uts")]

    def subdir(self, *parts: str) -> Path:
        p = self.dir.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p


class NoSuchLab(LabError):
    """The lab has no record: it never existed, or `lab down` removed it."""


FORMAT = 2  # 1 (no "format"): the status fields beside the ledger's, not in "sections"

# Format 1's status fields: where each went (owner section, key).
FORMAT_1 = {"ready": ("kubelet", "ready"), "probe_detail": ("kubelet", "detail"),
            "probe_failing": ("kubelet", "failing"), "proxy": ("kube-proxy", "chains"),
            "full_resyncs": ("kube-proxy", "full_resyncs"), "netpol": ("policy", "chains"),
            "speakers": ("loadbalancer", "speakers"), "stopped": ("nodes", "stopped"),
            "faults": ("faults", "active"), "exercise_token": ("exercise", "token")}


def from_disk(data: dict) -> dict:
    """The record's fields from what record.json holds, in either format (a lab made by an older
    k8s-netlab still goes down and is cleaned up)."""
    data = dict(data)
    version = data.pop("format", 1)
    if version not in (1, FORMAT):
        raise KeyError(f"format {version}")
    if version == 1:
        sections: dict[str, dict] = {}
        for key, (owner, name) in FORMAT_1.items():
            if key in data:
                sections.setdefault(owner, {})[name] = data.pop(key)
        return {**data, "sections": sections}
    return data


def load(name: str) -> LabRecord:
    path = RUN_ROOT / name / "record.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise NoSuchLab(f"no lab named {name!r} is running; `lab list` shows the labs") from None
    except ValueError as e:
        raise LabError(f"the record of lab {name!r} ({path}) is damaged: {e}; `lab clean` removes the lab") from None
    try:
        data = from_disk(data)
        return LabRecord(state=ClusterState.from_dict(data.pop("state")), **data)
    except (TypeError, KeyError, AttributeError) as e:  # written by another version of k8s-netlab
        raise LabError(f"the record of lab {name!r} ({path}) is not one this version of k8s-netlab reads ({e}): "
                       "`lab down` or `lab clean` with the version that made it") from None


def ensure_free(name: str) -> None:
    """Refuse a name a lab on this machine already has, saying what to do about it."""
    if not (RUN_ROOT / name).exists():
        return
    try:
        other = load(name)
    except LabError:
        raise LabError(f"lab {name!r} was left behind by a crashed run; `lab clean` removes it") from None
    if other.status == "running" or other.owner_alive():
        raise LabError(f"a lab named {name!r} already exists (status {other.status}); "
                       f"`lab down {name}` first, or rename the lab in the topology file")
    raise LabError(f"lab {name!r} was left behind by a crashed run; `lab clean` removes it")


def names() -> list[str]:
    if not RUN_ROOT.is_dir():
        return []
    return sorted(p.name for p in RUN_ROOT.iterdir() if (p / "record.json").exists())


def find(name: Optional[str]) -> LabRecord:
    """The lab a command means: by name, or the only one running."""
    if name:
        return load(name)
    running = names()
    if len(running) == 1:
        return load(running[0])
    if not running:
        raise LabError("no lab is running; start one with `lab up FILE`")
    raise LabError(f"{len(running)} labs are running ({', '.join(running)}); say which one with --lab NAME")


@contextmanager
def locked(record: LabRecord) -> Iterator[None]:
    """The agent and `lab apply` both sync and write the record: one at a time."""
    with open(record.dir / "sync.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
