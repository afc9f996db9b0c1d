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
