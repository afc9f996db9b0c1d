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


def settled_host_snapshot() -> dict:
    """host_snapshot once the kernel has freed the switch ports of labs taken down just before
    (they go with their node namespaces, asynchronously)."""
    wait_for(lambda: not [l for l in os.listdir("/sys/class/net") if re.match(r"kn[0-9a-f]{6}", l)], timeout=5)
    return host_snapshot()


def host_snapshot() -> dict:
    """What a lab must not change in the root namespace: routes, links, rules, sysctls, namespaces."""
    iptables = [l for l in _cmd("iptables-save").splitlines() if not l.startswith("#")]
    return {
        "routes": _cmd("ip", "route", "show", "table", "all"),
        "links": sorted(l["ifname"] for l in json.loads(_cmd("ip", "-j", "link", "show"))),
        "iptables": [re.sub(r"\[\d+:\d+\]", "", l) for l in iptables],
        "nft": _cmd("nft", "list", "ruleset"),
        "netns": _cmd("ip", "netns", "list"),
        "sysctl": {k: Path(f"/proc/sys/{k.replace('.', '/')}").read_text() for k in
                   ("net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter", "net.bridge.bridge-nf-call-iptables")
                   if Path(f"/proc/sys/{k.replace('.', '/')}").exists()},
    }


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
def clean_after():
    """Labs a test starts are taken down even when the test fails half-way."""
    names: list[str] = []
    yield names
    for n in names:
        lab("down", n, check=False)


def student_processes() -> list[int]:
    """Running processes of the user submissions run as (none may outlive a submission)."""
    import pwd

    from lab import host

    return host.live_processes(pwd.getpwnam("lab-student").pw_uid)


def reference_submission(folder: Path, into: Path) -> Path:
    """What CI submits: the exercise folder (its solution.sh and the files it reads), with the
    reference versions of the files a submission provides (.solution/PATH) in their place."""
    from lab.exercise import model

    out = into / folder.name
    shutil.copytree(folder, out)
    for rel in model.load(folder).submission:
        shutil.copy(folder / ".solution" / rel, out / rel)
    return out
