"""`lab apply -f` / `lab delete -f` as kubectl: objects read from files, folders (-R) and stdin,
errors that name the file, and kubectl's line per object (created / configured / unchanged /
deleted), against a lab record on disk (no root, nothing wired)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from lab import cli
from lab.controlplane.plan import plan
from lab.errors import LabError, TopologyError
from lab.host.record import LabRecord
from lab.runtime import apply as applying
from lab.topology.load import load_topology

DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
          "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                   "template": {"metadata": {"labels": {"app": "web"}},
                                "spec": {"containers": [{"name": "web", "image": "netexec",
                                                         "ports": [{"containerPort": 8080}]}]}}}}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}
DENY = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny-all"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
NOBODY = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "nobody"},
          "spec": {"podSelector": {"matchLabels": {"app": "ghost"}}, "policyTypes": ["Ingress"]}}


def dump(path: Path, *objs: dict) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(objs, sort_keys=False))
    return str(path)


def kinds(items) -> list[tuple[str, str]]:
    return [(i.obj["kind"], i.obj["metadata"]["name"]) for i in items]


# --- reading ---

def test_a_folder_gives_its_yaml_yml_and_json_files_in_order_and_only_its_own_without_recursive(tmp_path):
    dump(tmp_path / "app" / "b-svc.yml", SERVICE)
    dump(tmp_path / "app" / "a-deploy.yaml", DEPLOY)
    (tmp_path / "app" / "c-policy.json").write_text(json.dumps(DENY, indent="\t"))  # tabs: JSON, not YAML
    (tmp_path / "app" / "README.md").write_text("not a manifest")
    dump(tmp_path / "app" / "nested" / "d.yaml", NOBODY)
    assert kinds(applying.read_objects([str(tmp_path / "app")])) == \
        [("Deployment", "web"), ("Service", "web"), ("NetworkPolicy", "deny-all")]
    assert kinds(applying.read_objects([str(tmp_path / "app")], recursive=True)) == \
        [("Deployment", "web"), ("Service", "web"), ("NetworkPolicy", "deny-all"), ("NetworkPolicy", "nobody")]


def test_several_f_options_and_stdin_are_read_in_order(tmp_path):
    one = dump(tmp_path / "one.yaml", DEPLOY)
    stdin = io.StringIO(yaml.safe_dump_all([SERVICE, DENY]))
    items = applying.read_objects([one, "-"], stdin=stdin)
    assert kinds(items) == [("Deployment", "web"), ("Service", "web"), ("NetworkPolicy", "deny-all")]
    assert [i.file for i in items] == [one, "<stdin>", "<stdin>"]
    assert kinds(applying.read_objects(["-"], stdin=io.StringIO(json.dumps(SERVICE)))) == [("Service", "web")]


def test_lists_and_kind_list_give_their_items(tmp_path):
    path = dump(tmp_path / "list.yaml", {"apiVersion": "v1", "kind": "List", "items": [DEPLOY, SERVICE]})
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump([DENY]))
    assert kinds(applying.read_objects([path, str(tmp_path / "plain.yaml")])) == \
        [("Deployment", "web"), ("Service", "web"), ("NetworkPolicy", "deny-all")]


@pytest.mark.parametrize("name,text,error", [
    ("bad.yaml", "kind: [unclosed\n", r"bad\.yaml: not valid YAML"),
    ("bad.json", "{\"kind\": ", r"bad\.json: not valid JSON"),
    ("noname.yaml", "apiVersion: v1\nkind: Service\nmetadata: {}\n", r"noname\.yaml:1: every document must be"),
    ("second.yaml", f"{yaml.safe_dump(SERVICE)}---\njust: text\n", r"second\.yaml:\d+: every document must be"),
])
def test_errors_name_the_file(tmp_path, name, text, error):
    (tmp_path / name).write_text(text)
    with pytest.raises(LabError, match=error):
        applying.read_objects([str(tmp_path / name)])


def test_a_missing_path_and_an_empty_folder_are_errors(tmp_path):
    with pytest.raises(LabError, match='the path ".*nowhere.yaml" does not exist'):
        applying.read_objects([str(tmp_path / "nowhere.yaml")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(LabError, match="no objects passed"):
        applying.read_objects([str(tmp_path / "empty")])


# --- kubectl's names and lines ---

def test_object_names_are_kubectls():
    assert applying.object_name(DEPLOY) == "deployment.apps/web"
    assert applying.object_name(SERVICE) == "service/web"
    assert applying.object_name(DENY) == "networkpolicy.networking.k8s.io/deny-all"
    assert applying.outcome(None, SERVICE) == "created"
    assert applying.outcome(SERVICE, dict(SERVICE)) == "unchanged"
    assert applying.outcome(SERVICE, {**SERVICE, "spec": {}}) == "configured"


@pytest.fixture
def lab_on_disk(tmp_path, run_root):
    """A running lab's record and topology as `lab up` saves them (nothing wired)."""
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump({"name": "objs", "nodes": [{"name": "n1"}], "manifests": [DEPLOY, SERVICE]}))
    topo = load_topology(path)
    rec = LabRecord(name="objs", state=plan(topo, source=str(path)), status="running")
    rec.dir.mkdir(parents=True)
    applying.save_topology(rec, topo)
    rec.save()
    return rec


def apply_lines(tmp_path, *objs, delete=False, missing_ok=False):
    items = applying.read_objects([dump(tmp_path / "objs.yaml", *objs)])
    return applying.edit("objs", items, delete, missing_ok=missing_ok)


def test_created_configured_and_unchanged_compare_with_what_the_lab_has(tmp_path, lab_on_disk):
    scaled = {**DEPLOY, "spec": {**DEPLOY["spec"], "replicas": 3}}
    e = apply_lines(tmp_path, scaled, SERVICE, DENY)
    assert e.lines == ("deployment.apps/web configured", "service/web unchanged",
                       "networkpolicy.networking.k8s.io/deny-all created")
    assert e.changed
    # written differently, meaning the same: unchanged (the lab compares its normalized form)
    same = {**SERVICE, "metadata": {"name": "web", "namespace": "default"}}
    e = apply_lines(tmp_path, same, DEPLOY)
    assert e.lines == ("service/web unchanged", "deployment.apps/web unchanged") and not e.changed


def test_the_last_of_two_same_objects_wins(tmp_path, lab_on_disk):
    scaled = {**DEPLOY, "spec": {**DEPLOY["spec"], "replicas": 4}}
    e = apply_lines(tmp_path, scaled, DEPLOY)
    assert e.lines == ("deployment.apps/web unchanged",)


def test_delete_lines_and_what_the_lab_does_not_have(tmp_path, lab_on_disk):
    e = apply_lines(tmp_path, SERVICE, DENY, delete=True, missing_ok=True)
    assert e.lines == ("service/web deleted",)
    assert len(e.missing) == 1 and "networkpolicy.networking.k8s.io/deny-all not found in lab objs" in e.missing[0]
    with pytest.raises(LabError, match="not found in lab objs: NetworkPolicy default/deny-all"):
        apply_lines(tmp_path, SERVICE, DENY, delete=True)


def test_an_invalid_object_is_reported_at_its_own_file_and_line(tmp_path, lab_on_disk):
    broken = {**SERVICE, "metadata": {"name": "broken"},
              "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "ICMP"}]}}
    with pytest.raises(TopologyError) as e:
        apply_lines(tmp_path, DENY, broken)
    where = [(d.file, d.line) for d in e.value.diagnostics]
    assert where and all(f == str(tmp_path / "objs.yaml") and line for f, line in where)
    assert "ports[0]" in e.value.diagnostics[0].path and "manifests" not in e.value.diagnostics[0].path


def test_a_policy_that_selects_no_pod_of_its_namespace_is_warned_about(tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump({"name": "objs", "nodes": [{"name": "n1"}], "manifests": [DEPLOY, DENY, NOBODY]}))
    state = plan(load_topology(path), source=str(path))
    items = applying.read_objects([dump(tmp_path / "p.yaml", DENY, NOBODY)])
    warnings = applying.unselecting_policies(state, items)
    assert len(warnings) == 1 and warnings[0].startswith("networkpolicy.networking.k8s.io/nobody selects no pod")


# --- the command line ---

@pytest.mark.parametrize("argv,lab", [
    (["--lab", "x", "exec", "pod"], "x"), (["exec", "pod", "--lab", "y"], "y"), (["-l", "x", "get", "pods"], "x"),
    (["-l", "x", "get", "pods", "-l", "z"], "z"), (["get", "pods"], None), (["--lab=q", "apply", "-f", "-"], "q"),
])
def test_lab_is_accepted_before_or_after_the_command(argv, lab):
    assert cli._parser().parse_args(argv).lab == lab


def test_exec_with_lab_before_keeps_the_command_after_the_double_dash(monkeypatch):
    seen = {}
    monkeypatch.setattr(cli, "cmd_exec", lambda a: seen.update(lab=a.lab, target=a.target, command=a.command) or 0)
    parser = cli._parser
    monkeypatch.setattr(cli, "_parser", lambda only=None: _with_exec(parser(only), cli.cmd_exec))
    assert cli.main(["--lab", "x", "exec", "pod", "--", "curl", "--lab", "-f", "-"]) == 0
    assert seen == {"lab": "x", "target": "pod", "command": ["curl", "--lab", "-f", "-"]}


def _with_exec(parser, fn):
    sub = next(a for a in parser._actions if a.dest == "cmd")
    sub.choices["exec"].set_defaults(fn=fn)
    return parser


def test_apply_f_several_times_and_recursive_parse():
    a = cli._parser().parse_args(["apply", "-f", "a.yaml", "-f", "-", "-R"])
    assert a.objects == ["a.yaml", "-"] and a.recursive and a.file is None
    assert cli._parser().parse_args(["apply", "topo.yaml"]).file == "topo.yaml"
    with pytest.raises(SystemExit):
        cli.main(["delete"])


def test_the_loaders_warnings_name_the_applied_objects_file_and_line_not_the_labs_other_objects(tmp_path, lab_on_disk):
    extra = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web"}}
    spec = DEPLOY["spec"]["template"]["spec"]
    container = {**spec["containers"][0], "resources": {"limits": {"cpu": "1"}}}
    with_resources = {**DEPLOY, "spec": {**DEPLOY["spec"], "template": {**DEPLOY["spec"]["template"],
                                                                       "spec": {"containers": [container]}}}}
    e = apply_lines(tmp_path, extra, with_resources)
    assert e.notes and all(n.is_warning for n in e.notes)
    objs = str(tmp_path / "objs.yaml")
    assert all(n.file == objs and n.line for n in e.notes)
    assert all(f == objs for n in e.notes for f, _ in n.also)
    text = "\n".join(str(n) for n in e.notes)
    assert "ServiceAccount" in text and "resources" in text and "manifests[" not in text
    assert not apply_lines(tmp_path, SERVICE).notes  # nothing ignored in what was applied


def test_objects_of_ignored_kinds_are_created_unchanged_configured_and_deleted_as_kubectl_says(tmp_path, lab_on_disk):
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web"}}
    e = apply_lines(tmp_path, sa, SERVICE)
    assert e.lines == ("serviceaccount/web created", "service/web unchanged") and e.ignored == (sa,)
    applying.save_ignored(lab_on_disk, e.ignored)  # what apply() does once the lab took the change
    assert apply_lines(tmp_path, sa).lines == ("serviceaccount/web unchanged",)
    labelled = {**sa, "metadata": {"name": "web", "labels": {"app": "web"}}}
    assert apply_lines(tmp_path, labelled).lines == ("serviceaccount/web configured",)
    e = apply_lines(tmp_path, sa, delete=True)
    assert e.lines == ("serviceaccount/web deleted",) and e.ignored == ()


def test_a_folders_kustomize_build_file_is_left_out_and_named(tmp_path):
    dump(tmp_path / "app" / "svc.yaml", SERVICE)
    (tmp_path / "app" / "kustomization.yaml").write_text("resources: [svc.yaml]\n")
    assert kinds(applying.read_objects([str(tmp_path / "app")])) == [("Service", "web")]
    assert applying.kustomizations([str(tmp_path / "app"), "-"]) == [str(tmp_path / "app" / "kustomization.yaml")]


def test_apply_f_prints_the_kustomize_warning_before_reading(tmp_path, capsys, monkeypatch):
    dump(tmp_path / "app" / "svc.yaml", SERVICE)
    (tmp_path / "app" / "kustomization.yaml").write_text("resources: [svc.yaml]\n")
    monkeypatch.setattr(applying, "apply", lambda items, **kw: (_ for _ in ()).throw(LabError(f"{len(items)} read")))
    assert cli.main(["apply", "-f", str(tmp_path / "app")]) == 1
    err = capsys.readouterr().err
    assert "kustomization.yaml: a kustomize build file is ignored" in err and "error: 1 read" in err


def test_a_call_builds_only_its_commands_parser_and_a_typo_gets_the_whole_list(capsys):
    """Each `lab` call parses with its own command's part only (start-up time); --lab before the
    command, -h and an unknown command still get the whole parser."""
    only = cli._parser("validate")
    sub = next(a for a in only._actions if a.dest == "cmd")
    assert list(sub.choices) == ["validate"]
    assert cli._command(["--lab", "x", "exec", "pod"]) == "exec" and cli._command(["-l", "x", "get"]) == "get"
    assert cli._command(["--lab=q", "apply"]) == "apply" and cli._command(["-h"]) is None
    whole = next(a for a in cli._parser("valdate")._actions if a.dest == "cmd")
    assert {"validate", "up", "check", "web"} <= set(whole.choices)
    with pytest.raises(SystemExit):
        cli.main(["valdate", "x"])
    assert "invalid choice: 'valdate' (choose from 'validate'" in capsys.readouterr().err
