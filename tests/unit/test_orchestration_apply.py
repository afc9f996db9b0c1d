"""`lab apply` against the fake Host (no root): the pure parts (which pods are the same, which
fields a running lab cannot change, the object-by-object edit of the running topology) and apply()
itself with the pods' runtime replaced (lab.node.pods.create/remove record instead of wiring),
on success and with a failure injected in the middle, after which the lab must be what it was.

The fake Host keeps, per node, the set of rule chains its accepted restores leave (declared,
minus deleted): after an apply or a rollback it must be what the record says the node has.
"""
from __future__ import annotations

import re
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from lab import host
from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane.plan import plan
from lab.controlplane.state import ClusterState, container_key
from lab.errors import LabError
from lab.host import record as records
from lab.host.fake import FakeHost
from lab.host.record import LabRecord
from lab.kube_proxy import chains as kp_chains
from lab.kube_proxy import iptables
from lab.kube_proxy import sync as kube_proxy
from lab.node import pods, prober
from lab.policy import iptables as policy_rules
from lab.policy import sync as netpol
from lab.runtime import agent as agents
from lab.runtime import controllers
from lab.runtime import apply as applying
from lab.topology.load import load_topology, load_topology_text


def proxy_chains(rec) -> dict:
    """kube-proxy's section of the record: node -> the chains it last wrote."""
    return rec.section("kube-proxy")["chains"]


def policy_chains(rec) -> dict:
    """The policy controller's section of the record: node -> the chains it last wrote."""
    return rec.section("policy")["chains"]


RESTORE = ("iptables-restore", "--noflush")


def web(replicas: int) -> dict:
    probe = {"tcpSocket": {"port": 8080}, "periodSeconds": 1}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "netexec", "readinessProbe": probe,
                                                           "ports": [{"containerPort": 8080}]}]}}}}


def pod(name: str, **labels) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "netexec", "ports": [{"containerPort": 8080}]}]}}


def service(name: str, app: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080}]}}


POLICY = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "web-from-other"},
          "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "other"}}}]}]}}


def topology(replicas: int = 2, solo: bool = True, extra: bool = False, other_role: str = "a", **cluster) -> dict:
    manifests = [web(replicas), service("web", "web"), pod("other", app="other", role=other_role), POLICY]
    if solo:
        manifests += [pod("solo", app="solo"), service("solo", "solo")]
    if extra:  # a new Service: a partial sync creates its chains
        manifests.append(service("extra", "web"))
    return {"name": "ap", "cluster": {"network": "vxlan", "dns": {"enabled": False}, **cluster},
            "nodes": [{"name": "n1"}, {"name": "n2"}],
            "manifests": manifests}


def write(tmp_path: Path, name: str, doc: dict) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


class Kernel(FakeHost):
    """A fake Host that also keeps the rule chains each node's accepted restores leave, and can
    make a node slow (hold)."""

    def __init__(self):
        super().__init__()
        self.chains: dict[str, set[str]] = {}
        self.finished: list[tuple[str, str]] = []   # (namespace, input) of every program run, as they end
        self.holds: dict[str, tuple[str, str, int]] = {}
        self._ran = threading.Condition()

    def _count(self, netns: str, marker: str) -> int:
        return sum(1 for ns, text in self.finished if ns == netns and marker in text)

    def hold(self, slow: str, until: str, marker: str) -> None:
        """A slow node: programs in namespace `slow` whose input has `marker` start only once such
        a program has run in `until` (from now on)."""
        self.holds[slow] = (until, marker, self._count(until, marker))

    def run(self, argv, *, netns=None, input=None, env=None, timeout=60, check=True):
        until, marker, seen = self.holds.get(netns, (None, None, 0))
        if until and marker in str(input):
            with self._ran:
                assert self._ran.wait_for(lambda: self._count(until, marker) > seen, timeout=10)
        try:
            done = super().run(argv, netns=netns, input=input, env=env, timeout=timeout, check=check)
        finally:
            with self._ran:
                self.finished.append((netns, str(input)))
                self._ran.notify_all()
        if done.ok and tuple(argv[:1]) == ("iptables-restore",):
            declared = set(re.findall(r"^:(\S+) ", input, re.M))
            deleted = set(re.findall(r"^-X (\S+)$", input, re.M))
            with self._ran:
                self.chains[netns] = (self.chains.get(netns, set()) | declared) - deleted
        return done

    def service_chains(self, node_netns: str) -> list[str]:
        return sorted(c for c in self.chains.get(node_netns, ()) if kp_chains.is_service_chain(c))

    def policy_chains(self, node_netns: str) -> list[str]:
        return sorted(c for c in self.chains.get(node_netns, ()) if policy_rules.is_policy_chain(c))


class Pods:
    """lab.node.pods.create/remove, recording: a created pod gets PIDs, a removed one loses them."""

    def __init__(self):
        self.created: list[tuple[ClusterState, list[str]]] = []
        self.removed: list[tuple[ClusterState, list[str]]] = []
        self.fail_at: tuple[int, int] | None = None   # (create call, pod index): raise there
        self.pid = 5000

    def create(self, state, record, programs, only=None):
        chosen = list(state.pods if only is None else only)
        self.created.append((state, [p.key for p in chosen]))
        record.claim(netns=tuple(p.netns for p in chosen))
        for i, p in enumerate(chosen):
            if self.fail_at == (len(self.created), i):
                raise LabError(f"injected: CNI ADD failed for {p.key}")
            for c in p.containers:
                self.pid += 1
                record.pids[container_key(p, c)] = self.pid
                host.current().files[f"/proc/{self.pid}/stat"] = b"1 (netexec) S 1"  # alive, as the fake Host sees it

    def remove(self, state, record, gone):
        self.removed.append((state, [p.key for p in gone]))
        keys = {container_key(p, c) for p in gone for c in p.containers}
        record.netns = [n for n in record.netns if n not in {p.netns for p in gone}]
        record.pids = {k: v for k, v in record.pids.items() if k not in keys}
        return []


@pytest.fixture(autouse=True)
def sandbox(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "RUN_ROOT", tmp_path / "run")
    monkeypatch.setattr(agents, "alive", lambda pid: True)


@pytest.fixture
def kernel():
    with host.using(Kernel()) as k:
        yield k


@pytest.fixture
def fake_pods(monkeypatch) -> Pods:
    recorder = Pods()
    monkeypatch.setattr(pods, "create", recorder.create)
    monkeypatch.setattr(pods, "remove", recorder.remove)
    monkeypatch.setattr(prober, "first_round", lambda state: (
        {container_key(p, c): True for p, c in prober.probed(state)},
        {container_key(p, c): "tcp 8080: connected" for p, c in prober.probed(state)}, {}))
    return recorder


def running(tmp_path: Path, kernel: Kernel, fake_pods: Pods, doc: dict) -> LabRecord:
    """A lab as `lab up` leaves it: pods started, first syncs done, state committed, saved."""
    path = write(tmp_path, "lab.yaml", doc)
    topo = load_topology(path)
    state = plan(topo, source=path)
    rec = LabRecord(name=state.lab, state=state, status="running")
    rec.dir.mkdir(parents=True)
    applying.save_topology(rec, topo)
    pods.create(state, rec, controllers.programs())
    ready = {container_key(p, c): True for p, c in prober.probed(state)}
    prober.write_status(rec, ready, {k: "tcp 8080: connected" for k in ready}, {})
    pod_ready = prober.pod_readiness(state, ready, lambda key: True)
    with records.locked(rec):
        kube_proxy.sync(rec, state, pod_ready, first=True)
        netpol.sync(rec, state)
        rec.commit(state, pod_ready)
        rec.save()
    kernel.calls.clear()
    fake_pods.created.clear()
    return rec


def assert_rules_match_the_record(kernel: Kernel, rec: LabRecord) -> None:
    """What each node has is what the record says, and what a full sync of its state declares."""
    slices = endpoint_slices(rec.state, rec.pod_ready)
    for n in rec.state.nodes:
        assert kernel.service_chains(n.netns) == proxy_chains(rec)[n.name], n.name
        assert proxy_chains(rec)[n.name] == sorted(iptables.declared_chains(iptables.render(rec.state, n, slices))), n.name
        assert kernel.policy_chains(n.netns) == policy_chains(rec)[n.name], n.name
        assert policy_chains(rec)[n.name] == sorted(policy_rules.declared_chains(policy_rules.render(rec.state, n))), n.name


# --- the pure parts ---

def test_a_relabelled_pod_is_the_same_pod_anything_else_makes_a_new_one():
    state = plan(load_topology_text(yaml.safe_dump(topology())))
    other = next(p for p in state.pods if p.name == "other")
    assert applying._same_pod(other, replace(other, labels=(("app", "other"), ("role", "b"))))
    assert not applying._same_pod(other, replace(other, ip="10.244.9.9"))
    assert not applying._same_pod(other, replace(other, node="n2"))
    c = other.containers[0]
    assert not applying._same_pod(other, replace(other, containers=(replace(c, image="pause"),)))
    assert not applying._same_pod(other, replace(other, containers=(replace(c, env=(("A", "1"),)),)))


def test_every_fixed_field_is_a_field_of_the_state():
    state = plan(load_topology_text(yaml.safe_dump(topology())))
    for f in applying.FIXED:
        getattr(state, f)


@pytest.mark.parametrize("edit,fields", [
    ({"cluster": {"network": "host-gw"}}, "network"),
    ({"cluster": {"proxy": "nftables"}}, "proxy"),
    ({"cluster": {"podCIDR": "10.200.0.0/16"}}, "pod_cidr, "),
    ({"cluster": {"serviceCIDR": "10.100.0.0/16"}}, "service_cidr"),
    ({"cluster": {"cni": "ptp"}}, "cni"),
    ({"nodes": [{"name": "n1"}, {"name": "n2"}, {"name": "n3"}]}, "nodes"),
    ({"hosts": [{"name": "internet"}]}, "hosts"),
    ({"underlay": {"subnet": "172.19.0.0/24"}}, "underlay_subnet"),
])
def test_what_a_running_lab_cannot_change_is_refused_before_anything_runs(tmp_path, kernel, fake_pods, edit, fields):
    rec = running(tmp_path, kernel, fake_pods, topology())
    before = (rec.dir / "record.json").read_text()
    doc = topology(replicas=3)
    for key, value in edit.items():
        doc[key] = {**doc.get(key, {}), **value} if isinstance(value, dict) else value
    with pytest.raises(LabError, match=f"lab apply cannot change .*{fields}.*`lab down ap`"):
        applying.apply(write(tmp_path, "changed.yaml", doc))
    assert kernel.calls == [] and fake_pods.created == [] and fake_pods.removed == []
    assert (rec.dir / "record.json").read_text() == before


def test_a_lab_that_is_not_running_is_refused(tmp_path, kernel, fake_pods):
    rec = running(tmp_path, kernel, fake_pods, topology())
    rec.status = "deleting"
    rec.save()
    with pytest.raises(LabError, match="lab ap is deleting, not running"):
        applying.apply(write(tmp_path, "more.yaml", topology(replicas=3)))
    assert kernel.calls == [] and fake_pods.created == []


# --- lab apply -f: objects into the running topology ---

def objects_file(tmp_path: Path, *objs: dict) -> str:
    path = tmp_path / "objects.yaml"
    path.write_text(yaml.safe_dump_all(objs, sort_keys=False))
    return str(path)


def manifests(topo) -> dict[tuple[str, str], dict]:
    dumped = topo.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return {(m["kind"], m["metadata"]["name"]): m for m in dumped["manifests"]}


def test_edited_replaces_objects_by_kind_namespace_and_name_and_adds_new_ones(tmp_path, kernel, fake_pods):
    running(tmp_path, kernel, fake_pods, topology())
    topo = applying.edited("ap", objects_file(tmp_path, web(5), service("extra", "web")), delete=False)
    got = manifests(topo)
    assert got[("Deployment", "web")]["spec"]["replicas"] == 5
    assert ("Service", "extra") in got and ("Pod", "solo") in got and ("Service", "web") in got
    assert len(got) == len(topology()["manifests"]) + 1  # replaced, not added twice
    assert topo.name == "ap"


def test_edited_deletes_objects_and_refuses_to_delete_what_is_not_there(tmp_path, kernel, fake_pods):
    running(tmp_path, kernel, fake_pods, topology())
    topo = applying.edited(None, objects_file(tmp_path, pod("solo"), service("solo", "solo")), delete=True)
    assert ("Pod", "solo") not in manifests(topo) and ("Service", "solo") not in manifests(topo)
    assert ("Pod", "other") in manifests(topo)
    with pytest.raises(LabError, match="not found in lab ap: Pod default/ghost"):
        applying.edited("ap", objects_file(tmp_path, pod("ghost"), pod("solo")), delete=True)


@pytest.mark.parametrize("text,error", [
    ("- just: a list\n", "every document must be a Kubernetes object"),
    ("kind: Pod\n", "every document must be a Kubernetes object"),
    ("kind: [unclosed\n", "not valid YAML"),
])
def test_edited_refuses_what_is_not_kubernetes_objects(tmp_path, kernel, fake_pods, text, error):
    running(tmp_path, kernel, fake_pods, topology())
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(LabError, match=error):
        applying.edited("ap", str(path), delete=False)


def test_an_edit_is_validated_like_a_topology_file(tmp_path, kernel, fake_pods):
    running(tmp_path, kernel, fake_pods, topology())
    broken = service("broken", "web")
    broken["spec"]["ports"] = [{"port": 80, "targetPort": 8080, "protocol": "ICMP"}]
    with pytest.raises(Exception, match="ICMP|protocol"):
        applying.edited("ap", objects_file(tmp_path, broken), delete=False)


# --- apply() ---

def test_apply_replaces_the_changed_pods_resyncs_and_commits(tmp_path, kernel, fake_pods):
    rec = running(tmp_path, kernel, fake_pods, topology(replicas=2))
    old = rec.state
    path = write(tmp_path, "next.yaml", topology(replicas=3, solo=False, other_role="b"))
    change = applying.apply(path)
    saved = records.load("ap")
    new = saved.state
    born = [p.key for p in new.pods if p.key not in {q.key for q in old.pods}]
    assert len(born) == 1 and born[0].startswith("default/web-")
    assert change.added == tuple(born) and change.removed == ("default/solo",)
    assert set(change.services) == {"default/web", "default/solo"}
    assert str(change) == "1 pods created, 1 pods deleted, 2 Services re-synced"
    # pods: the relabelled one stays (same IP, same PID), the gone one removed, the new one created
    assert fake_pods.removed == [(old, ["default/solo"])]
    assert fake_pods.created == [(new, born)]
    assert new.pods[[p.key for p in new.pods].index("default/other")].labels == (("app", "other"), ("role", "b"))
    assert saved.pids["default/other/c"] == rec.pids["default/other/c"]
    # committed: the new state, readiness with the new pod's first round, the new topology
    assert saved.pod_ready == {p.key: True for p in new.pods}
    assert prober.status(saved).ready == {container_key(p, c): True for p, c in prober.probed(new)}
    assert {k.split("/")[1] for k in prober.status(saved).ready} == {p.name for p in new.pods if p.name.startswith("web-")}
    assert prober.status(saved).detail[f"{born[0]}/web"] == "tcp 8080: connected"
    assert yaml.safe_load(host.read_text(saved.dir / applying.TOPOLOGY))["manifests"][0]["spec"]["replicas"] == 3
    # rules: kube-proxy's partial update of the two Services, then every policy chain, per node
    old_slices, new_slices = endpoint_slices(old, rec.pod_ready), endpoint_slices(new, saved.pod_ready)
    netns = {n.netns: n for n in new.nodes}
    for ns, n in netns.items():
        texts = [c.input for c in kernel.ran(*RESTORE) if c.netns == ns]
        assert texts == [iptables.render_update(old, new, n, old_slices, new_slices, set(change.services)),
                         policy_rules.render(new, n, frozenset(policy_chains(rec)[n.name]))]
    runs = [c for c in kernel.calls if c.kind == "run"]
    assert {c.netns for c in runs} <= set(netns) and len(runs) == 2 * len(netns)
    # the files: the removed pod's resolv.conf folder, the new topology
    assert [(c.kind, *c.argv) for c in kernel.calls if c.kind != "run"] == [
        ("remove", "/etc/netns/ap-default-solo"), ("write", str(rec.dir / applying.TOPOLOGY))]
    assert_rules_match_the_record(kernel, saved)


def test_applying_the_same_file_again_changes_nothing(tmp_path, kernel, fake_pods):
    rec = running(tmp_path, kernel, fake_pods, topology())
    path = write(tmp_path, "lab.yaml", topology())
    change = applying.apply(path)
    assert change.added == change.removed == change.services == ()
    assert fake_pods.created == [(rec.state, [])] and fake_pods.removed == [(rec.state, [])]
    # kube-proxy runs nothing; the policies are rewritten whole (they always are)
    runs = [c.input for c in kernel.calls if c.kind == "run"]
    assert runs == [policy_rules.render(rec.state, n, frozenset(policy_chains(rec)[n.name])) for n in rec.state.nodes]
    assert records.load("ap").state == rec.state


def inject(where: str, kernel: Kernel, fake_pods: Pods, monkeypatch, state: ClusterState) -> None:
    """Make `lab apply` fail at `where`."""
    if where == "pods":  # the second new pod fails: the first is started, the others never are
        fake_pods.fail_at = (1, 1)
    elif where == "policies":  # the policy sync fails before any restore
        real, calls = netpol.sync, []

        def fails_once(rec, st):
            calls.append(st)
            if len(calls) == 1:
                raise LabError("injected: the policy restore was refused")
            return real(rec, st)

        monkeypatch.setattr(netpol, "sync", fails_once)
    else:  # "kube-proxy on n1", "policy on n2", ...: that node refuses its restore
        what, node = where.split(" on ")
        refusing = state.node(node).netns
        if what == "kube-proxy":  # the partial update and the full one after it
            kernel.answer(("iptables-restore",), code=1, stderr="injected: no chain", netns=refusing, times=2)
        else:  # its kube-proxy update goes in, its policy rules are refused
            kernel.answer(("iptables-restore",), times=1, netns=refusing)
            kernel.answer(("iptables-restore",), code=1, stderr="injected: bad rule", netns=refusing, times=1)
        if node == "n1":  # n1 answers last: n2 has taken the change by then
            kernel.hold(refusing, until=state.node("n2").netns, marker="KUBE-" if what == "kube-proxy" else "LAB-NETPOL")


@pytest.mark.parametrize("where", [
    "pods",
    "policies",
    "kube-proxy on n2",
    "policy on n2",
    "kube-proxy on n1",  # n2's new chains are recorded even though n1 refused: the rollback removes them
    "policy on n1",
])
def test_a_failure_in_the_middle_rolls_back_to_the_old_state(tmp_path, kernel, fake_pods, monkeypatch, where):
    rec = running(tmp_path, kernel, fake_pods, topology(replicas=2))
    old, was = rec.state, (prober.status(rec).ready, prober.status(rec).detail, dict(rec.pod_ready), set(rec.pids))
    topology_before = host.read_text(rec.dir / applying.TOPOLOGY)
    inject(where, kernel, fake_pods, monkeypatch, old)
    syncs = []
    real_sync = kube_proxy.sync

    def spy(record, state, pod_ready, *, first=False):
        syncs.append((state, first))
        return real_sync(record, state, pod_ready, first=first)

    monkeypatch.setattr(kube_proxy, "sync", spy)
    path = write(tmp_path, "bigger.yaml", topology(replicas=4, solo=False, extra=True))
    with pytest.raises(LabError, match=r"injected.*\n.*lab apply failed; the lab was rolled back to what it was"):
        applying.apply(path)
    saved = records.load("ap")
    new = plan(load_topology(path), source=path, previous=old)
    born = [p.key for p in new.pods if p.key not in {q.key for q in old.pods}]
    assert len(born) == 2
    # the record: the old state and readiness, the same pods (the removed one made again)
    assert saved.state == old and saved.status == "running"
    assert (prober.status(saved).ready, prober.status(saved).detail, saved.pod_ready, set(saved.pids)) == was
    assert host.read_text(saved.dir / applying.TOPOLOGY) == topology_before
    assert not any(n.startswith(tuple(f"ap-{k.replace('/', '-')}" for k in born)) for n in saved.netns)
    # the pods: solo removed then made again; the new ones removed (every one had its netns claimed)
    assert fake_pods.removed == [(old, ["default/solo"]), (new, born)]
    assert fake_pods.created == [(new, born), (old, ["default/solo"])]
    # kube-proxy: the old state written in full on every node, and the node rules are the record's
    assert syncs[-1] == (old, True)
    assert syncs[:-1] == ([] if where == "pods" else [(new, False)])
    if where == "policy on n2":  # n1 had taken new policy chains: the rollback deleted them
        assert any("\n-X LAB-NP-" in c.input for c in kernel.ran(*RESTORE) if c.netns == old.node("n1").netns)
    assert_rules_match_the_record(kernel, saved)


def test_a_failed_rollback_says_so_and_how_to_remove_the_lab(tmp_path, kernel, fake_pods, monkeypatch):
    running(tmp_path, kernel, fake_pods, topology(replicas=2))
    inject("policies", kernel, fake_pods, monkeypatch, None)
    real_remove = fake_pods.remove

    def remove_fails_on_rollback(state, record, gone):
        errors = real_remove(state, record, gone)
        return errors + (["injected: CNI DEL failed"] if len(fake_pods.removed) == 2 else [])

    monkeypatch.setattr(pods, "remove", remove_fails_on_rollback)
    with pytest.raises(LabError, match=r"(?s)injected: the policy restore.*rolling back failed too: "
                                       r"injected: CNI DEL failed.*`lab down ap` removes the lab"):
        applying.apply(write(tmp_path, "bigger.yaml", topology(replicas=3)))
    assert records.load("ap").state == plan(load_topology(str(tmp_path / "lab.yaml")), source=str(tmp_path / "lab.yaml"))
