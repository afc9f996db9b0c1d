"""Run a command (the test suite) and fail if it leaves anything of a lab behind.

    scripts/leakcheck.py -- .venv/bin/pytest -ra

Before the command: what exists (named namespaces, root links, /etc/netns entries, lab run
directories, OVS bridges, processes, and proxy ebpf's BPF objects: programs and maps with the
lab's names, bpffs mounts, the labs' cgroups). After it: everything new is a leak, unless it belongs to a
lab that is not the suite's — one present before, or one whose `lab up` was seen running outside
the command's process tree (someone else's lab, built on the same machine meanwhile). Ownership is
recognised as tests/integration/conftest.py lab_leftovers() does: a lab's namespaces are named
<lab>-*, its root links start with its switch name, its processes carry mininet:<lab>-,
/run/k8s-netlab/<lab> or `lab.runtime.agent <lab>` in their command line, or live in one of its
namespaces, its bpffs is /run/k8s-netlab/<lab>/bpf (a BPF object pinned there is the lab's), its
cgroup is <cgroup2>/k8s-netlab-<lab>. New things nobody owns count as leaks (a test's own namespace, a pod process in a
namespace already deleted). Exit status: the command's if it failed, 1 if it passed but leaked.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lab.controlplane.naming import switch_name  # noqa: E402  (the lab's own definition)
from lab.kube_proxy import ebpf  # noqa: E402  (the names of the lab's BPF programs and maps)

RUN = Path(os.environ.get("K8S_NETLAB_RUN", "/run/k8s-netlab"))
SETTLE = 5.0  # seconds the kernel may take to free what a teardown released (links go asynchronously)


def _ls(path: str | Path) -> set[str]:
    try:
        return set(os.listdir(path))
    except OSError:
        return set()


def _netns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _processes() -> dict[str, tuple[list[str], int | None]]:
    """pid:starttime -> (argv, inode of its network namespace); zombies are dead, left out."""
    out = {}
    for pid in filter(str.isdigit, _ls("/proc")):
        stat = _stat(int(pid))
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if stat is not None and stat[0] != "Z" and pid != str(os.getpid()):
            out[f"{pid}:{stat[19]}"] = ([a for a in argv if a], _netns_inode(f"/proc/{pid}/ns/net"))
    return out


def _ovs_bridges() -> set[str]:
    if not Path("/var/run/openvswitch/db.sock").exists():
        return set()
    done = subprocess.run(["ovs-vsctl", "--timeout=5", "list-br"], capture_output=True, text=True)
    return set(done.stdout.split()) if done.returncode == 0 else set()


# the kernel keeps 15 characters of a BPF object's name
BPF_NAMES = {n[:15] for n in (*ebpf.PROGRAMS, ebpf.TC_PROGRAM, *ebpf.MAPS)}


def _bpf_objects() -> dict[str, tuple[str, tuple[str, ...]]]:
    """"prog 12" / "map 7" -> (name, pinned paths) of the BPF objects named as the lab names its own
    (bpftool -f finds the pins in every mounted bpffs); {} without bpftool."""
    out = {}
    for kind in ("prog", "map"):
        try:
            done = subprocess.run(["bpftool", "-j", "-f", kind, "show"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return {}
        for o in json.loads(done.stdout or "[]") if done.returncode == 0 else ():
            if o.get("name") in BPF_NAMES:
                out[f"{kind} {o['id']}"] = (o["name"], tuple(o.get("pinned", ())))
    return out


def _bpf_mounts() -> set[str]:
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return set()
    return {f[1] for f in (l.split() for l in lines) if len(f) > 2 and f[2] == "bpf" and f[1].startswith(f"{RUN}/")}


def _cgroups() -> set[str]:
    """The labs' cgroups (proxy ebpf): <cgroup2 mount>/k8s-netlab-<lab>."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return set()
    roots = [f[1] for f in (l.split() for l in lines) if len(f) > 2 and f[2] == "cgroup2"]
    return {f"{r}/{d}" for r in roots for d in _ls(r) if d.startswith(ebpf.CGROUP_PREFIX)}


def snapshot() -> dict:
    netns = _ls("/run/netns")
    return {"netns": netns, "inodes": {_netns_inode(f"/run/netns/{n}"): n for n in netns},
            "links": _ls("/sys/class/net"), "etc_netns": _ls("/etc/netns"), "ovs": _ovs_bridges(),
            "labs": {d for d in _ls(RUN) if (RUN / d).is_dir()}, "procs": _processes(),
            "bpf": _bpf_objects(), "bpffs": _bpf_mounts(), "cgroups": _cgroups()}


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _in_tree(pid: int, root: int) -> bool:
    while pid > 1:
        if pid == root:
            return True
        stat = _stat(pid)
        if stat is None:
            return False
        pid = int(stat[1])
    return False


def watch(root: int, foreign: set[str], stop: threading.Event) -> None:
    """Labs whose `lab up` is alive outside the command's process tree are someone else's (a lab
    whose builder is dead, or not seen building, stays the suite's: better a false leak than a
    missed one)."""
    ours: set[str] = set()
    while not stop.wait(0.2):
        for name in _ls(RUN) - foreign - ours:
            try:
                rec = json.loads((RUN / name / "record.json").read_text())
            except (OSError, ValueError):
                continue
            owner, stat = rec.get("owner_pid"), _stat(rec.get("owner_pid") or 0)
            if rec.get("status") != "creating" or not owner or stat is None or stat[19] != rec.get("owner_start"):
                continue
            (ours if _in_tree(owner, root) else foreign).add(name)


def leaks(before: dict, after: dict, foreign: set[str]) -> list[str]:
    labs = sorted(foreign | before["labs"], key=len, reverse=True)

    def owner(netns: str) -> str | None:
        return next((lab for lab in labs if netns.startswith(f"{lab}-")), None)

    switches = tuple(switch_name(lab) for lab in labs)
    inodes = {**before["inodes"], **after["inodes"]}
    left = [f"namespace {n}" for n in sorted(after["netns"] - before["netns"]) if not owner(n)]
    left += [f"/etc/netns/{n}" for n in sorted(after["etc_netns"] - before["etc_netns"]) if not owner(n)]
    left += [f"root link {l}" for l in sorted(after["links"] - before["links"]) if not l.startswith(switches)]
    left += [f"OVS bridge {b}" for b in sorted(after["ovs"] - before["ovs"]) if not b.startswith(switches)]
    left += [f"run directory {RUN / d}" for d in sorted(after["labs"] - before["labs"] - foreign)]
    left += _bpf_leaks(before, after, labs)
    root_ns = _netns_inode("/proc/self/ns/net")  # the suite runs in the root namespace, as this does
    for key, (argv, ns) in sorted(after["procs"].items()):
        if key in before["procs"]:
            continue
        line = " ".join(argv)
        ours = [lab for lab in labs if f"mininet:{lab}-" in line or f"{RUN}/{lab}" in line
                or f"lab.runtime.agent {lab}" in line]
        if ns != root_ns and ns is not None and not ours:
            named = inodes.get(ns)
            if named is None or not owner(named):  # in a namespace of the suite's, or in one nobody names
                left.append(f"process {key.split(':')[0]} in {named or 'an unnamed namespace'}: {line[:100]}")
        elif not ours and any(f"{RUN}/" in a or a.startswith("mininet:") or a == "lab.runtime.agent" for a in argv):
            left.append(f"process {key.split(':')[0]}: {line[:100]}")
    return left


def _bpf_leaks(before: dict, after: dict, labs: list[str]) -> list[str]:
    """proxy ebpf's objects: a program or map with the lab's names that is new and not pinned in a
    foreign lab's bpffs, a bpffs mount or a cgroup of a lab that is not foreign."""
    def foreign(path: str) -> bool:
        return any(path.startswith(f"{RUN}/{lab}/") or path.endswith(f"/{ebpf.CGROUP_PREFIX}{lab}") for lab in labs)

    left = [f"BPF {key} {name}" + (f" pinned at {pins[0]}" if pins else " (no pin: held by an attachment or a process)")
            for key, (name, pins) in sorted(after.get("bpf", {}).items())
            if key not in before.get("bpf", {}) and not any(foreign(p) for p in pins)]
    left += [f"bpffs mount {m}" for m in sorted(after.get("bpffs", set()) - before.get("bpffs", set())) if not foreign(m + "/")]
    left += [f"cgroup {c}" for c in sorted(after.get("cgroups", set()) - before.get("cgroups", set())) if not foreign(c)]
    return left


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    before, foreign, stop = snapshot(), set(), threading.Event()
    proc = subprocess.Popen(argv)
    watcher = threading.Thread(target=watch, args=(proc.pid, foreign, stop), daemon=True)
    watcher.start()
    try:
        code = proc.wait()
    except KeyboardInterrupt:  # pytest got it too: let it tear its labs down, then look
        code = proc.wait()
    stop.set()
    watcher.join()
    deadline = time.monotonic() + SETTLE
    while (left := leaks(before, snapshot(), foreign)) and time.monotonic() < deadline:
        time.sleep(0.2)
    if foreign:
        print(f"leak check: not the suite's, left alone: {', '.join(sorted(foreign))}")
    if left:
        print(f"leak check: the run left {len(left)} thing(s) behind:\n  " + "\n  ".join(left), file=sys.stderr)
        return code or 1
    print("leak check: nothing left behind")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
