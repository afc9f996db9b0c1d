"""The probe engine against a real little world: three pod namespaces on a bridge, netexec in each.

Everything lives in namespaces named pt<pid>-*, created here and deleted here, pass or fail.
"""
from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.probe.ping import Echoes
from lab.probe.engine import (
    ERROR, REFUSED, REPLY, SILENCE, Probe, interface_addresses, interface_addresses_many, run_probes,
)
from lab.host.netns import NetnsError

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates network namespaces, veths and a bridge"),
]

NETEXEC = Path(__file__).resolve().parents[2] / "lab" / "images" / "netexec.py"
PREFIX = f"pt{os.getpid()}"
PODS = {"a": "10.123.0.1", "b": "10.123.0.2", "c": "10.123.0.3"}
NOBODY = "10.123.0.99"  # on the bridge subnet, owned by no one: ARP goes unanswered
UNROUTED = "10.124.0.1"  # the pods have no route there at all
TCP, UDP, CLOSED = 8080, 8081, 9


def ip_batch(commands: list[str], netns: str | None = None) -> None:
    """Many `ip` commands, one process; raises with ip's own message on failure."""
    argv = ["ip", *(["-n", netns] if netns else []), "-batch", "-"]
    done = subprocess.run(argv, input="\n".join(commands) + "\n", capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")


def ns(pod: str) -> str:
    return f"{PREFIX}-{pod}"


def start_netexec(pod: str, log: Path) -> subprocess.Popen:
    """netexec inside the pod's namespace; returns once it wrote its ready line."""
    rfd, wfd = os.pipe()
    try:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns(pod), sys.executable, "-I", "-S", str(NETEXEC), "--hostname", pod,
                 "--tcp", str(TCP), "--udp", str(UDP), "--ready-fd", str(wfd)],
                pass_fds=(wfd,), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        os.close(wfd)
        wfd = -1
        readable, _, _ = select.select([rfd], [], [], 10)
        if not readable or os.read(rfd, 64) != b"ready\n":
            proc.kill()
            proc.wait(timeout=5)
            raise RuntimeError(f"netexec in {ns(pod)} did not become ready: {log.read_text()}")
        return proc
    finally:
        os.close(rfd)
        if wfd >= 0:
            os.close(wfd)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    logs = tmp_path_factory.mktemp("netexec")
    names = [ns("br"), *(ns(p) for p in PODS)]
    procs: list[subprocess.Popen] = []
    try:
        ip_batch([f"netns add {n}" for n in names]
                 + [f"link add v{p} netns {ns('br')} type veth peer name eth0 netns {ns(p)}" for p in PODS])
        ip_batch(["link add br0 type bridge", "link set br0 up", "link set lo up"]
                 + [cmd for p in PODS for cmd in (f"link set v{p} master br0", f"link set v{p} up")], ns("br"))
        for pod, addr in PODS.items():
            ip_batch([f"addr add {addr}/24 dev eth0", "link set eth0 up", "link set lo up"], ns(pod))
        for pod in PODS:
            procs.append(start_netexec(pod, logs / f"{pod}.log"))
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=5)
        mine = [n for n in names if os.path.exists(f"/run/netns/{n}")]
        if mine:
            ip_batch([f"netns delete {n}" for n in mine])


def thread_netns() -> str:
    return os.readlink("/proc/thread-self/ns/net")


def test_all_pairs_reach_and_see_the_client_address(world):
    probes = [Probe(ns(src), dst, port, proto)
              for src in PODS for dst in PODS.values() for port, proto in ((TCP, "TCP"), (UDP, "UDP"))]
    before = thread_netns()
    results = run_probes(probes, timeout=2.0)
    assert thread_netns() == before  # the caller's thread never left its namespace
    assert [r.probe for r in results] == probes
    for r in results:
        assert r.ok, r
        assert r.error is None
        assert r.seen_source == PODS[r.probe.src_netns.rsplit("-", 1)[1]]
        assert PODS[r.server] == r.probe.dst_ip  # and names the pod that answered


@pytest.mark.parametrize("proto", ["TCP", "UDP"])
def test_closed_port_is_refused_fast(world, proto):
    [r] = run_probes([Probe(ns("a"), PODS["b"], CLOSED, proto)], timeout=2.0)
    assert not r.ok and r.seen_source is None
    assert "refused" in r.error and r.seen == REFUSED and r.hint == "nothing listens on that port there"
    assert r.elapsed < 0.5


def test_unrouted_address_says_why(world):
    [r] = run_probes([Probe(ns("a"), UNROUTED, TCP)], timeout=2.0)
    assert (r.ok, r.error, r.seen) == (False, "network is unreachable", REFUSED)


@pytest.mark.parametrize("proto", ["TCP", "UDP"])
def test_silent_address_expected_silent_fails_within_timeout(world, proto):
    t0 = time.monotonic()
    [r] = run_probes([Probe(ns("a"), NOBODY, TCP, proto)], timeout=0.5, expect=[SILENCE])
    assert not r.ok and r.seen_source is None and r.attempts == 1
    assert "timeout" in r.error or "no route" in r.error
    assert time.monotonic() - t0 < 1.0


@pytest.mark.parametrize("proto", ["TCP", "UDP"])
def test_an_unanswered_probe_is_tried_again_before_the_verdict(world, proto):
    [r] = run_probes([Probe(ns("a"), NOBODY, TCP, proto)], timeout=0.2, expect=[REPLY])
    assert not r.ok and r.attempts == 3 and len(r.earlier) == 2


def test_a_drop_is_silence_at_every_try(world):
    """A DROP rule (what a NetworkPolicy does): every try unanswered, and that is what silence is."""
    rule = ["INPUT", "-p", "tcp", "--dport", str(TCP), "-j", "DROP"]
    subprocess.run(["ip", "netns", "exec", ns("c"), "iptables", "-I", *rule], check=True)
    try:
        [r] = run_probes([Probe(ns("a"), PODS["c"], TCP)], timeout=0.2, expect=[REPLY])
    finally:
        subprocess.run(["ip", "netns", "exec", ns("c"), "iptables", "-D", *rule], check=True)
    assert (r.seen, r.attempts, r.earlier) == (SILENCE, 3, (SILENCE, SILENCE))



def test_a_reply_after_retries_is_confirmed(world):
    """Every other new connection from a to c is sent to a closed port (a stale rule's share): the
    reply that came at the second try stays a reply, but a confirmation is refused: unsettled."""
    rule = ["OUTPUT", "-t", "nat", "-p", "tcp", "-d", PODS["c"], "--dport", str(TCP), "-m", "statistic",
            "--mode", "nth", "--every", "2", "--packet", "0", "-j", "DNAT", "--to-destination", f"{PODS['c']}:{CLOSED}"]
    subprocess.run(["ip", "netns", "exec", ns("a"), "iptables", "-I", *rule], check=True)
    try:
        [r] = run_probes([Probe(ns("a"), PODS["c"], TCP)], timeout=1.0, expect=[REPLY])
    finally:
        subprocess.run(["ip", "netns", "exec", ns("a"), "iptables", "-D", *rule], check=True)
    assert (r.seen, r.attempts, r.earlier, r.settled) == (REPLY, 2, (REFUSED,), False)
    [steady] = run_probes([Probe(ns("a"), PODS["c"], TCP)], timeout=1.0, expect=[REPLY])
    assert (steady.attempts, steady.settled) == (1, True)


def test_mixed_outcomes_keep_input_order(world):
    probes = [Probe(ns("a"), NOBODY, TCP), Probe(ns("b"), PODS["c"], TCP), Probe(ns("c"), PODS["a"], CLOSED),
              Probe(ns("c"), PODS["b"], UDP, "UDP")]
    results = run_probes(probes, timeout=0.5, concurrency=2)
    assert [r.probe for r in results] == probes
    assert [r.ok for r in results] == [False, True, False, True]


def test_many_probes(world):
    """Not a benchmark: the number is printed, a sanity check that nothing serialises."""
    probes = [Probe(ns(src), dst, port, proto)
              for src in PODS for dst in PODS.values() for port, proto in ((TCP, "TCP"), (UDP, "UDP"))] * 17
    t0 = time.monotonic()
    results = run_probes(probes, timeout=2.0)
    print(f"{len(probes)} probes in {time.monotonic() - t0:.3f}s")
    assert all(r.ok for r in results), [r for r in results if not r.ok][:5]


def test_interface_addresses(world):
    assert interface_addresses(ns("a"), "eth0") == [PODS["a"]]
    assert interface_addresses(ns("a"), "lo") == ["127.0.0.1"]
    assert interface_addresses_many([(ns(p), "eth0") for p in PODS]) == {(ns(p), "eth0"): [a] for p, a in PODS.items()}


def test_missing_interface_has_no_addresses(world):
    assert interface_addresses(ns("a"), "eth9") == []


def test_missing_namespace_is_named(world):
    with pytest.raises(NetnsError, match=f"{PREFIX}-nope"):
        interface_addresses(f"{PREFIX}-nope", "eth0")
    [r] = run_probes([Probe(f"{PREFIX}-nope", PODS["a"], TCP)])  # a verdict with the reason, not a crash
    assert not r.ok and f"{PREFIX}-nope" in r.error
    assert r.seen == ERROR  # an error of the probe: no expectation accepts it, a deny least of all


def test_echoes_sent_early_are_heard_from_who_answers_and_not_from_who_does_not(world):
    """lab.probe.ping: an echo reply within the wait is heard (a pod's address), silence is not
    (nobody there), and a reply that came during a batch of probes still counts when judged after."""
    echoes = Echoes(ns("a"), [PODS["b"], NOBODY])
    run_probes([Probe(ns("a"), PODS["b"], TCP)], timeout=2.0)
    assert echoes.answered(0.5) == {PODS["b"]}
    assert Echoes(ns("a"), [NOBODY]).answered(0.3) == set()
    missing = Echoes("pe-no-such-netns", [PODS["b"]])
    assert "does not exist" in missing.error and missing.answered(0.1) == set()
