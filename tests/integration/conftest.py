"""Integration tests build real labs: they need root, and each must leave the machine as it was."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.controlplane.naming import public_switch_name, switch_name

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGIES = ROOT / "topologies"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces, links and processes")


def lab(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the `lab` CLI as a user would."""
    proc = subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"lab {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def _cmd(*argv: str) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, check=True).stdout


RUN = Path("/run/k8s-netlab")
LAB_LINK = re.compile(r"k[np][0-9a-f]{6}")  # a lab's switch (naming.switch_name) and its ports


def _labs_running() -> list[str]:
    return [d.name for d in RUN.iterdir() if d.is_dir()] if RUN.is_dir() else []


def settled_host_snapshot() -> dict:
    """host_snapshot once the kernel has freed the switch ports of labs taken down just before
    (they go with their node namespaces, asynchronously)."""
    def settled() -> bool:
        running = tuple(switch_name(n) for n in _labs_running()) + tuple(public_switch_name(n) for n in _labs_running())
        return not [l for l in os.listdir("/sys/class/net") if LAB_LINK.match(l) and not l.startswith(running)]
    wait_for(settled, timeout=5)
    return host_snapshot()


def host_snapshot() -> dict:
    """What a lab must not change in the root namespace: routes, links, rules, sysctls. Other labs on
    the machine (the suite runs two test files at a time) are not this one's doing: their switch
    links are left out, and so are the named namespaces, which other tests make and delete meanwhile:
    lab_leftovers() checks a lab's own, and scripts/leakcheck.py any the suite leaves unowned."""
    iptables = [l for l in _cmd("iptables-save").splitlines() if not l.startswith("#")]
    return {
        # (each switch port of a lab has its IPv6 link-local and multicast routes in the root namespace)
        "routes": [l for l in _cmd("ip", "route", "show", "table", "all").splitlines()
                   if not re.search(r"\bdev k[np][0-9a-f]{6}", l)],
        "links": sorted(l["ifname"] for l in json.loads(_cmd("ip", "-j", "link", "show")) if not LAB_LINK.match(l["ifname"])),
        "iptables": [re.sub(r"\[\d+:\d+\]", "", l) for l in iptables],
        "nft": _cmd("nft", "list", "ruleset"),
        "sysctl": {k: Path(f"/proc/sys/{k.replace('.', '/')}").read_text() for k in
                   ("net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter", "net.bridge.bridge-nf-call-iptables")
                   if Path(f"/proc/sys/{k.replace('.', '/')}").exists()},
    }


def host_changes(before: dict) -> list[str]:
    """What differs from a host snapshot now, for a failing assertion to say."""
    now, out = host_snapshot(), []
    for k, was in before.items():
        if isinstance(was, list) and now[k] != was:
            out.append(f"{k}: gone {[x for x in was if x not in now[k]]}, new {[x for x in now[k] if x not in was]}")
        elif now[k] != was:
            out.append(f"{k}: {was!r} -> {now[k]!r}"[:2000])
    return out


def wait_for(predicate, timeout: float = 3.0, step: float = 0.05):
    """Kernel clean-up of a deleted namespace is asynchronous: poll briefly instead of sleeping."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def lab_leftovers(name: str, switch: str) -> list[str]:
    """Everything of lab `name` still on the machine (empty when it is gone)."""
    left = []
    netns = [l.split()[0] for l in _cmd("ip", "netns", "list").splitlines() if l.startswith(f"{name}-")]
    left += [f"netns {n}" for n in netns]
    left += [f"link {l}" for l in os.listdir("/sys/class/net") if l.startswith(switch)]
    if Path(f"/run/k8s-netlab/{name}").exists():
        left.append(f"run dir /run/k8s-netlab/{name}")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.startswith(f"mininet:{name}-".encode()) for a in argv) or \
                any(a == f"/run/k8s-netlab/{name}".encode() for a in argv):
            left.append(f"process {pid} {argv[:4]}")
    return left


@pytest.fixture
def netns():
    """A scratch network namespace of the test's own (no lab's), to load rules into; deleted after."""
    name = f"scratch{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


@pytest.fixture
def clean_after():
    """Labs a test starts are taken down even when the test fails half-way."""
    names: list[str] = []
    yield names
    for n in names:
        lab("down", n, check=False)


def student_processes(user: str = "lab-student") -> list[int]:
    """Running processes of the user submissions run as (none may outlive a submission)."""
    import pwd

    from lab import host

    return host.live_processes(pwd.getpwnam(user).pw_uid)


@pytest.fixture(scope="session")
def student():
    """The user submissions run as: lab-student, or under pytest-xdist one per worker, made for the
    run and removed after it (a submission's user must be one nothing else uses, and two workers
    submit at once)."""
    import pwd

    worker = os.environ.get("PYTEST_XDIST_WORKER")
    name = f"lab-student-{worker}" if worker else "lab-student"
    try:
        pwd.getpwnam(name)
        made = False
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                       check=True, capture_output=True)
        made = True
    yield name
    if made and worker:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def reference_submission(folder: Path, into: Path) -> Path:
    """What CI submits: the exercise folder (its solution.sh and the files it reads), with the
    reference versions of the files a submission provides (.solution/PATH) in their place."""
    from lab.exercise import model

    out = into / folder.name
    shutil.copytree(folder, out)
    for rel in model.load(folder).submission:
        shutil.copy(folder / ".solution" / rel, out / rel)
    return out


# Test files whose labs share a name with another file's labs: they join that file's group.
LAB_GROUPS: dict[str, str] = {}
EXERCISES = {p.name for p in (ROOT / "exercises").iterdir() if p.is_dir()}


def lab_group(nodeid: str) -> str:
    """The tests that may never run at the same time as each other, by name: a test file (its
    module-scoped lab stays on one worker), or an exercise (the tests that build its lab)."""
    param = nodeid.rpartition("[")[2].rstrip("]") if nodeid.endswith("]") else ""
    if param in EXERCISES:
        return f"exercise-{param}"
    stem = Path(nodeid.split("::")[0]).stem
    return LAB_GROUPS.get(stem, stem)


def pytest_xdist_make_scheduler(config, log):
    """`make test` runs integration tests two groups at a time (pytest-xdist): labs have
    machine-wide names, so tests that build the same lab must never run at once."""
    from xdist.scheduler import LoadScopeScheduling

    class ByLab(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return lab_group(nodeid)

    return ByLab(config, log)


# The slowest groups start first, so that the last to finish on either worker is a short one.
SLOW_FIRST = ("test_netpol", "test_exercise", "test_scenario_corpus", "test_dns", "test_services",
              "test_workload_churn", "test_lab_lifecycle", "test_faults")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(lab_group(item.nodeid), len(rank)))  # stable: the file order stays within a group
