"""netexec's fork server: one interpreter, a child per container, each in its pod's namespace."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from lab.node.containers import NETEXEC
from lab.node.processes import alive
from lab.host import ip_batch
from tests.integration.conftest import needs_root, wait_for

pytestmark = [needs_root, pytest.mark.root]


@pytest.fixture
def namespaces():
    names = [f"fsv{os.getpid()}-{i}" for i in range(2)]
    ip_batch([f"netns add {n}" for n in names])
    for n in names:
        ip_batch(["link set lo up"], netns=n)
    try:
        yield names
    finally:
        ip_batch([f"netns delete {n}" for n in names], force=True)


def serve(requests: list[str]) -> list[list[str]]:
    proc = subprocess.Popen([sys.executable, "-I", "-S", str(NETEXEC), "--forkserver"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate("".join(r + "\n" for r in requests), timeout=10)
    assert proc.returncode == 0
    return [line.split() for line in out.splitlines()]


def test_children_serve_in_their_namespaces_and_outlive_the_server(namespaces, tmp_path):
    a, b = namespaces
    lines = serve([f"k-a\t/run/netns/{a}\t-\t{tmp_path}/a.log\t-\t--hostname\tpod-a\t--tcp\t8080",
                   f"k-b\t/run/netns/{b}\t-\t{tmp_path}/b.log\t-\t--hostname\tpod-b\t--tcp\t8080\t--udp\t8081"])
    pids = {l[1]: int(l[2]) for l in lines if l[0] == "pid"}
    assert sorted(l[1] for l in lines if l[0] == "ready") == ["k-a", "k-b"]
    try:
        for ns, key, name in ((a, "k-a", "pod-a"), (b, "k-b", "pod-b")):
            assert os.stat(f"/proc/{pids[key]}/ns/net").st_ino == os.stat(f"/run/netns/{ns}").st_ino
            assert open(f"/proc/{pids[key]}/comm").read().strip() == "netexec"
            got = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "-m", "2", "127.0.0.1:8080/hostname"],
                                 capture_output=True, text=True).stdout
            assert got == name
    finally:
        for pid in pids.values():
            os.kill(pid, signal.SIGTERM)
    assert wait_for(lambda: not any(alive(p) for p in pids.values())), "SIGTERM did not end the children"


def test_a_child_that_cannot_bind_reports_failure(namespaces, tmp_path):
    a, _ = namespaces
    lines = serve([f"k1\t/run/netns/{a}\t-\t{tmp_path}/1.log\t-\t--hostname\tx\t--tcp\t9000",
                   f"k2\t/run/netns/{a}\t-\t{tmp_path}/2.log\t-\t--hostname\ty\t--tcp\t9000"])
    pids = [int(l[2]) for l in lines if l[0] == "pid"]
    try:  # the two children race for the port: one wins, the other says why it lost
        outcomes = sorted(tuple(l) for l in lines if l[0] != "pid")
        assert outcomes in ([("failed", "k1", "1"), ("ready", "k2")], [("failed", "k2", "1"), ("ready", "k1")])
        loser = outcomes[0][1][1]
        assert "cannot bind tcp 0.0.0.0:9000" in (tmp_path / f"{loser}.log").read_text()
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def test_a_missing_namespace_fails_that_child_only(namespaces, tmp_path):
    a, _ = namespaces
    lines = serve([f"bad\t/run/netns/does-not-exist-{os.getpid()}\t-\t{tmp_path}/bad.log\t-\t--hostname\tx\t--tcp\t80",
                   f"good\t/run/netns/{a}\t-\t{tmp_path}/good.log\t-\t--hostname\ty\t--tcp\t80"])
    assert ["failed", "bad", "1"] in lines and ["ready", "good"] in lines
    for l in lines:
        if l[0] == "pid" and l[1] == "good":
            os.kill(int(l[2]), signal.SIGTERM)
