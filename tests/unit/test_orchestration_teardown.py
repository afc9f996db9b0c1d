"""`lab down` (lifecycle.teardown) against the fake Host (no root).

What the kernel would hold is played by temporary folders: the named namespaces are files in a
stand-in for /run/netns (lab.host.NETNS_DIR, and the lifecycle's and underlay's own `os.path.exists`
of /run/netns and /sys/class/net redirected there), /etc/netns is a folder under tmp_path, and the
fake Host removes a namespace's file when an `ip -batch` line deletes it (unless the test makes it
stick, as a busy one would); the root-side switch port of a node or host goes 50 ms after its
namespace, as the kernel frees veth peers asynchronously. Processes are lab.node.processes replaced
by recorders, and the agent's /proc/PID/cmdline is answered by the test.
"""
from __future__ import annotations

import dataclasses
import functools
import io
import os
import signal
import threading
from pathlib import Path

import pytest

from lab import host
from lab.cni import libcni
from lab.controlplane.state import container_key
from lab.dns import runtime as dns
from lab.errors import LabError
from lab.host import record as records
from lab.host.fake import FakeHost
from lab.host.record import LabRecord
from lab.node import pods, processes, underlay
from lab.routing import runtimes
from lab.runtime import lifecycle
from tests.unit.golden import shipped_state

STATE = shipped_state("services")
# A plugin of one's own may keep state outside the lab's namespaces: it gets CNI DEL at teardown.
OWN_CNI = dataclasses.replace(STATE, cni="/opt/cni/bin/mycni")
AGENT_PID = 4242
OWNED = {7001, 7002, 7003}
SANDBOXED = pods.sandboxed(STATE)


class Redirected:
    """`os` for a module that names /run/netns or /sys/class/net itself: exists() answers there
    from the test's folders; everything else is the real os."""

    def __init__(self, roots: dict[str, Path]):
        outer = self

        class _Path:
            def __getattr__(self, name):
                return getattr(os.path, name)

            def exists(self, p) -> bool:
                return os.path.exists(outer.where(str(p)))

        self.roots, self.path = roots, _Path()

    def where(self, p: str) -> str:
        for prefix, root in self.roots.items():
            if p.startswith(prefix):
                return str(root / p[len(prefix):])
        return p

    def __getattr__(self, name):
        return getattr(os, name)


PORT_TAG = "a1"
PORTS = {m.netns: underlay.port_name(STATE, PORT_TAG, i) for i, m in enumerate(underlay.machines(STATE))}


class Machine(FakeHost):
    """The fake Host with a stand-in kernel: `ip -batch` lines `netns delete N` and `link del L`
    remove N's file and L; a namespace in `stuck` stays, and its batch fails as ip's would. A
    machine's switch port goes a moment after its namespace (unless in `stuck` too)."""

    def __init__(self, netns_dir: Path, links_dir: Path, log: list[str]):
        super().__init__()
        self.netns_dir, self.links_dir, self.log = netns_dir, links_dir, log
        self.stuck: set[str] = set()
        self.timers: list[threading.Timer] = []

    def _free_port(self, netns: str) -> None:
        port = PORTS.get(netns)
        if port and port not in self.stuck:
            t = threading.Timer(0.05, lambda: (self.links_dir / port).unlink(missing_ok=True))
            t.start()
            self.timers.append(t)

    def run(self, argv, *, netns=None, input=None, env=None, timeout=60, check=True):
        argv = tuple(str(a) for a in argv)
        if argv[:1] == ("ip",) and "-batch" in argv:
            busy = []
            for line in str(input).splitlines():
                what = line.split()
                if what[:2] == ["netns", "delete"]:
                    if what[2] in self.stuck:
                        busy.append(what[2])
                    else:
                        (self.netns_dir / what[2]).unlink()
                        self._free_port(what[2])
                elif what[:2] == ["link", "del"] and what[2] not in self.stuck:
                    (self.links_dir / what[2]).unlink(missing_ok=True)  # a timer above may have freed it meanwhile
                self.log.append(line)
            if busy:
                self.answer(argv, code=1, stderr=f'Cannot remove namespace file "/run/netns/{busy[0]}": '
                                                 "Device or resource busy", times=1)
        elif env and "CNI_COMMAND" in env:
            self.log.append(f"CNI {env['CNI_COMMAND']} {env['CNI_CONTAINERID']}")
        return super().run(argv, netns=netns, input=input, env=env, timeout=timeout, check=check)


@pytest.fixture
def world(tmp_path, monkeypatch):
    """Everything teardown touches, redirected; returns (fake host, event log, folders)."""
    netns_dir, links_dir, etc = tmp_path / "netns", tmp_path / "sys-class-net", tmp_path / "etc-netns"
    for d in (netns_dir, links_dir, etc):
        d.mkdir()
    monkeypatch.setattr(records, "RUN_ROOT", tmp_path / "run")
    monkeypatch.setattr(host, "NETNS_DIR", str(netns_dir))
    monkeypatch.setattr(dns, "ETC_NETNS", etc)
    roots = {"/run/netns/": netns_dir, "/sys/class/net/": links_dir}
    monkeypatch.setattr(lifecycle, "os", Redirected(roots))
    monkeypatch.setattr(underlay, "os", Redirected(roots))
    monkeypatch.setattr(libcni, "find_plugin", lambda kind, dirs=(): f"/opt/cni/bin/{kind}")

    log: list[str] = []
    cmdlines = {AGENT_PID: b"/usr/bin/python3\0-m\0lab.runtime.agent\0services\0"}

    def proc_open(path, mode="r", *a, **kw):
        pid = path.split("/")[2] if path.startswith("/proc/") else ""
        if pid.isdigit() and path.endswith("/cmdline"):
            if int(pid) not in cmdlines:
                raise FileNotFoundError(path)
            return io.BytesIO(cmdlines[int(pid)])
        return open(path, mode, *a, **kw)

    monkeypatch.setattr(lifecycle, "open", proc_open, raising=False)
    owned_args = []

    def owned_pids(netns, shells=(), recorded=()):
        owned_args.append((list(netns), list(shells), sorted(recorded)))
        log.append("find owned")
        return set(OWNED)

    def signal_all(pids, sig):
        status = records.load(STATE.lab).status
        log.append(f"{signal.Signals(sig).name} {sorted(pids)} (record {status})")

    monkeypatch.setattr(processes, "owned_pids", owned_pids)
    monkeypatch.setattr(processes, "signal_all", signal_all)
    monkeypatch.setattr(processes, "reap", lambda pids, grace=0.3: log.append(f"reap {sorted(pids)}"))
    fake = Machine(netns_dir, links_dir, log)
    with host.using(fake):
        yield fake, log, {"netns": netns_dir, "links": links_dir, "etc": etc, "cmdlines": cmdlines,
                          "owned_args": owned_args}
    for t in fake.timers:
        t.join()


def lab_record(where: dict, *, missing: tuple[str, ...] = (), state=STATE) -> LabRecord:
    """A running lab: every namespace, the switch, /etc/netns folders and PIDs, as `lab up` left them."""
    netns = [m.netns for m in (*STATE.nodes, *STATE.hosts)] + [p.netns for p in SANDBOXED]
    rec = LabRecord(name=STATE.lab, state=state, status="running", netns=netns, links=[STATE.switch_name], port_tag=PORT_TAG,
                    shells=[f"mininet:{n.netns}" for n in STATE.nodes], etc_netns=[p.netns for p in SANDBOXED[:3]],
                    pids={container_key(p, c): 9000 + i for i, p in enumerate(STATE.pods) for c in p.containers},
                    agent=AGENT_PID)
    rec.dir.mkdir(parents=True)
    rec.save()
    for n in netns:
        if n not in missing:
            (where["netns"] / n).touch()
    for link in [STATE.switch_name, *(port for ns, port in PORTS.items() if ns not in missing)]:
        (where["links"] / link).touch()
    rec.uts_path("x").parent.mkdir()
    for n in netns:
        rec.uts_path(n).touch()  # the bind mounts holding each pod's and node's hostname
    for n in rec.etc_netns:
        (where["etc"] / n).mkdir()
        (where["etc"] / n / "resolv.conf").write_text("nameserver 10.96.0.10\n")
    return rec


def netns_batches(fake: FakeHost) -> list[list[str]]:
    return [c.input.splitlines() for c in fake.ran("ip") if "netns delete" in str(c.input)]


def test_teardown_stops_everything_in_order_and_removes_the_record(world):
    fake, log, where = world
    rec = lab_record(where)
    assert lifecycle.teardown(rec) == []
    # bridge CNI: everything its ADD made lives in the lab's namespaces and run directory, which go
    # anyway; no DEL (a plugin of one's own gets it: below)
    assert not [e for e in log if e.startswith("CNI ")]
    links = [e for e in log if e.startswith("link del")]
    gone = [e for e in log if e.startswith("netns delete")]
    # the switch and its ports are deleted while the processes stop (in parallel: any interleaving)
    assert [e for e in log if not e.startswith("link del")] == [
        f"SIGTERM [{AGENT_PID}] (record deleting)", f"reap [{AGENT_PID}]", "find owned",
        f"SIGTERM {sorted(OWNED)} (record deleting)", f"reap {sorted(OWNED)}", *gone]
    assert sorted(links) == sorted(f"link del {n}" for n in [STATE.switch_name, *PORTS.values()])
    # the namespaces go in one forced batch, the last created first
    assert netns_batches(fake) == [[f"netns delete {n}" for n in reversed(rec.netns)]]
    assert [c.argv for c in fake.ran("ip") if "netns delete" in str(c.input)] == [("ip", "-force", "-batch", "-")]
    assert where["owned_args"] == [(rec.netns, rec.shells, sorted(rec.pids.values()))]
    assert list(where["netns"].iterdir()) == [] and list(where["etc"].iterdir()) == []
    # it returns once the kernel has freed the switch ports too: the host is as it was
    assert list(where["links"].iterdir()) == []
    assert not rec.dir.exists()
    # every UTS namespace (each pod's and node's hostname) is let go, once its processes are reaped
    dropped = [c for c in fake.calls if c.kind == "drop_uts"]
    assert sorted(c.argv[0] for c in dropped) == sorted(str(rec.uts_path(n)) for n in rec.netns)


def test_a_plugin_of_ones_own_gets_cni_del_for_every_sandbox_before_the_namespaces_go(world):
    fake, log, where = world
    rec = lab_record(where, state=OWN_CNI)
    assert lifecycle.teardown(rec) == []
    cni = [e for e in log if e.startswith("CNI ")]
    assert sorted(cni) == sorted(f"CNI DEL {p.netns}" for p in SANDBOXED)  # every sandbox, DEL only
    assert max(log.index(e) for e in cni) < log.index(f"reap {sorted(OWNED)}") < log.index(
        next(e for e in log if e.startswith("netns delete")))


def test_cni_del_runs_in_the_pods_node_with_the_pods_sandbox(world):
    fake, log, where = world
    lifecycle.teardown(lab_record(where, state=OWN_CNI))
    dels = [c for c in fake.calls if c.env and c.env.get("CNI_COMMAND") == "DEL"]
    assert len(dels) == len(SANDBOXED)
    for p in SANDBOXED:
        (call,) = [c for c in dels if c.env["CNI_CONTAINERID"] == p.netns]
        assert call.netns == STATE.node(p.node).netns and call.argv == ("/opt/cni/bin/mycni",)
        assert call.env["CNI_NETNS"] == f"{where['netns']}/{p.netns}" and call.env["CNI_IFNAME"] == "eth0"
        assert f"K8S_POD_NAME={p.name}" in call.env["CNI_ARGS"]


def test_an_agent_pid_that_is_not_the_labs_agent_is_left_alone(world):
    fake, log, where = world
    rec = lab_record(where)
    where["cmdlines"][AGENT_PID] = b"sshd\0-D\0"  # the PID was reused
    assert lifecycle.teardown(rec) == []
    assert not any(str(AGENT_PID) in e for e in log)
    where["cmdlines"].pop(AGENT_PID)  # or the agent is gone already
    rec = lab_record(where)
    assert lifecycle.teardown(rec) == []
    assert not any(str(AGENT_PID) in e for e in log)


def test_teardown_keeps_going_past_errors_and_returns_them(world, monkeypatch):
    fake, log, where = world
    rec = lab_record(where, state=OWN_CNI)
    fake.answer(("/opt/cni/bin/mycni",), code=1, stdout='{"code": 7, "msg": "no such veth"}')

    def switch_fails(record):
        raise LabError("switch kn3e7aaa: injected failure")

    monkeypatch.setattr(underlay, "destroy_switch", switch_fails)
    monkeypatch.setattr(underlay, "wait_links_gone", functools.partial(underlay.wait_links_gone, timeout=0.3))
    errors = lifecycle.teardown(rec)
    assert sum("CNI mycni DEL" in e and "no such veth" in e for e in errors) == len(SANDBOXED)
    assert "switch kn3e7aaa: injected failure" in errors
    assert f"links still present after 3 s: {STATE.switch_name}" in errors  # the switch was never deleted
    assert len(errors) == len(SANDBOXED) + 2
    assert netns_batches(fake) == [[f"netns delete {n}" for n in reversed(rec.netns)]]
    assert rec.dir.exists()  # the switch is still there: the record stays so `lab clean` finds it


def test_a_namespace_that_stays_keeps_the_record_for_lab_clean(world):
    fake, log, where = world
    rec = lab_record(where)
    busy = SANDBOXED[0].netns
    fake.stuck.add(busy)
    errors = lifecycle.teardown(rec)
    assert any("Device or resource busy" in e for e in errors)
    assert f"namespaces still present: {busy}" in errors
    assert [p.name for p in where["netns"].iterdir()] == [busy]
    saved = records.load(rec.name)  # still there, saying what it was doing
    assert saved.status == "deleting" and saved.netns == rec.netns


def test_a_switch_port_the_kernel_does_not_free_is_reported(world, monkeypatch):
    fake, log, where = world
    rec = lab_record(where)
    stuck = PORTS[STATE.node("worker1").netns]
    fake.stuck.add(stuck)
    monkeypatch.setattr(underlay, "wait_links_gone", functools.partial(underlay.wait_links_gone, timeout=0.3))
    assert lifecycle.teardown(rec) == [f"links still present after 3 s: {stuck}"]
    assert [p.name for p in where["links"].iterdir()] == [stuck]


def test_only_namespaces_that_exist_are_deleted_and_pods_of_a_gone_node_get_no_cni_del(world):
    fake, log, where = world
    gone_node = STATE.node("worker2").netns
    already = (gone_node, SANDBOXED[-1].netns)
    rec = lab_record(where, missing=already, state=OWN_CNI)
    assert lifecycle.teardown(rec) == []
    assert netns_batches(fake) == [[f"netns delete {n}" for n in reversed(rec.netns) if n not in already]]
    cni = {e.split()[-1] for e in log if e.startswith("CNI ")}
    assert cni == {p.netns for p in SANDBOXED if p.node != "worker2"}
    assert not rec.dir.exists()


def test_a_lab_whose_namespaces_are_all_gone_runs_no_netns_delete(world):
    fake, log, where = world
    rec = lab_record(where, missing=tuple(m.netns for m in (*STATE.nodes, *STATE.hosts, *SANDBOXED)))
    assert lifecycle.teardown(rec) == []
    assert netns_batches(fake) == [] and not any(e.startswith("CNI") for e in log)
    assert not rec.dir.exists()


def test_the_pod_networks_daemons_stop_before_the_processes_are_signalled(world, monkeypatch):
    fake, log, where = world
    rec = lab_record(where)
    daemons = runtimes.Runtime(start=None, wait_ready=None, ready="", stop=lambda r: log.append(f"stop daemons of {r.name}"))
    monkeypatch.setattr(runtimes, "of", lambda network: daemons)
    assert lifecycle.teardown(rec) == []
    assert log.index(f"reap [{AGENT_PID}]") < log.index("stop daemons of services") < log.index("find owned")


def test_teardown_uses_the_records_own_namespaces_only(world):
    """A namespace that merely looks like the lab's (same prefix) is not the lab's: never deleted."""
    fake, log, where = world
    rec = lab_record(where)
    (where["netns"] / "services-default-intruder").touch()
    assert lifecycle.teardown(rec) == []
    assert [p.name for p in where["netns"].iterdir()] == ["services-default-intruder"]
    assert not any("intruder" in line for batch in netns_batches(fake) for line in batch)


def test_a_port_gone_with_its_node_namespace_meanwhile_is_no_error(world, monkeypatch):
    """The switch goes in parallel with the namespaces: a port may vanish between being listed and
    its `link del` (ip then fails); only a link still there is an error."""
    fake, log, where = world

    def batch(lines, netns=None, force=False, keep=()):
        for line in lines:
            if line.split()[2] not in keep:
                (where["links"] / line.split()[2]).unlink(missing_ok=True)
        raise LabError('ip -force -batch - failed (exit 1): Cannot find device "kn3e7aaaa1p1"')

    monkeypatch.setattr(underlay, "ip_batch", batch)
    assert lifecycle.teardown(lab_record(where)) == []
    monkeypatch.setattr(underlay, "ip_batch", functools.partial(batch, keep=(STATE.switch_name,)))
    monkeypatch.setattr(underlay, "wait_links_gone", functools.partial(underlay.wait_links_gone, timeout=0.1))
    errors = lifecycle.teardown(lab_record(where))
    assert errors[0].startswith("ip -force -batch - failed") and errors[1:] == [
        f"links still present after 3 s: {STATE.switch_name}"]
