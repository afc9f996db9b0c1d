"""The whole of `lab up` and then `lab down` of a small lab against the fake Host: every effect
(programs, daemons, files, signals, sysctls, the underlay Mininet would build), in order, compared
with tests/golden/lifecycle/*.txt. A change to what `lab up` or `lab down` does to the machine shows
as a diff there; UPDATE_GOLDEN=1 writes the files anew (review `git diff tests/golden` first).

The fake runs what the lab runs side by side one after another (FakeHost(serial=True)), so the
order is fixed. What a test must play that the fake cannot: CNI plugins answer ADD with the
address the pod asked for, the netexec fork server reports each container started and ready, and
`ip link show master` lists the switch ports the underlay was built with.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

from lab import host
from lab.host import Completed
from lab.host import record as records
from lab.host.fake import Call, FakeHost
from lab.runtime import lifecycle
from tests.unit.golden import ROOT, check_golden

TOPOLOGY = {
    "name": "gold",
    "cluster": {"network": "vxlan"},
    "underlay": {"subnet": "172.18.0.0/24", "switch": "linux-bridge"},
    "nodes": [{"name": "control-plane", "role": "control-plane"}, {"name": "worker1"}],
    "hosts": [{"name": "internet"}],
    "manifests": [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
         "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}},
                               "spec": {"containers": [{"name": "web", "image": "netexec",
                                                        "ports": [{"containerPort": 8080}]}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}},
    ],
}


class ForkServer:
    """The netexec fork server's side of its pipes: each container line it is given is a child
    started in the line's namespace (`pid KEY PID`) and ready (`ready KEY`); its output ends when
    its input is closed."""

    def __init__(self, fake: FakeHost, pid: int):
        self.fake, self.pid, self.next_pid = fake, pid, pid * 10
        read, write = os.pipe()
        self.stdout, self._out = os.fdopen(read), os.fdopen(write, "w")
        self.stdin = self

    def write(self, line: str) -> None:
        key, netns = line.split("\t")[:2]
        self.next_pid += 1
        self.fake.files[f"/proc/{self.next_pid}/stat"] = f"{self.next_pid} (python3) S 1".encode()
        self.fake.inodes[f"/proc/{self.next_pid}/ns/net"] = self.fake.inode(netns)
        self._out.write(f"pid {key} {self.next_pid}\nready {key}\n")

    def flush(self) -> None:
        self._out.flush()

    def close(self) -> None:
        self._out.close()

    def wait(self, timeout=None) -> int:
        """It exits once its children are forked and reported."""
        del self.fake.files[f"/proc/{self.pid}/cmdline"], self.fake.files[f"/proc/{self.pid}/stat"]
        return 0


class Machine(FakeHost):
    """The fake Host, with `ip -batch` lines that add or delete a namespace or delete a link acting
    on its files (/run/netns/NAME, /sys/class/net/LINK): a machine's switch port goes with its
    namespace, as its veth peer does."""

    def __init__(self):
        super().__init__(serial=True)
        self.ports: dict[str, list[str]] = {}
        self.port_of: dict[str, str] = {}

    def run(self, argv, *, netns=None, input=None, env=None, timeout=60, check=True):
        argv = tuple(str(a) for a in argv)
        if argv[:1] == ("ip",) and "-batch" in argv and not netns and "-n" not in argv:
            for what in (line.split() for line in str(input).splitlines()):
                if what[:2] == ["netns", "add"]:
                    self.files[host.netns_path(what[2])] = b""
                elif what[:2] == ["netns", "delete"]:
                    self.files.pop(host.netns_path(what[2]))
                    self.files.pop(f"/sys/class/net/{self.port_of.get(what[2])}", None)
                elif what[:2] == ["link", "del"]:
                    self.files.pop(f"/sys/class/net/{what[2]}")
        if argv[:5] == ("ip", "-j", "link", "show", "master"):
            self.answer(argv, stdout=json.dumps([{"ifname": p} for p in self.ports.get(argv[5], [])]))
        if env and env.get("CNI_COMMAND") == "ADD":
            ip = dict(a.split("=", 1) for a in env["CNI_ARGS"].split(";"))["IP"]
            super().run(argv, netns=netns, input=input, env=env, timeout=timeout, check=check)
            return Completed(0, json.dumps({"cniVersion": "1.0.0", "ips": [{"address": f"{ip}/24"}]}), "")
        return super().run(argv, netns=netns, input=input, env=env, timeout=timeout, check=check)

    def spawn(self, argv, *, log=None, env=None, pipes=False, fresh_log=False):
        proc = super().spawn(argv, log=log, env=env, pipes=pipes, fresh_log=fresh_log)
        return ForkServer(self, proc.pid) if pipes and "--forkserver" in argv else proc

    def underlay(self, plan) -> None:
        super().underlay(plan)
        for w in plan.wires:
            self.ports.setdefault(w.switch, []).append(w.port)
            self.port_of[w.machine] = w.port


def render(calls: list[Call], tmp: Path, tag: str, switch: str) -> str:
    """One line per effect (a program's input and a file's text indented below it), with the
    paths of this run made the same every run."""
    lines = []
    for c in calls:
        where = f" [{c.netns}]" if c.netns else ""
        if c.kind == "underlay":
            lines.append("underlay")
            lines += [f"  switch {s.name} {s.kind}" for s in c.input.switches]
            lines += [f"  machine {m.netns} {m.ip}" for m in c.input.machines]
            lines += [f"  wire {w.machine}:{w.ifname} {w.mac} -- {w.switch}:{w.port}" for w in c.input.wires]
            continue
        head = " ".join([f"{c.kind}{where}", *c.argv])
        if c.env and "CNI_COMMAND" in c.env:
            head += f" (CNI {c.env['CNI_COMMAND']} {c.env['CNI_CONTAINERID']} {c.env['CNI_IFNAME']})"
        if c.settings:
            head += " " + " ".join(f"{k}={v}" for k, v in sorted(c.settings.items()))
        lines.append(head)
        body = c.input.decode(errors="replace") if isinstance(c.input, bytes) else c.input
        if isinstance(body, str):
            lines += [f"  | {line}" for line in body.splitlines()]
    text = "\n".join(lines) + "\n"
    for real, fixed in ((str(tmp), "<tmp>"), (sys.executable, "<python>"), (str(ROOT), "<repo>"),
                        (f"{switch}{tag}p", f"{switch}<tag>p")):
        text = text.replace(real, fixed)
    return re.sub(r"\.tmp\.\d+\.\d+", ".tmp.<writer>", text)  # host.replace_file's per-writer name


@pytest.fixture
def machine(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "RUN_ROOT", tmp_path / "run")
    with host.using(Machine()) as m:
        m.files["/opt/cni/bin/bridge"] = b""
        yield m


def test_lab_up_then_lab_down_do_exactly_what_the_golden_files_say(tmp_path, machine):
    path = tmp_path / "gold.yaml"
    path.write_text(yaml.safe_dump(TOPOLOGY, sort_keys=False))
    state = lifecycle.up(str(path))
    rec = records.load(state.lab)
    assert rec.status == "running" and rec.agent
    up = render(machine.calls, tmp_path, rec.port_tag, state.switch_name)
    machine.calls.clear()
    assert lifecycle.teardown(rec) == []
    down = render(machine.calls, tmp_path, rec.port_tag, state.switch_name)
    check_golden("lifecycle/up.txt", up)
    check_golden("lifecycle/down.txt", down)
    # what `lab down` leaves: no namespace, link, resolv.conf, process or UTS file of the lab
    assert [p for p in machine.files if not p.startswith(str(tmp_path))] == ["/opt/cni/bin/bridge"]
    assert not rec.dir.exists()


def test_the_golden_check_fails_on_a_changed_effect(tmp_path, machine, monkeypatch):
    """The comparison can fail: one effect more than the golden file says is a difference."""
    monkeypatch.delenv("UPDATE_GOLDEN", raising=False)  # compared, never written
    path = tmp_path / "gold.yaml"
    path.write_text(yaml.safe_dump(TOPOLOGY, sort_keys=False))
    state = lifecycle.up(str(path))
    rec = records.load(state.lab)
    host.write_file("/etc/stray", "x")
    with pytest.raises(AssertionError, match="differs from the golden"):
        check_golden("lifecycle/up.txt", render(machine.calls, tmp_path, rec.port_tag, state.switch_name))
    lifecycle.teardown(rec)
