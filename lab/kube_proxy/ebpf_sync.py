"""`cluster.proxy: ebpf`, applied: compile bpf/sock_lb.c (cached by the hash of its source), make
a cgroup per node, load one copy of the programs and maps per node into the lab's own bpffs,
attach them to the node's cgroup, put the node's processes in it, write the maps from the model
(`bpftool batch`: one process per node and sync, only the entries that changed), and remove all
of it at `lab down`. Every step is through lab.host, its exit status checked; where BPF cannot
load, `check` says so before anything is built. The plan is lab.kube_proxy.ebpf."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Optional

from lab import host, routing
from lab.cni import kinds as cni_kinds
from lab.controlplane.state import ClusterState, EndpointSliceState, NodeState
from lab.errors import LabError
from lab.host import cgroup
from lab.host import netns_path
from lab.host.record import LabRecord
from lab.kube_proxy import ebpf, model
from lab.kube_proxy.proxier import Runtime

CACHE = Path(os.environ.get("K8S_NETLAB_BPF_CACHE", "/var/cache/k8s-netlab/bpf"))
INSTALL = "scripts/install.sh installs it (apt-get install clang bpftool libbpf-dev)"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise LabError(f"cluster.proxy ebpf needs {name}, which is not installed: {INSTALL}")
    return found


def build() -> Path:
    """The compiled object, from the cache when its source, flags and compiler are unchanged."""
    clang = _tool("clang")
    if not Path("/usr/include/bpf/bpf_helpers.h").exists():
        raise LabError(f"cluster.proxy ebpf needs libbpf's headers (/usr/include/bpf): {INSTALL}")
    key = ebpf.source_key(ebpf.SOURCE.read_text(), host.output([clang, "--version"]))
    out = CACHE / key / "sock_lb.o"
    if out.exists():
        return out
    host.make_dir(out.parent)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    done = host.run(ebpf.compile_argv(clang, ebpf.SOURCE, tmp), check=False)
    if not done.ok:
        host.remove(tmp)
        raise LabError(f"clang could not compile {ebpf.SOURCE}: {done.stderr.strip()[-800:]}")
    host.current().rename(str(tmp), str(out))
    return out


def _root() -> str:
    root = cgroup.mount_point()
    if not root:
        raise LabError("cluster.proxy ebpf attaches its programs to cgroups, and cgroup v2 is not mounted here "
                       "(mount -t cgroup2 none /sys/fs/cgroup/unified), or use proxy iptables or nftables")
    return root


def _mount_bpffs(path: str) -> None:
    host.run(["mount", "-t", "bpf", "bpf", path])


def _load(obj: Path, pins: str) -> None:
    done = host.run([_tool("bpftool"), "prog", "loadall", str(obj), f"{pins}/progs", "pinmaps", f"{pins}/maps"],
                    check=False)
    if not done.ok:
        raise LabError(f"the kernel refused the socket-LB programs ({obj}): {(done.stderr or done.stdout).strip()[-800:]}")


def needs() -> str:
    """What `lab validate` can say without running anything: clang, bpftool and libbpf's headers
    installed, cgroup v2 mounted (LabError if not). Whether this kernel loads the programs, `lab up`
    finds out (check)."""
    _tool("clang")
    _tool("bpftool")
    if not Path("/usr/include/bpf/bpf_helpers.h").exists():
        raise LabError(f"cluster.proxy ebpf needs libbpf's headers (/usr/include/bpf): {INSTALL}")
    return f"clang, bpftool and libbpf's headers installed, cgroup v2 at {_root()}; `lab up` compiles and loads the programs"


def check() -> str:
    """Fail at once where socket LB cannot work here: no clang or bpftool, no cgroup v2, a kernel
    that refuses the programs (loaded into a scratch bpffs and removed again: needs root).
    Returns what was checked."""
    obj = build()
    _tool("bpftool")
    root = _root()
    if os.geteuid() != 0:
        return f"BPF object compiled ({obj}), cgroup v2 at {root}; loading not tried (needs root)"
    with tempfile.TemporaryDirectory(prefix="k8s-netlab-bpf-") as scratch:
        _mount_bpffs(scratch)
        try:
            _load(obj, scratch)
        finally:
            host.run(["umount", scratch])
    return f"BPF programs compiled ({obj}) and loaded by this kernel; cgroup v2 at {root}"


def setup(state: ClusterState, rec: LabRecord) -> None:
    """Before the pods start: the cgroups (the lab's, one per node), the lab's bpffs, each node's
    programs and maps loaded and attached. Ownership is recorded before each thing is made."""
    root = _root()
    obj = build()
    cgroups = ebpf.node_cgroups(state, root)
    planned = [ebpf.lab_cgroup(root, state.lab), *cgroups.values()]
    taken = [c for c in planned if os.path.exists(c)]
    if taken:
        raise LabError(f"cgroup {taken[0]} already exists and is not this lab's: `lab clean`, or rmdir it")
    rec.cgroups, rec.bpffs = planned, str(rec.dir / "bpf")
    rec.save()
    for c in planned:
        cgroup.make(c)
    host.make_dir(rec.bpffs)
    _mount_bpffs(rec.bpffs)
    bpftool = _tool("bpftool")

    def one(node: NodeState) -> None:
        pins = f"{rec.bpffs}/{node.name}"
        host.make_dir(pins)
        _load(obj, pins)
        for prog, path in ebpf.prog_paths(pins).items():
            host.run([bpftool, "cgroup", "attach", cgroups[node.name], ebpf.PROGRAMS[prog], "pinned", path])
        config = " ".join(f"{b:02x}" for b in ebpf.config(state, node))
        host.run([bpftool, "map", "update", "pinned", ebpf.map_paths(pins)["lb_config"],
                  "key", "hex", "00", "00", "00", "00", "value", "hex", *config.split()])
        # the tc program hands the stack packets whose source is the node's own address (a reply
        # translated back, a request SNATed towards a backend): without accept_local the kernel
        # drops them as martians
        host.sysctl(node.netns, {"net.ipv4.conf.all.accept_local": "1"})

    _, error = host.on_each(state.nodes, one)
    if error:
        raise error


def _netns_inode(name: str) -> Optional[int]:
    try:
        return host.inode(netns_path(name))
    except OSError:
        return None


def place_all(state: ClusterState) -> int:
    """Move every process living in a node's namespace or its pods' into the node's cgroup (the
    node's shell, its daemons, hostNetwork pods; processes started later place themselves:
    containers.Starter, record.in_pod). Returns how many were moved."""
    by_inode = {i: c for ns, c in ebpf.netns_cgroups(state, _root()).items() if (i := _netns_inode(ns))}
    moves: dict[str, list[int]] = {}
    for pid in host.pids():
        try:
            inode = host.inode(f"/proc/{pid}/ns/net")
        except OSError:
            continue
        if inode in by_inode:
            moves.setdefault(by_inode[inode], []).append(pid)
    for path, pids in moves.items():
        cgroup.place(path, pids)
    return sum(map(len, moves.values()))


def tc_devices(state: ClusterState) -> tuple[str, ...]:
    """The node's devices the tc program sits on (ingress): the uplink, where outside traffic comes
    in and replies to the node's address come back; the bridge its pods' replies come up from; the
    tunnel that brings another node's pods' replies (to the tunnel's address). A CNI without a
    bridge (ptp) has a veth per pod instead: pod_veths finds those."""
    cni = cni_kinds.of(state)
    return ("eth0", *((cni.device,) if cni.bridged else ()), *(("flannel.1",) if routing.backend(state).tunnel else ()))


def pod_veths(node: NodeState) -> set[str]:
    """The host sides of the node's pod veths (cni ptp: a local backend's replies come up there)."""
    links = json.loads(host.output(["ip", "-n", node.netns, "-j", "link", "show", "type", "veth"]) or "[]")
    return {link["ifname"] for link in links}


def attach_tc(node: NodeState, device: str, pins: str) -> None:
    """The tc program on the device's ingress (a clsact qdisc, direct action)."""
    host.run(["tc", "-n", node.netns, "qdisc", "replace", "dev", device, "clsact"])
    host.run(["tc", "-n", node.netns, "filter", "replace", "dev", device, "ingress", "prio", "1", "handle", "1",
              "bpf", "direct-action", "object-pinned", ebpf.tc_path(pins)])


def _attach_new_devices(rec: LabRecord, state: ClusterState, node: NodeState) -> None:
    """Attach the tc program to the node's devices that exist now and do not have it yet (cni0
    appears with the node's first pod; under cni ptp each pod brings a veth): recorded per node,
    so a device is looked at until found, and a pod's veth once."""
    tc = rec.section("ebpf").setdefault("tc", {})
    done = set(tc.get(node.name, ()))
    wanted = [d for d in tc_devices(state) if d not in done]
    present = {d for d in wanted if host.run(["ip", "-n", node.netns, "link", "show", d], check=False).ok}
    if not cni_kinds.of(state).bridged:
        veths = pod_veths(node)
        done &= veths | set(tc_devices(state))   # a deleted pod's veth is gone
        present |= veths - done
    for device in sorted(present):
        attach_tc(node, device, f"{rec.bpffs}/{node.name}")
    tc[node.name] = sorted(done | present)


def update(rec: LabRecord, node: NodeState, old: ClusterState, new: ClusterState,
           old_slices: Iterable[EndpointSliceState], new_slices: Iterable[EndpointSliceState],
           only: Optional[set[str]], first: bool) -> int:
    """Write the node's maps from the model: the entries of the Services in `only` that differ
    between the old and the new state, in one `bpftool batch`. Returns the lines written."""
    _attach_new_devices(rec, new, node)
    before = {} if first else ebpf.entries(model.service_ports(old, node.name, old_slices, only), node.ip)
    after = ebpf.entries(model.service_ports(new, node.name, new_slices, only), node.ip)
    lines = ebpf.batch(before, after, ebpf.map_paths(f"{rec.bpffs}/{node.name}"))
    if lines:
        done = host.run([_tool("bpftool"), "batch", "file", "-"], input="\n".join(lines) + "\n", check=False)
        if not done.ok:
            raise LabError(f"socket-LB maps of node {node.name} were not updated: {(done.stderr or done.stdout).strip()[-800:]}")
    return len(lines)


def read_maps(rec: LabRecord, node: str, maps: Iterable[str] = ("lb_services", "lb_external", "lb_backends")) -> ebpf.Entries:
    """What a node's maps hold now (`bpftool -j map dump`), as the entries ebpf.entries plans:
    (map, key bytes) -> value bytes. What `lab describe svc` sets beside the model."""
    out: ebpf.Entries = {}
    paths = ebpf.map_paths(f"{rec.bpffs}/{node}")
    for m in maps:
        done = host.run([_tool("bpftool"), "-j", "map", "dump", "pinned", paths[m]], check=False)
        if not done.ok:
            raise LabError(f"cannot read map {m} of node {node}: {(done.stderr or done.stdout).strip()[-300:]}")
        for e in json.loads(done.stdout or "[]"):
            out[(m, bytes(int(x, 16) for x in e["key"]))] = bytes(int(x, 16) for x in e["value"])
    return out


def teardown(rec: LabRecord) -> list[str]:
    """Remove each node's tc filters, detach its cgroup programs, remove the cgroups (their
    processes are gone by now) and unmount the lab's bpffs, which drops every pin, program and map.
    Keeps going past errors."""
    errors: list[str] = []
    bpftool = shutil.which("bpftool")
    attached = rec.section("ebpf").get("tc", {})
    for node in rec.state.nodes:
        # the tc filters hold the program until their device goes: remove them now, not whenever
        # the kernel gets round to freeing the node's namespace (a pod's veth may be gone already)
        if attached.get(node.name) and host.exists(node.netns):
            host.run(["tc", "-n", node.netns, "-force", "-batch", "-"], check=False,
                     input="".join(f"qdisc del dev {d} clsact\n" for d in attached[node.name]))
        pins = f"{rec.bpffs}/{node.name}"
        where = next((c for c in rec.cgroups if c.endswith(f"/{node.name}")), None)
        for prog, path in ebpf.prog_paths(pins).items():
            if bpftool and where and os.path.exists(path) and os.path.isdir(where):
                done = host.run([bpftool, "cgroup", "detach", where, ebpf.PROGRAMS[prog], "pinned", path], check=False)
                if not done.ok:
                    errors.append(f"bpftool cgroup detach {where} {prog}: {done.stderr.strip()}")
    for c in reversed(rec.cgroups):
        why = cgroup.remove(c)
        if why:
            errors.append(why)
    if rec.bpffs and os.path.ismount(rec.bpffs):
        done = host.run(["umount", rec.bpffs], check=False)
        if not done.ok:
            errors.append(f"umount {rec.bpffs}: {done.stderr.strip()}")
    if rec.bpffs and os.path.isdir(rec.bpffs) and not os.path.ismount(rec.bpffs):
        if not host.remove_empty(rec.bpffs):  # the empty mount point: never a recursive delete near a bpffs
            errors.append(f"rmdir {rec.bpffs}: it is not empty")
    return errors


def _start(state: ClusterState, rec: LabRecord) -> None:
    setup(state, rec)
    place_all(state)  # the nodes' shells


RUNTIME = Runtime(
    preflight=lambda state, deep: f"proxy ebpf: {check() if deep else needs()}",
    start=_start,
    update=update,
    socket_cgroups=lambda state: ebpf.netns_cgroups(state, _root()),
    read_maps=lambda rec, node: read_maps(rec, node) if rec.bpffs else {},
    nat_flows=lambda rec, node: ebpf.nat_lines(read_maps(rec, node, ("lb_nat",))) if rec.bpffs else [],
    teardown=lambda rec: teardown(rec) if rec.cgroups or rec.bpffs else [],  # only what the ledger holds
)
