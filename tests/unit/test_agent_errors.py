"""The agent's error policy (lab/runtime/agent.py), against the fake Host with its record in a
temporary RUN_ROOT: only a missing record or one that no longer says running ends it; any other
error of a step is logged with its traceback, and the agent goes on, backing off while it lasts."""
from __future__ import annotations

import pytest

from lab.controlplane.state import container_key
from lab.host import record as records
from lab.host.record import LabRecord
from lab.node import prober
from lab.runtime import agent as agents
from tests.unit.golden import shipped_state

STATE = shipped_state("services")


pytestmark = pytest.mark.usefixtures("run_root")


@pytest.fixture
def rec(fake, monkeypatch) -> LabRecord:
    """A running lab whose containers all run and whose probes all pass."""
    monkeypatch.setattr(prober, "run_probes", lambda state, targets: [(True, "ok")] * len(targets))
    pids = {container_key(p, c): 1000 + i for i, (p, c) in enumerate((p, c) for p in STATE.pods for c in p.containers)}
    fake.files.update({f"/proc/{pid}/stat": f"{pid} (netexec) S 1".encode() for pid in pids.values()})
    rec = LabRecord(name=STATE.lab, state=STATE, status="running", pids=pids)
    rec.dir.mkdir(parents=True)
    rec.save()
    return rec


def failing(monkeypatch, error: Exception) -> None:
    def run_probes(state, targets):
        raise error
    monkeypatch.setattr(prober, "run_probes", run_probes)


def test_a_healthy_step_waits_one_tick(fake, rec, capsys):
    agent = agents.Agent(rec.name)
    assert agent.turn() == agents.TICK
    assert agent.turn() == agents.TICK
    assert "failed" not in capsys.readouterr().out


def test_a_failing_step_is_logged_with_its_traceback_and_the_agent_goes_on(fake, rec, monkeypatch, capsys):
    agent = agents.Agent(rec.name)
    failing(monkeypatch, RuntimeError("a bug in a probe"))
    assert agent.turn() == 2 * agents.TICK
    out = capsys.readouterr().out
    assert "step failed; next try in 0.4s" in out and "Traceback (most recent call last)" in out
    assert "RuntimeError: a bug in a probe" in out
    # the same error again: one line, and a longer wait, up to RETRY_MAX
    waits = [agent.turn() for _ in range(8)]
    assert waits == sorted(waits) and waits[-1] == agents.RETRY_MAX and waits[0] == 4 * agents.TICK
    out = capsys.readouterr().out
    assert "Traceback" not in out
    assert "step failed again (9 in a row): RuntimeError: a bug in a probe; next try in 10.0s" in out
    # another error: its traceback is shown
    failing(monkeypatch, KeyError("default/web"))
    assert agent.turn() == agents.RETRY_MAX
    assert "Traceback" in capsys.readouterr().out
    # fixed: back to the tick, and the log says so
    monkeypatch.setattr(prober, "run_probes", lambda state, targets: [(True, "ok")] * len(targets))
    assert agent.turn() == agents.TICK
    assert "steps work again after 10 failed" in capsys.readouterr().out
    assert (agent.failures, agent.last_error) == (0, None)


def test_a_refused_sync_is_retried_on_the_next_step(fake, rec, capsys):
    """A transient failure of the kernel side: every restore refused for one step."""
    agent = agents.Agent(rec.name)
    fake.answer(("iptables-restore",), code=1, stderr="iptables-restore: line 3 failed")
    assert agent.turn() == 2 * agents.TICK
    assert "LabError" in capsys.readouterr().out
    assert records.load(rec.name).pod_ready == {}  # nothing committed
    fake.answers.clear()
    assert agent.turn() == agents.TICK
    unprobed = {container_key(p, c): False for p, c in prober.probed(STATE)}  # a first step probes nothing
    assert records.load(rec.name).pod_ready == prober.pod_readiness(STATE, unprobed, lambda key: True)
    assert "steps work again after 1 failed" in capsys.readouterr().out


def test_the_agent_ends_when_its_record_is_gone(fake, rec, capsys):
    agent = agents.Agent(rec.name)
    assert agent.turn() == agents.TICK
    capsys.readouterr()
    rec.remove_dir()
    assert agent.step() is False and agent.turn() is None and agent.gone()
    assert capsys.readouterr().out == ""


def test_the_agent_ends_when_its_lab_is_being_deleted(fake, rec):
    rec.status = "deleting"
    rec.save()
    assert agents.Agent(rec.name).turn() is None


def test_a_lab_removed_under_a_failing_step_ends_the_agent_quietly(fake, rec, monkeypatch, capsys):
    """`lab down` removes the files and namespaces a step is using: the step fails, the lab is gone."""
    def run_probes(state, targets):
        rec.remove_dir()
        raise FileNotFoundError(rec.dir / "sync.lock")
    monkeypatch.setattr(prober, "run_probes", run_probes)
    assert agents.Agent(rec.name).turn() is None
    assert capsys.readouterr().out == ""


def test_a_damaged_record_is_an_error_not_a_gone_lab(fake, rec, capsys):
    (rec.dir / "record.json").write_text("{not json")
    agent = agents.Agent(rec.name)
    assert not agent.gone()
    assert agent.turn() == 2 * agents.TICK
    assert "is damaged" in capsys.readouterr().out


def test_main_keeps_going_past_errors_and_exits_0_once_the_lab_is_gone(fake, rec, monkeypatch):
    calls = []

    def run_probes(state, targets):
        calls.append(len(targets))
        if len(calls) <= 2:
            raise OSError("Resource temporarily unavailable")
        if len(calls) == 4:
            rec.remove_dir()
        return [(True, "ok")] * len(targets)

    slept = []
    monkeypatch.setattr(prober, "run_probes", run_probes)
    monkeypatch.setattr(agents.time, "sleep", slept.append)
    assert agents.main([rec.name]) == 0
    assert slept == [2 * agents.TICK, 4 * agents.TICK, agents.TICK, agents.TICK]
