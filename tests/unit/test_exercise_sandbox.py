"""A submission's confinement, as planned (no root): which `lab` commands the broker admits and how
it runs them, the sandbox's command line, the confined exec, and the client's requests (files are
read by the client, as the student; the grader gets their contents on stdin)."""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from lab.exercise import client, sandbox
from lab.exercise.sandbox import Refused, admit
from lab.runtime import inside

LAB, EX = "exhgw", "hgw"


def test_the_commands_honest_solutions_use_are_admitted():
    a = admit(["--lab", LAB, "exec", "node/node1", "--", "ip", "route", "replace", "10.244.1.0/24", "via", "172.18.0.3"],
              LAB, EX)
    assert (a.kind, a.args, a.command) == ("exec", ["--lab", LAB, "exec", "node/node1"],
                                            ["ip", "route", "replace", "10.244.1.0/24", "via", "172.18.0.3"])
    assert admit(["exec", "-l", LAB, "client", "-c", "app", "--", "curl", "-s", "x"], LAB, EX).args == \
        ["--lab", LAB, "exec", "client", "-c", "app"]
    assert admit(["-l", LAB, "apply", "-f", "-"], LAB, EX).args == ["--lab", LAB, "apply", "-f", "-"]
    assert admit(["delete", "-f", "-", "--ignore-not-found"], LAB, EX).kind == "delete"
    assert admit(["get", "pods", "-o", "wide", "-A"], LAB, EX).args == ["--lab", LAB, "get", "pods", "-o", "wide", "-A"]
    assert admit(["exercise", "answer", "which", "eth0"], LAB, EX).args == \
        ["--lab", LAB, "exercise", "answer", "which", "eth0", "-e", EX]
    assert admit(["--lab=" + LAB, "check", "--timeout", "2"], LAB, EX).kind == "check"


@pytest.mark.parametrize("argv, why", [
    (["exercise", "solve"], "answer, check, hint, status only"),
    (["exercise", "grade", "--format", "gradescope"], "not open to a submission"),
    (["exercise", "answer", "which", "x", "-e", "other"], "exercise hgw only"),
    (["--lab", "other", "get", "pods"], "lab exhgw only"),
    (["down", LAB], "`lab down` is not open"),
    (["fault", "clear"], "`lab fault` is not open"),
    (["up", "/autograder/source/x.yaml"], "`lab up` is not open"),
    (["apply", "/autograder/source/k8s-netlab/exercises/x/topology.yaml"], "lab apply FILE (a topology"),
    (["apply", "-f", "/autograder/source/secret.yaml"], "objects come on stdin"),
    (["check", "--junit", "/autograder/results/results.json"], "option --junit is not open"),
    (["check", "--json=/autograder/results/results.json"], "option --json is not open"),
    (["graph", "--out", "/etc/passwd"], "`lab graph` is not open"),
    (["exec", "node/node1"], "lab exec POD"),
    (["exec", "--confine", "0:0:/proc/1/ns/mnt:/proc/1/ns/pid", "node/node1", "--", "sh"], "option --confine"),
    ([], "say which lab command"),
])
def test_everything_else_is_refused(argv, why):
    with pytest.raises(Refused) as caught:
        admit(argv, LAB, EX)
    assert why in str(caught.value)


@pytest.mark.parametrize("objects", [
    "kind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: c, image: netexec, command: [sh, -c, 'cat /etc/shadow']}]}\n",
    "kind: Deployment\nmetadata: {name: x}\nspec: {template: {spec: {containers: [{name: c, image: alpine, args: [x]}]}}}\n",
    "kind: Service\nmetadata: {name: ok}\n---\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: c, image: "
    "netexec, readinessProbe: {exec: {command: [touch, /x]}}}]}\n",
    "kind: Pod\nmetadata: {name: x}\nspec: {initContainers: [{name: i, image: netexec, lifecycle: {postStart: {}}}], "
    "containers: [{name: c, image: netexec}]}\n",
])
def test_objects_that_would_run_a_program_as_root_are_refused(objects: str):
    with pytest.raises(Refused, match="may not make the lab run programs of their own"):
        admit(["apply", "-f", "-"], LAB, EX, objects)


def test_plain_objects_are_applied():
    pod = "kind: Pod\nmetadata: {name: client}\nspec: {containers: [{name: app, image: netexec}]}\n"
    assert admit(["apply", "-f", "-"], LAB, EX, pod).kind == "apply"
    assert admit(["apply", "-f", "-"], LAB, EX, "not: [valid").kind == "apply"   # lab apply reports it
    assert admit(["delete", "-f", "-"], LAB, EX, pod.replace("netexec", "netexec, command: [x]")).kind == "delete"


def test_the_sandbox_command_line():
    who = sandbox.Student("lab-student", 995, 995)
    argv = sandbox.script_argv(who, "/run/x/work", "/sub", ["/run/k8s-netlab/exercises", "/autograder"], ["bash", "s.sh"])
    assert argv[:9] == ["unshare", "--mount", "--pid", "--net", "--fork", "--kill-child", "--mount-proc",
                        "--propagation", "private"]
    assert argv[argv.index(sandbox.INIT) + 1:] == ["lab-sandbox", "/run/x/work", "/sub", "995", "995", str(sandbox.PIDS),
                                                   sandbox.SCRATCH, "/run/k8s-netlab/exercises", "/autograder", "--",
                                                   "bash", "s.sh"]
    assert "--no-new-privs" in sandbox.INIT and "--bounding-set=-all" in sandbox.INIT and "--nproc" in sandbox.INIT


def test_hidden_paths_cover_each_path_once():
    assert sandbox.hidden_paths(["/autograder/source/k8s-netlab/exercises", "/autograder", None, "/run/k8s-netlab/exercises",
                                 "/run/k8s-netlab/exercises/"]) == ["/autograder", "/run/k8s-netlab/exercises"]


def test_a_submission_never_runs_as_root():
    with pytest.raises(Exception, match="root"):
        sandbox.student("root")
    with pytest.raises(Exception, match="useradd"):
        sandbox.student("no-such-user-here")
    with pytest.raises(Exception, match="never run as root"):
        sandbox.exec_confinement("0:0:/a:/b")


def test_a_confined_exec_joins_the_submission_and_keeps_network_capabilities_only(tmp_path: Path):
    class Rec:
        dir = tmp_path
        cgroups = ()  # not proxy ebpf
        state = type("State", (), {"network": "host-gw"})  # no daemons of its own

    uts = tmp_path / "uts"
    uts.write_text("")
    argv = inside.argv(Rec(), "exhgw-node1", uts, "node1", ["ip", "route"], sandbox.exec_confinement("995:995:/m:/p"))
    assert argv[:6] == ["nsenter", f"--uts={uts}", "--mount=/m", "--pid=/p", "--", "ip"]
    assert argv[6:9] == ["netns", "exec", "exhgw-node1"]
    runner = argv[9:argv.index("--", 9) + 1]
    assert runner[:3] == ["setpriv", "--reuid=995", "--regid=995"]
    caps = "-all,+net_admin,+net_raw,+net_bind_service"
    assert f"--bounding-set={caps}" in runner and f"--ambient-caps={caps}" in runner
    assert argv[-2:] == ["ip", "route"]
    assert inside.argv(Rec(), "n", tmp_path / "none", "n", ["true"]) == ["ip", "netns", "exec", "n", "true"]


def test_the_client_sends_file_contents_never_paths(tmp_path: Path, monkeypatch):
    (tmp_path / "a.yaml").write_text("kind: Pod\n")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "b.yml").write_text("kind: Service\n")
    (tmp_path / "dir" / "notes.txt").write_text("not an object\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO("kind: ConfigMap\n"))
    args, stdin = client._request(["-l", LAB, "apply", "-f", str(tmp_path / "a.yaml"), f"--filename={tmp_path / 'dir'}"])
    assert args == ["-l", LAB, "apply", "-f", "-"] and stdin == "kind: Pod\n\n---\nkind: Service\n"
    args, stdin = client._request(["delete", "-f", "-"])
    assert args == ["delete", "-f", "-"] and stdin == "kind: ConfigMap\n"
    assert admit(client._request(["apply", "-f", str(tmp_path / "a.yaml")])[0], LAB, EX).args[-2:] == ["-f", "-"]


def test_the_client_speaks_to_the_broker_socket(tmp_path: Path, monkeypatch, capsys):
    import socket
    import threading

    path = str(tmp_path / "s")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    seen = {}

    def serve():
        conn, _ = server.accept()
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
        seen.update(json.loads(data))
        conn.sendall(json.dumps({"code": 3, "stdout": "out\n", "stderr": "err\n"}).encode())
        conn.close()

    t = threading.Thread(target=serve)
    t.start()
    monkeypatch.setenv("LAB_BROKER", path)
    monkeypatch.setattr(sys, "argv", ["lab", "get", "pods"])
    assert client.main() == 3
    t.join()
    assert seen == {"argv": ["get", "pods"], "stdin": ""}
    assert capsys.readouterr() == ("out\n", "err\n")
    server.close()
