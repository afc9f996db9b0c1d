"""`lab down` (lifecycle.teardown) against the fake Host (no root).

What the kernel would hold is the fake Host's files: a named namespace is /run/netns/NAME, a link
/sys/class/net/LINK, a process /proc/PID/cmdline and stat (and its namespace, /proc/PID/ns/net's
inode); the fake removes a namespace's file when an `ip -batch` line deletes it (unless the test
makes it stick, as a busy one would); the root-side switch port of a node or host goes 50 ms after
its namespace, as the kernel frees veth peers asynchronously. Signals are logged with the record's
status at the moment they are sent.
"""
from __future__ import annotations

import dataclasses
import functools
import signal
import threading

import pytest

from lab import host
from lab.controlplane.state import container_key
from lab.errors import LabError
from lab.host import record as records
from lab.host.fake import FakeHost
from lab.host.record import LabRecord
from lab.node import pods, underlay
from lab.routing import runtimes
from lab.runtime import lifecycle
from tests.unit.golden import shipped_state

STATE = shipped_state("services")
# A plugin of one's own may keep state outside the lab's namespaces: it gets CNI DEL at teardown.
OWN_CNI = dataclasses.replace(STATE, cni="/opt/cni/bin/mycni")
AGENT_PID = 4242
OWNED = {7001, 7002, 7003, 7004}   # in the lab's namespaces, and its Mininet shell
SANDBOXED = pods.sandboxed(STATE)


PORT_TAG = "a1"
PORTS = {m.netns: underlay.port_name(STATE, PORT_TAG, i) for i, m in enumerate(underlay.machines(STATE))}
SHELL = 7004          # a Mininet shell the lab claimed (bash ... mininet:NAME), still in the root namespace
STRANGER = 7100       # a process in a namespace that only looks like the lab's: never signalled


def link(name: str) -> str:
    return f"/sys/class/net/{name}"


class Machine(FakeHost):
    """The fake Host with a stand-in kernel in its files: `ip -batch` lines `netns delete N` and
    `link del L` remove /run/netns/N and /sys/class/net/L; a namespace or link in `stuck` stays (a
    namespace's batch fails as ip's would), a link in `refusing` too, and its `link del` fails; a
    link in `vanishing` goes (with its namespace) just before its `link del`, which then fails. A
    machine's switch port goes a moment after its namespace (unless in `stuck` too). Signals are
    logged with the record's status; a PID in `stubborn` outlives SIGTERM."""

    def __init__(self, log: list[str]):
        super().__init__()
        self.log = log
        self.stuck: set[str] = set()
        self.stubborn: set[int] = set()
        self.vanishing: set[str] = set()
        self.refusing: set[str] = set()
        self.timers: list[threading.Timer] = []

    def _free_port(self, netns: str) -> None:
        port = PORTS.get(netns)
        if port and port not in self.stuck:
            t = threading.Timer(0.05, lambda: self.files.pop(link(port), None))
            t.start()
            self.timers.append(t)

    def run(self, argv, *, netns=None, input=None, env=None, timeout=60, check=True):
        argv = tuple(str(a) for a in argv)
        if argv[:1] == ("ip",) and "-batch" in argv:
            refused = []
            for line in str(input).splitlines():
                what = line.split()
                if what[:2] == ["netns", "delete"]:
                    if what[2] in self.stuck:
                        refused.append(f'Cannot remove namespace file "/run/netns/{what[2]}": Device or resource busy')
                    else:
                        del self.files[host.netns_path(what[2])]
                        self._free_port(what[2])
                elif what[:2] == ["link", "del"]:
                    if what[2] in self.vanishing:
                        self.files.pop(link(what[2]), None)
                        refused.append(f'Cannot find device "{what[2]}"')
                    elif what[2] in self.refusing:
                        refused.append("RTNETLINK answers: Operation not permitted")
                    elif what[2] not in self.stuck:
                        self.files.pop(link(what[2]), None)  # a timer above may have freed it meanwhile
                self.log.append(line)
            if refused:
                super().run(argv, netns=netns, input=input, env=env, timeout=timeout, check=False)
                raise LabError(f"{' '.join(argv)} failed (exit 1): {refused[0]}")
        elif env and "CNI_COMMAND" in env:
            self.log.append(f"CNI {env['CNI_COMMAND']} {env['CNI_CONTAINERID']}")
        return super().run(argv, netns=netns, input=input, env=env, timeout=timeout, check=check)

    def kill(self, pid, sig):
        self.log.append(f"{signal.Signals(sig).name} {pid} (record {records.load(STATE.lab).status})")
        if pid in self.stubborn and sig != signal.SIGKILL:
            return True
        return super().kill(pid, sig)


@pytest.fixture
def world(tmp_path, monkeypatch):
    """Everything teardown touches, in the fake Host's files; returns (fake host, event log)."""
    monkeypatch.setattr(records, "RUN_ROOT", tmp_path / "run")
    log: list[str] = []
    fake = Machine(log)
    with host.using(fake):
        yield fake, log
    for t in fake.timers:
        t.join()


def lab_record(fake: Machine, *, missing: tuple[str, ...] = (), state=STATE) -> LabRecord:
    """A running lab: every namespace, the switch, /etc/netns folders and PIDs, as `lab up` left
    them; its agent, processes in its namespaces (OWNED) and a claimed Mininet shell running."""
    netns = [m.netns for m in (*STATE.nodes, *STATE.hosts)] + [p.netns for p in SANDBOXED]
    rec = LabRecord(name=STATE.lab, state=state, status="running", netns=netns, links=[STATE.switch_name], port_tag=PORT_TAG,
                    shells=[n.netns for n in STATE.nodes], etc_netns=[p.netns for p in SANDBOXED[:3]],
                    pids={container_key(p, c): 9000 + i for i, p in enumerate(STATE.pods) for c in p.containers},
                    agent=AGENT_PID)
    rec.dir.mkdir(parents=True)
    rec.save()
    fake.files.clear()
    fake.inodes.clear()
    fake.files["/opt/cni/bin/mycni"] = b""  # the plugin of one's own
    for n in netns:
        if n not in missing:
            fake.files[host.netns_path(n)] = b""
    for name in [STATE.switch_name, *(port for ns, port in PORTS.items() if ns not in missing)]:
        fake.files[link(name)] = b""
    for n in netns:
        fake.files[str(rec.uts_path(n))] = b""  # the bind mounts holding each pod's and node's hostname
    for n in rec.etc_netns:
        fake.files[f"/etc/netns/{n}/resolv.conf"] = b"nameserver 10.96.0.10\n"
    fake.files[host.netns_path("services-default-intruder")] = b""
    inside = [n for n in netns if n not in missing]
    processes = {AGENT_PID: (b"/usr/bin/python3\0-m\0lab.runtime.agent\0services\0", None),
                 SHELL: (b"bash\0--norc\0-is\0mininet:" + STATE.nodes[0].netns.encode() + b"\0", None),
                 STRANGER: (b"sleep\0infinity\0", "services-default-intruder"),
                 **{pid: (b"netexec\0", inside[i % len(inside)]) for i, pid in enumerate(sorted(OWNED - {SHELL})) if inside}}
    for pid, (cmdline, ns) in processes.items():
        fake.files[f"/proc/{pid}/cmdline"] = cmdline
        fake.files[f"/proc/{pid}/stat"] = f"{pid} (x) S 1".encode()
        fake.inodes[f"/proc/{pid}/ns/net"] = fake.inode(host.netns_path(ns)) if ns else 1  # 1: the root namespace
    return rec


def netns_batches(fake: FakeHost) -> list[list[str]]:
    return [c.input.splitlines() for c in fake.ran("ip") if "netns delete" in str(c.input)]


def test_teardown_stops_everything_in_order_and_removes_the_record(world):
    fake, log = world
    rec = lab_record(fake)
    assert lifecycle.teardown(rec) == []
    # bridge CNI: everything its ADD made lives in the lab's namespaces and run directory, which go
    # anyway; no DEL (a plugin of one's own gets it: below)
    assert not [e for e in log if e.startswith("CNI ")]
    links = [e for e in log if e.startswith("link del")]
    gone = [e for e in log if e.startswith("netns delete")]
    # the switch and its ports are deleted while the processes stop (in parallel: any interleaving)
    # the agent first, then every process in the lab's namespaces and its Mininet shell (not the
    # stranger in a look-alike namespace); all went at SIGTERM, so none needs a SIGKILL
    signals = [e for e in log if e.startswith("SIG")]
    assert [e for e in log if not e.startswith("link del")] == [*signals, *gone]
    assert signals[0] == f"SIGTERM {AGENT_PID} (record deleting)"
    assert sorted(signals[1:]) == [f"SIGTERM {pid} (record deleting)" for pid in sorted(OWNED)]
    assert sorted(links) == sorted(f"link del {n}" for n in [STATE.switch_name, *PORTS.values()])
    # the namespaces go in one forced batch, the last created first
    assert netns_batches(fake) == [[f"netns delete {n}" for n in reversed(rec.netns)]]
    assert [c.argv for c in fake.ran("ip") if "netns delete" in str(c.input)] == [("ip", "-force", "-batch", "-")]
    left = [f for f in fake.files if f.startswith(("/run/netns/", "/etc/netns/", "/sys/class/net/"))]
    # it returns once the kernel has freed the switch ports too: the host is as it was
    assert left == [host.netns_path("services-default-intruder")]
    assert f"/proc/{STRANGER}/stat" in fake.files
    assert not rec.dir.exists()
    # every UTS namespace (each pod's and node's hostname) is let go, once its processes are reaped
    dropped = [c for c in fake.calls if c.kind == "drop_uts"]
    assert sorted(c.argv[0] for c in dropped) == sorted(str(rec.uts_path(n)) for n in rec.netns)


def test_a_plugin_of_ones_own_gets_cni_del_for_every_sandbox_before_the_namespaces_go(world):
    fake, log = world
    rec = lab_record(fake, state=OWN_CNI)
    fake.stubborn.add(max(OWNED))  # it outlives SIGTERM: reaped by SIGKILL after the grace
    assert lifecycle.teardown(rec) == []
    cni = [e for e in log if e.startswith("CNI ")]
    assert sorted(cni) == sorted(f"CNI DEL {p.netns}" for p in SANDBOXED)  # every sandbox, DEL only
    assert max(log.index(e) for e in cni) < log.index(f"SIGKILL {max(OWNED)} (record deleting)") < log.index(
        next(e for e in log if e.startswith("netns delete")))


def test_cni_del_runs_in_the_pods_node_with_the_pods_sandbox(world):
    fake, log = world
    lifecycle.teardown(lab_record(fake, state=OWN_CNI))
    dels = [c for c in fake.calls if c.env and c.env.get("CNI_COMMAND") == "DEL"]
    assert len(dels) == len(SANDBOXED)
    for p in SANDBOXED:
        (call,) = [c for c in dels if c.env["CNI_CONTAINERID"] == p.netns]
        assert call.netns == STATE.node(p.node).netns and call.argv == ("/opt/cni/bin/mycni",)
        assert call.env["CNI_NETNS"] == f"/run/netns/{p.netns}" and call.env["CNI_IFNAME"] == "eth0"
        assert f"K8S_POD_NAME={p.name}" in call.env["CNI_ARGS"]


def test_an_agent_pid_that_is_not_the_labs_agent_is_left_alone(world):
    fake, log = world
    rec = lab_record(fake)
    fake.files[f"/proc/{AGENT_PID}/cmdline"] = b"sshd\0-D\0"  # the PID was reused
    assert lifecycle.teardown(rec) == []
    assert not any(str(AGENT_PID) in e for e in log)
    rec = lab_record(fake)
    del fake.files[f"/proc/{AGENT_PID}/cmdline"], fake.files[f"/proc/{AGENT_PID}/stat"]  # or the agent is gone already
    assert lifecycle.teardown(rec) == []
    assert not any(str(AGENT_PID) in e for e in log)


def test_teardown_keeps_going_past_errors_and_returns_them(world, monkeypatch):
    fake, log = world
    rec = lab_record(fake, state=OWN_CNI)
    fake.answer(("/opt/cni/bin/mycni",), code=1, stdout='{"code": 7, "msg": "no such veth"}')
    fake.refusing.add(STATE.switch_name)  # the kernel refuses to delete the switch
    monkeypatch.setattr(underlay, "wait_links_gone", functools.partial(underlay.wait_links_gone, timeout=0.3))
    errors = lifecycle.teardown(rec)
    assert sum("CNI mycni DEL" in e and "no such veth" in e for e in errors) == len(SANDBOXED)
    assert "ip -force -batch - failed (exit 1): RTNETLINK answers: Operation not permitted" in errors
    assert f"links still present after 3 s: {STATE.switch_name}" in errors  # the switch was never deleted
    assert len(errors) == len(SANDBOXED) + 2
    assert netns_batches(fake) == [[f"netns delete {n}" for n in reversed(rec.netns)]]
    assert rec.dir.exists()  # the switch is still there: the record stays so `lab clean` finds it


def test_a_namespace_that_stays_keeps_the_record_for_lab_clean(world):
    fake, log = world
    rec = lab_record(fake)
    busy = SANDBOXED[0].netns
    fake.stuck.add(busy)
    errors = lifecycle.teardown(rec)
    assert any("Device or resource busy" in e for e in errors)
    assert f"namespaces still present: {busy}" in errors
    assert [f for f in fake.files if f.startswith("/run/netns/")] == [
        host.netns_path(n) for n in (busy, "services-default-intruder")]
    saved = records.load(rec.name)  # still there, saying what it was doing
    assert saved.status == "deleting" and saved.netns == rec.netns


def test_a_switch_port_the_kernel_does_not_free_is_reported(world, monkeypatch):
    fake, log = world
    rec = lab_record(fake)
    stuck = PORTS[STATE.node("worker1").netns]
    fake.stuck.add(stuck)
    monkeypatch.setattr(underlay, "wait_links_gone", functools.partial(underlay.wait_links_gone, timeout=0.3))
    assert lifecycle.teardown(rec) == [f"links still present after 3 s: {stuck}"]
    assert [f for f in fake.files if f.startswith("/sys/class/net/")] == [link(stuck)]


def test_only_namespaces_that_exist_are_deleted_and_pods_of_a_gone_node_get_no_cni_del(world):
    fake, log = world
    gone_node = STATE.node("worker2").netns
    already = (gone_node, SANDBOXED[-1].netns)
    rec = lab_record(fake, missing=already, state=OWN_CNI)
    assert lifecycle.teardown(rec) == []
    assert netns_batches(fake) == [[f"netns delete {n}" for n in reversed(rec.netns) if n not in already]]
    cni = {e.split()[-1] for e in log if e.startswith("CNI ")}
    assert cni == {p.netns for p in SANDBOXED if p.node != "worker2"}
    assert not rec.dir.exists()


def test_a_lab_whose_namespaces_are_all_gone_runs_no_netns_delete(world):
    fake, log = world
    rec = lab_record(fake, missing=tuple(m.netns for m in (*STATE.nodes, *STATE.hosts, *SANDBOXED)))
    assert lifecycle.teardown(rec) == []
    assert netns_batches(fake) == [] and not any(e.startswith("CNI") for e in log)
    assert not rec.dir.exists()


def test_the_pod_networks_daemons_stop_before_the_processes_are_signalled(world, monkeypatch):
    fake, log = world
    rec = lab_record(fake)
    daemons = runtimes.Runtime(start=None, wait_ready=None, ready="", stop=lambda r: log.append(f"stop daemons of {r.name}"))
    monkeypatch.setattr(runtimes, "of", lambda network: daemons)
    assert lifecycle.teardown(rec) == []
    assert log.index(f"SIGTERM {AGENT_PID} (record deleting)") < log.index("stop daemons of services") < log.index(
        f"SIGTERM {min(OWNED)} (record deleting)")


def test_teardown_uses_the_records_own_namespaces_only(world):
    """A namespace that merely looks like the lab's (same prefix) is not the lab's: never deleted."""
    fake, log = world
    rec = lab_record(fake)
    assert lifecycle.teardown(rec) == []
    assert [f for f in fake.files if f.startswith("/run/netns/")] == [host.netns_path("services-default-intruder")]
    assert not any(e.startswith(f"SIGTERM {STRANGER}") for e in log)
    assert not any("intruder" in line for batch in netns_batches(fake) for line in batch)


def test_a_port_gone_with_its_node_namespace_meanwhile_is_no_error(world, monkeypatch):
    """The switch goes in parallel with the namespaces: a port may vanish between being listed and
    its `link del` (ip then fails); only a link still there is an error."""
    fake, log = world
    fake.vanishing.add(PORTS[STATE.node("worker1").netns])
    assert lifecycle.teardown(lab_record(fake)) == []
    fake.refusing.add(STATE.switch_name)  # and one link that stays is an error
    monkeypatch.setattr(underlay, "wait_links_gone", functools.partial(underlay.wait_links_gone, timeout=0.1))
    errors = lifecycle.teardown(lab_record(fake))
    assert errors == ["ip -force -batch - failed (exit 1): RTNETLINK answers: Operation not permitted",
                      f"links still present after 3 s: {STATE.switch_name}"]


def test_clean_passes_over_a_lab_taken_down_between_listing_and_reading(world, monkeypatch):
    """Two labs side by side: one's `lab down` may remove its record while `lab clean` walks the
    list. That lab is gone, not a wreck: clean says nothing of it and does not fail."""
    monkeypatch.setattr(records, "names", lambda: ["gone-meanwhile"])
    assert lifecycle.clean() == []
    monkeypatch.setattr(records, "names", lambda: ["gone-meanwhile", "other"])
    monkeypatch.setattr(records, "load", lambda name: (_ for _ in ()).throw(LabError(f"{name} is damaged")))
    with pytest.raises(LabError, match="damaged"):  # any other error still stops it
        lifecycle.clean()
