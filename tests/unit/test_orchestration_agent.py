"""The lab's agent, one step at a time, against the fake Host (no root): probes are scripted
(lab.node.prober.run_probes replaced), containers alive or dead by their recorded PID, and the
record lives under a temporary RUN_ROOT.

A step that changes readiness re-syncs kube-proxy (the partial update of the Services concerned)
and commits the readiness; one where only what the probes saw changes saves it without a sync; a
step whose lab is gone ends the agent.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace

import pytest

from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane.state import container_key
from lab.host import record as records
from lab.host.fake import FakeHost
from lab.host.record import LabRecord
from lab.kube_proxy import iptables
from lab.kube_proxy import sync as kube_proxy
from lab.node import prober
from lab.runtime import agent as agents
from lab.runtime import controllers
from tests.unit.golden import shipped_state


def proxy_chains(rec) -> dict:
    """kube-proxy's section of the record: node -> the chains it last wrote."""
    return rec.section("kube-proxy")["chains"]


STATE = shipped_state("services", dns={"enabled": False})   # kube-proxy syncs only: no kube-dns records to rewrite
RESTORE = ("iptables-restore", "--noflush")
PROBED = [container_key(p, c) for p, c in prober.probed(STATE)]
BACKEND = next(p for p in STATE.pods if p.name.startswith("backend-") and p.node == "worker1")
BACKEND_C = container_key(BACKEND, BACKEND.containers[0])
LONER = next(p for p in STATE.pods if p.name == "loner")
OK = "GET /healthz (port 8080) -> 200"


pytestmark = pytest.mark.usefixtures("run_root")


class Probes:
    """Scripted verdicts: every probe passes with OK unless told otherwise; what ran is kept."""

    def __init__(self):
        self.verdicts: dict[str, tuple[bool, str]] = {}
        self.ran: list[list[str]] = []

    def __call__(self, state, targets):
        keys = [container_key(p, c) for p, c in targets]
        self.ran.append(keys)
        return [self.verdicts.get(k, (not k.startswith("default/warming"), OK)) for k in keys]


@pytest.fixture
def probes(monkeypatch):
    scripted = Probes()
    monkeypatch.setattr(prober, "run_probes", scripted)
    return scripted


class Dead:
    """Ends a process: its /proc entry goes from the fake Host (lab_record made one per PID)."""

    def __init__(self, fake: FakeHost):
        self.fake = fake

    def add(self, pid: int) -> None:
        del self.fake.files[f"/proc/{pid}/stat"]


@pytest.fixture
def dead(fake) -> Dead:
    return Dead(fake)


def lab_record(fake: FakeHost, ready: dict[str, bool], details: dict[str, str] | None = None) -> LabRecord:
    """A running lab after its first sync, with these container verdicts."""
    pids = {container_key(p, c): 1000 + i for i, (p, c) in enumerate((p, c) for p in STATE.pods for c in p.containers)}
    rec = LabRecord(name=STATE.lab, state=STATE, status="running", pids=pids)
    prober.write_status(rec, ready, details or {k: OK for k in ready}, {})
    rec.dir.mkdir(parents=True)
    fake.files.update({f"/proc/{pid}/stat": f"{pid} (netexec) S 1".encode() for pid in pids.values()})  # all running
    pod_ready = prober.pod_readiness(STATE, ready, lambda key: True)
    kube_proxy.sync(rec, STATE, pod_ready, first=True)
    rec.commit(STATE, pod_ready)
    rec.save()
    fake.calls.clear()
    return rec


def all_ready() -> dict[str, bool]:
    return {k: not k.startswith("default/warming") for k in PROBED}


def due_now(agent: agents.Agent) -> None:
    for k in agent.due:
        agent.due[k] = float("-inf")


def started(rec: LabRecord) -> agents.Agent:
    """An agent that has adopted the record (its first step: no probe is due yet)."""
    agent = agents.Agent(rec.name)
    assert agent.step()
    return agent


def partial(old_pod_ready: dict[str, bool], new_pod_ready: dict[str, bool]) -> tuple[set[str], dict[str, str]]:
    """The Services a readiness change touches, and each node's partial update for it."""
    old_slices, new_slices = endpoint_slices(STATE, old_pod_ready), endpoint_slices(STATE, new_pod_ready)
    changed = kube_proxy.changed_services(STATE, old_slices, STATE, new_slices)
    return changed, {n.name: iptables.render_update(STATE, STATE, n, old_slices, new_slices, changed) for n in STATE.nodes}


def restores(fake: FakeHost) -> dict[str, str]:
    assert all(c.argv == RESTORE for c in fake.calls), [c.argv for c in fake.calls]
    netns = {n.netns: n.name for n in STATE.nodes}
    texts = {netns[c.netns]: c.input for c in fake.calls}
    assert len(texts) == len(fake.calls), "one restore per node"
    return texts


def test_a_readiness_change_syncs_the_services_concerned_and_commits(fake, probes, dead, capsys):
    rec = lab_record(fake, {**all_ready(), BACKEND_C: False})
    old_pod_ready, chains = dict(rec.pod_ready), dict(proxy_chains(rec))
    agent = started(rec)
    assert fake.calls == [] and probes.ran == [[]]
    due_now(agent)
    assert agent.step()
    assert sorted(probes.ran[-1]) == sorted(PROBED)
    saved = records.load(rec.name)
    new_pod_ready = {**old_pod_ready, BACKEND.key: True}
    assert prober.status(saved).ready == all_ready() and saved.pod_ready == new_pod_ready
    assert prober.status(saved).detail[BACKEND_C] == OK and saved.state == STATE
    changed, texts = partial(old_pod_ready, new_pod_ready)
    assert "default/backend" in changed and "default/loner" not in changed
    assert restores(fake) == texts
    new_slices = endpoint_slices(STATE, new_pod_ready)
    assert proxy_chains(saved) == {n.name: sorted(iptables.declared_chains(iptables.render(STATE, n, new_slices)))
                           for n in STATE.nodes}
    assert proxy_chains(saved) != chains
    assert f"readiness changed; synced {', '.join(sorted(changed))}" in capsys.readouterr().out


def test_a_container_leaves_its_services_after_failure_threshold_failures(fake, probes, dead):
    rec = lab_record(fake, all_ready())
    agent = started(rec)
    probes.verdicts[BACKEND_C] = (False, "GET /healthz (port 8080) -> 503")
    threshold = BACKEND.containers[0].readiness.failure_threshold
    for i in range(1, threshold + 1):
        due_now(agent)
        assert agent.step()
        saved = records.load(rec.name)
        assert prober.status(saved).detail[BACKEND_C] == "GET /healthz (port 8080) -> 503"
        if i < threshold:  # not yet: only what the probe saw is saved
            assert prober.status(saved).ready[BACKEND_C] and saved.pod_ready[BACKEND.key] and fake.calls == []
    assert not prober.status(saved).ready[BACKEND_C] and not saved.pod_ready[BACKEND.key]
    assert restores(fake) == partial(rec.pod_ready, saved.pod_ready)[1]


def test_failures_with_the_same_result_are_one_event_counted_until_a_success(fake, probes, dead):
    rec = lab_record(fake, all_ready())
    agent = started(rec)
    seen = []
    for verdict in [(False, "GET /healthz (port 8080) -> 503")] * 3 + [(False, "tcp 8080: refused"), (True, OK)]:
        probes.verdicts[BACKEND_C] = verdict
        due_now(agent)
        assert agent.step()
        seen.append(prober.status(records.load(rec.name)).failing.get(BACKEND_C))
    assert [s and s[2] for s in seen] == [1, 2, 3, 1, None]  # `lab describe`: "x3 over ...", then a new event
    first, last, _ = seen[2]
    assert first == seen[0][0] and first <= last and seen[3][0] >= last


def test_only_probe_details_changing_saves_them_without_a_sync(fake, probes, dead, monkeypatch):
    rec = lab_record(fake, all_ready())
    syncs = []
    monkeypatch.setattr(controllers, "reconcile", lambda *a, **kw: syncs.append(a) or {})
    agent = started(rec)
    before = records.load(rec.name)
    probes.verdicts[BACKEND_C] = (True, "GET /healthz (port 8080) -> 204")
    due_now(agent)
    assert agent.step()
    saved = records.load(rec.name)
    assert prober.status(saved).detail == {**prober.status(before).detail, BACKEND_C: "GET /healthz (port 8080) -> 204"}
    assert (prober.status(saved).ready, saved.pod_ready, proxy_chains(saved), saved.state) == \
        (prober.status(before).ready, before.pod_ready, proxy_chains(before), before.state)
    assert syncs == [] and fake.calls == []


def test_a_step_with_nothing_due_and_nothing_changed_writes_nothing(fake, probes, dead):
    rec = lab_record(fake, all_ready())
    agent = started(rec)
    path = rec.dir / "record.json"
    text, mtime = path.read_text(), path.stat().st_mtime_ns
    for _ in range(3):
        assert agent.step()
    assert probes.ran == [[]] * 4 and fake.calls == []
    assert path.read_text() == text and path.stat().st_mtime_ns == mtime


def test_a_dead_container_makes_its_pod_unready_without_a_probe(fake, probes, dead, capsys):
    rec = lab_record(fake, all_ready())
    agent = started(rec)
    dead.add(rec.pids[container_key(LONER, LONER.containers[0])])  # the loner has no readinessProbe: only its process counts
    assert agent.step()
    assert probes.ran == [[], []]
    saved = records.load(rec.name)
    assert saved.pod_ready == {**rec.pod_ready, LONER.key: False} and prober.status(saved).ready == prober.status(rec).ready
    changed, texts = partial(rec.pod_ready, saved.pod_ready)
    assert changed == {"default/loner"} and restores(fake) == texts
    assert "synced default/loner" in capsys.readouterr().out


def test_the_agent_syncs_from_what_lab_apply_committed_meanwhile(fake, probes, dead, monkeypatch):
    """Between the agent's look and its lock, `lab apply` removed a Service: the agent must sync
    and save over the record as it is now, not over its own stale copy."""
    rec = lab_record(fake, {**all_ready(), BACKEND_C: False})
    agent = started(rec)
    applied = replace(STATE, services=tuple(s for s in STATE.services if s.name != "sticky"))
    real_locked = agents.locked

    @contextmanager
    def apply_first(r):
        other = records.load(r.name)
        other.commit(applied, other.pod_ready)
        other.save()
        with real_locked(r):
            yield

    monkeypatch.setattr(agents, "locked", apply_first)
    due_now(agent)
    assert agent.step()
    saved = records.load(rec.name)
    assert saved.state == applied and saved.pod_ready[BACKEND.key]
    assert not any("default/sticky" in t for t in restores(fake).values())


@pytest.mark.parametrize("how", ["removed", "deleting"])
def test_the_agent_ends_when_its_lab_is_gone(fake, probes, dead, how):
    rec = lab_record(fake, all_ready())
    agent = started(rec)
    if how == "removed":
        rec.remove_dir()
    else:
        rec.status = "deleting"
        rec.save()
    due_now(agent)
    assert agent.step() is False
    assert probes.ran == [[]] and fake.calls == []  # nothing probed or synced for a lab being removed


def test_a_step_raises_its_own_errors_for_turn_to_handle(fake, probes, dead, monkeypatch):
    """Not taken for a gone lab (test_agent_errors.py has what turn() then does)."""
    rec = lab_record(fake, all_ready())
    agent = started(rec)

    def broken(state, targets):
        raise RuntimeError("a bug in the prober")

    monkeypatch.setattr(prober, "run_probes", broken)
    due_now(agent)
    with pytest.raises(RuntimeError, match="a bug in the prober"):
        agent.step()
