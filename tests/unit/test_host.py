"""The effect seam: the real Host checks every exit status and turns failures into LabError with
the program's words; the fake records calls and answers from its table."""
from __future__ import annotations

import pytest

from lab import host
from lab.errors import LabError
from lab.host.fake import FakeHost


def test_a_failing_program_is_an_error_with_its_stderr():
    with pytest.raises(LabError, match=r"sh -c echo nope >&2; exit 3 failed \(exit 3\): nope"):
        host.run(["sh", "-c", "echo nope >&2; exit 3"])
    done = host.run(["sh", "-c", "exit 3"], check=False)
    assert (done.code, done.ok) == (3, False)


def test_a_missing_program_says_how_to_install_it():
    with pytest.raises(LabError, match="is not installed"):
        host.run(["no-such-program-k8s-netlab"])
    assert host.run(["no-such-program-k8s-netlab"], check=False).code == 127


def test_a_timeout_is_an_error_or_a_code_of_none():
    with pytest.raises(LabError, match="did not finish within 0.2s"):
        host.run(["sleep", "5"], timeout=0.2)
    assert host.run(["sleep", "5"], timeout=0.2, check=False).code is None


def test_input_and_output_as_text_or_bytes():
    assert host.output(["cat"], input="hi") == "hi"
    assert host.run(["cat"], input=b"\xffhi").stdout.endswith("hi")


def test_the_fake_records_and_answers():
    fake = FakeHost()
    fake.answer(("ip", "-j", "route"), stdout="[]")
    fake.answer(("iptables-restore",), code=1, stderr="line 3 failed")
    with host.using(fake):
        assert host.output(["ip", "-j", "route", "show"]) == "[]"
        host.ip_batch(["link set lo up"], netns="x")
        host.sysctl("x", {"net.ipv4.ip_forward": "1"})
        with pytest.raises(LabError, match="network policy rules on node a was refused"):
            host.restore("x", ["iptables-restore", "--noflush"], "*filter\nCOMMIT\n", "network policy rules on node a")
        assert host.spawn(["sleep", "1"]).pid >= 40000
    assert [c.kind for c in fake.calls] == ["run", "run", "sysctl", "run", "spawn"]
    assert fake.ran("ip", "-n", "x", "-batch")[0].input == "link set lo up\n"
    assert host.current() is not fake  # the real one is back


def test_a_record_turns_its_state_into_a_dict_once_per_state(run_root, monkeypatch):
    """A ClusterState is frozen: saving the record again (a claim, a status) reuses its dict;
    a new state (commit) is written as itself."""
    from dataclasses import replace

    from lab.controlplane.state import ClusterState
    from lab.host import record as records
    from tests.unit.golden import shipped_state

    state = shipped_state("services")
    made = []
    real = ClusterState.to_dict
    monkeypatch.setattr(ClusterState, "to_dict", lambda self: made.append(self) or real(self))
    rec = records.LabRecord.create(state)
    rec.claim(netns=("a",))
    rec.status = "running"
    rec.save()
    assert made == [state]
    newer = replace(state, lab=state.lab)  # equal, but another object: written afresh
    rec.commit(newer, {})
    rec.save()
    assert len(made) == 2 and made[1] is newer
    assert records.load(state.lab).state == state and records.load(state.lab).netns == ["a"]
