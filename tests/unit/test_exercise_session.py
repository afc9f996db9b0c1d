"""The exercise session file: the last one removed takes its folder along, so a stopped exercise
leaves nothing in /run/k8s-netlab (the suite's leak check holds every run to that)."""
from __future__ import annotations

import pytest

from lab.exercise import session

pytestmark = pytest.mark.usefixtures("run_root")


def test_the_sessions_folder_goes_with_its_last_session():
    a = session.Session(exercise="01-route", path="/x/01-route", lab="ex01-route", token="t1")
    b = session.Session(exercise="06-ip-forward", path="/x/06", lab="ex06", token="t2")
    a.save()
    b.save()
    assert sorted(session.names()) == ["01-route", "06-ip-forward"]
    a.remove()
    assert session.folder().is_dir() and session.names() == ["06-ip-forward"]
    b.remove()
    assert not session.folder().exists()
    b.remove()  # twice is fine


def test_options_may_come_between_the_action_and_its_arguments(capsys):
    from lab import cli

    assert cli.main(["exercise", "answer", "-e", "nope", "which", "eth0"]) == 1
    assert "exercise 'nope' is not started" in capsys.readouterr().err  # parsed, not "unrecognized arguments"


def test_the_spec_is_sealed_root_only_without_solutions(tmp_path):
    folder = tmp_path / "07-race"
    (folder / ".solution").mkdir(parents=True)
    (folder / "exercise.yaml").write_text("title: t\n")
    (folder / "README.md").write_text("# t\n")
    (folder / "solution.sh").write_text("fix\n")
    (folder / "SOLUTION.md").write_text("why\n")
    (folder / ".solution" / "policies.yaml").write_text("kind: NetworkPolicy\n")
    s = session.Session(exercise="07-race", path=str(folder), lab="ex07", token="t")
    session.seal(s)
    s.save()
    sealed = session.folder() / "sealed" / "07-race"
    assert s.sealed == str(sealed) and sorted(p.name for p in sealed.iterdir()) == ["README.md", "exercise.yaml"]
    assert oct(session.folder().stat().st_mode & 0o777) == "0o700"
    assert oct((session.folder() / "sealed").stat().st_mode & 0o777) == "0o700"
    assert not s.spec_changed()
    (folder / "exercise.yaml").write_text("title: free marks\ntasks: []\n")
    assert s.spec_changed()                                   # reported as a note; the sealed copy is graded
    assert (sealed / "exercise.yaml").read_text() == "title: t\n"
    s.remove()
    assert not sealed.exists() and not session.folder().exists()


def test_lab_down_ends_the_exercises_on_that_lab():
    session.Session(exercise="a", path="/x/a", lab="exa", token="t").save()
    session.Session(exercise="b", path="/x/b", lab="exb", token="t").save()
    assert session.ended_with("exa") == ["a"]
    assert session.names() == ["b"] and session.ended_with("nothing") == []


def test_a_record_of_another_version_is_an_error_not_a_traceback():
    import json

    from lab.errors import LabError
    from lab.host import record as records

    (records.RUN_ROOT / "other").mkdir(parents=True)
    (records.RUN_ROOT / "other" / "record.json").write_text(json.dumps({"state": {"lab": "other"}, "from_the_future": 1}))
    with pytest.raises(LabError, match="not one this version of k8s-netlab reads"):
        records.load("other")
    with pytest.raises(LabError, match="left behind by a crashed run"):
        records.ensure_free("other")
