"""The controller registry and reconcile() against the fake Host (no root): what is registered,
the image -> program lookup lab.node.containers gets, the order and diff of the syncs, what a
failure does to the commit, and the lab record's ledger and status sections on disk (the format
of labs made before included)."""
from __future__ import annotations

import ast
import json
from dataclasses import replace
from pathlib import Path

import pytest

from lab import cli
from lab.controlplane.controller import Controller, Diff
from lab.errors import LabError
from lab.host import record as records
from lab.host.record import LabRecord
from lab.node import containers, prober
from lab.runtime import controllers
from tests.unit.golden import shipped_state

LAB = Path(__file__).resolve().parents[2] / "lab"
STATE = shipped_state("netpol", dns={"enabled": False})
READY = {p.key: True for p in STATE.pods}

pytestmark = pytest.mark.usefixtures("run_root")


def new_record(state=STATE, pod_ready=None) -> LabRecord:
    rec = LabRecord(name=state.lab, state=state, status="running", pod_ready=dict(pod_ready or READY))
    rec.dir.mkdir(parents=True)
    rec.save()
    return rec


class Spy:
    """Controllers that say what they were given, in a shared log; `fails` names one that raises."""

    def __init__(self, fails: str = ""):
        self.log: list[tuple[str, Diff]] = []
        self.fails = fails

    def controller(self, name: str) -> Controller:
        def sync(rec, diff):
            self.log.append((name, diff))
            if name == self.fails:
                raise LabError(f"{name} refused")
            return [name]
        return Controller(name, sync=sync)


def test_today_s_controllers_are_registered_once_each_in_sync_order():
    names = [c.name for c in controllers.CONTROLLERS]
    assert names == ["kube-proxy", "kube-dns", "node-local-dns", "ingress-nginx", "gateway", "policy", "loadbalancer", "hostport"]
    assert len(set(names)) == len(names)


def test_the_add_on_images_programs_come_from_their_registrations(tmp_path):
    programs = controllers.programs()
    assert set(programs) == {"kube-dns", "ingress-nginx", "envoy"}
    rec = new_record()
    assert programs["kube-dns"](rec, None)[0] == "dnsmasq" and programs["ingress-nginx"](rec, None)[0] == "nginx"


def test_an_image_registered_by_two_controllers_is_refused():
    one = Controller("a", images={"img": lambda rec, pod: ["a"]})
    two = Controller("b", images={"img": lambda rec, pod: ["b"]})
    with pytest.raises(ValueError, match="image img is registered twice"):
        controllers.programs([one, two])


def test_the_containers_runtime_runs_the_program_it_is_handed_for_an_image(fake):
    pod = next(p for p in STATE.pods if not p.host_network)
    addon = replace(pod, containers=(replace(pod.containers[0], image="my-addon", argv=("ignored",)),))
    starter = containers.Starter(new_record(), {"my-addon": lambda rec, p: ["my-program", rec.name, p.name]})
    starter.start_pod(addon)
    spawned = [c.argv for c in fake.calls if c.kind == "spawn"]
    assert spawned[-1][-3:] == ("my-program", STATE.lab, addon.name)  # the program knows its pod (an Envoy its Gateway)


def test_nothing_below_the_registry_imports_an_add_on_runtime():
    """lab.node, lab.host and the renderers name no add-on: they are handed what they need."""
    addons = ("lab.dns.runtime", "lab.ingress", "lab.gateway", "lab.loadbalancer", "lab.runtime")
    for path in [*(LAB / "node").glob("*.py"), *(LAB / "host").glob("*.py")]:
        tree = ast.parse(path.read_text())
        imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        imported += [f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names]
        assert not [m for m in imported if m.startswith(addons)], path


def test_reconcile_syncs_in_order_from_the_committed_state_then_commits():
    rec, spy = new_record(), Spy()
    new_ready = {**READY, STATE.pods[0].key: False}
    done = controllers.reconcile(rec, STATE, new_ready, controllers=[spy.controller("a"), spy.controller("b")])
    assert [name for name, _ in spy.log] == ["a", "b"] and done == {"a": ("a",), "b": ("b",)}
    diff = spy.log[0][1]
    assert (diff.old, diff.old_ready, diff.new, diff.new_ready, diff.first) == (STATE, READY, STATE, new_ready, False)
    assert not diff.objects_changed, "only readiness changed"
    assert rec.pod_ready == new_ready


def test_a_failed_sync_raises_before_the_commit_and_the_rest_do_not_run():
    rec, spy = new_record(), Spy(fails="a")
    with pytest.raises(LabError, match="a refused"):
        controllers.reconcile(rec, STATE, {}, controllers=[spy.controller("a"), spy.controller("b")])
    assert [name for name, _ in spy.log] == ["a"] and rec.pod_ready == READY


def test_a_rollback_tries_every_controller_collects_the_failures_and_commits():
    rec, spy, errors = new_record(), Spy(fails="a"), []
    done = controllers.reconcile(rec, STATE, {}, first=True, errors=errors,
                                 controllers=[spy.controller("a"), spy.controller("b")])
    assert errors == ["a refused"] and done == {"b": ("b",)} and rec.pod_ready == {}
    assert all(d.first and d.objects_changed for _, d in spy.log)


def test_the_policies_are_written_when_the_objects_change_not_when_only_readiness_does(fake):
    rec = new_record()
    controllers.reconcile(rec, STATE, READY, controllers=[controllers.policy.CONTROLLER])
    assert fake.calls == [] and "policy" not in rec.sections
    controllers.reconcile(rec, replace(STATE), READY, controllers=[controllers.policy.CONTROLLER])
    assert {c.netns for c in fake.ran("iptables-restore")} == {n.netns for n in STATE.nodes}
    assert set(rec.section("policy")["chains"]) == {n.name for n in STATE.nodes}


def test_every_registered_sync_runs_against_the_fake_host_on_a_first_reconcile(fake):
    rec = new_record(pod_ready={})
    done = controllers.reconcile(rec, STATE, READY, first=True)
    assert set(done) == {"kube-proxy", "kube-dns", "ingress-nginx", "gateway", "policy", "loadbalancer"}
    assert set(done["kube-proxy"]) == {s.key for s in STATE.services}
    assert set(done["policy"]) == {n.name for n in STATE.nodes}
    assert set(rec.section("kube-proxy")["chains"]) == {n.name for n in STATE.nodes}
    assert rec.pod_ready == READY and rec.state is STATE


def test_status_is_each_controller_s_section_or_its_own_hook():
    rec = new_record()
    rec.section("kube-proxy")["full_resyncs"] = 2
    status = controllers.status(rec)
    assert status["kube-proxy"] == {"full_resyncs": 2} and status["kube-dns"] == {}
    assert status["hostport"] == {}  # netpol.yaml maps no hostPort
    ingress = shipped_state("ingress")
    pod = next(p for p in ingress.pods if p.namespace == "ingress-nginx")
    ports = controllers.status(new_record(ingress, {p.key: True for p in ingress.pods}))["hostport"]
    assert ports == {pod.node: [f":80/tcp -> {pod.key}:80", f":443/tcp -> {pod.key}:443"]}


# --- the record: ledger, sections, formats ---

def test_the_ledger_and_the_sections_survive_a_save_and_load():
    rec = new_record()
    rec.claim(netns=("a-ns",), links=("a-link",), etc_netns=("a-ns",))
    rec.pids["default/p/c"] = 42
    prober.write_status(rec, {"default/p/c": True}, {"default/p/c": "tcp 80: connected"}, {})
    rec.save()
    data = json.loads((rec.dir / "record.json").read_text())
    assert data["format"] == records.FORMAT and data["netns"] == ["a-ns"] and data["pids"] == {"default/p/c": 42}
    assert "ready" not in data and data["sections"]["kubelet"]["ready"] == {"default/p/c": True}
    back = records.load(rec.name)
    assert (back.netns, back.links, back.etc_netns, back.pids) == (["a-ns"], ["a-link"], ["a-ns"], {"default/p/c": 42})
    assert prober.status(back).ready == {"default/p/c": True}


def test_a_record_of_the_format_before_is_read_into_sections_so_it_still_goes_down(tmp_path):
    rec = new_record()
    old = {"name": rec.name, "status": "running", "owner_pid": 0, "owner_start": None, "created": 1.0,
           "netns": ["n1"], "links": ["l1"], "ovs_bridges": [], "shells": [], "port_tag": "t", "etc_netns": ["n1"],
           "pids": {"k": 7}, "agent": 9, "ready": {"k": True}, "pod_ready": {"p": True},
           "probe_detail": {"k": "ok"}, "probe_failing": {}, "full_resyncs": 1, "netpol": {"n": ["c"]},
           "stopped": ["w1"], "speakers": {"1.2.3.4": "w1"}, "faults": [], "exercise_token": "tok",
           "proxy": {"n": ["KUBE-SVC-X"]}, "state": STATE.to_dict()}
    (rec.dir / "record.json").write_text(json.dumps(old))
    back = records.load(rec.name)
    assert (back.netns, back.links, back.etc_netns, back.pids, back.agent, back.port_tag) == \
        (["n1"], ["l1"], ["n1"], {"k": 7}, 9, "t")
    assert back.sections["kube-proxy"] == {"chains": {"n": ["KUBE-SVC-X"]}, "full_resyncs": 1}
    assert back.sections["loadbalancer"] == {"speakers": {"1.2.3.4": "w1"}}
    assert back.sections["nodes"] == {"stopped": ["w1"]} and back.sections["exercise"] == {"token": "tok"}
    assert prober.status(back).detail == {"k": "ok"}


def test_a_record_of_a_later_format_is_refused_with_what_to_do():
    rec = new_record()
    data = json.loads((rec.dir / "record.json").read_text())
    (rec.dir / "record.json").write_text(json.dumps({**data, "format": records.FORMAT + 1}))
    with pytest.raises(LabError, match="not one this version of k8s-netlab reads.*`lab down` or `lab clean` with the "
                                       "version that made it"):
        records.load(rec.name)


def test_the_etc_netns_folders_go_with_their_ledger_entries(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "ETC_NETNS", tmp_path / "etc-netns")
    rec = new_record()
    rec.claim(etc_netns=("a", "b"))
    for n in ("a", "b"):
        (tmp_path / "etc-netns" / n).mkdir(parents=True)
    rec.remove_etc_netns(["a"])
    assert rec.etc_netns == ["b"] and not (tmp_path / "etc-netns" / "a").exists()
    rec.remove_etc_netns()
    assert rec.etc_netns == [] and not (tmp_path / "etc-netns" / "b").exists()


def test_lab_get_controllers_lists_the_registry_with_each_status(capsys):
    rec = new_record()
    rec.section("kube-proxy").update(chains={n.name: ["KUBE-SVC-X"] for n in STATE.nodes}, full_resyncs=1)
    rec.save()
    assert cli.main(["get", "controllers", "--lab", rec.name]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "IMAGES", "STATUS"]
    assert lines[1].split() == ["kube-proxy", "<none>", "chains:", f"{len(STATE.nodes)},", "full_resyncs:", "1"]
    assert lines[2].split() == ["kube-dns", "kube-dns", "<none>"]
    assert [line.split()[0] for line in lines[1:]] == [c.name for c in controllers.CONTROLLERS]
    assert cli.main(["get", "controllers", "--lab", rec.name, "-o", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc[0] == {"name": "kube-proxy", "images": [], "status": rec.section("kube-proxy")}


def test_the_controllers_and_the_add_on_registry_the_plan_reads_must_agree():
    from lab.controlplane import addons, kube_dns

    controllers.check()  # as registered
    without_dns = [c for c in controllers.CONTROLLERS if c.addon is not kube_dns.ADDON]
    with pytest.raises(RuntimeError, match=r"controllers run the add-ons \['ingress-nginx', 'gateway'\]"):
        controllers.check(without_dns)
    renamed = [replace(c, name="dns") if c.addon is kube_dns.ADDON else c for c in controllers.CONTROLLERS]
    with pytest.raises(RuntimeError, match="controller dns runs add-on kube-dns"):
        controllers.check(renamed)
    assert [a.image for a in addons.ADDONS] == ["kube-dns", "ingress-nginx", "envoy"]
