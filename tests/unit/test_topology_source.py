"""YAML reading keeps the line of every path, and refuses what YAML would silently accept."""
from __future__ import annotations

import pytest

from lab.errors import TopologyError
from lab.topology.source import dotted, parse_documents, read_documents

TEXT = """\
name: lab
nodes:
  - name: node1
    labels:
      zone: a
  - name: node2
manifests:
  - kind: Pod
    spec:
      containers: [{name: web, ports: [{containerPort: 80}]}]
"""


def one(text: str):
    (document,) = parse_documents(text, "t.yaml")
    return document


def test_plain_data():
    document = one(TEXT)
    assert document.file == "t.yaml"
    assert document.data["nodes"][0] == {"name": "node1", "labels": {"zone": "a"}}


@pytest.mark.parametrize("path, line", [
    ((), 1),
    (("name",), 1),
    (("nodes",), 2),
    (("nodes", 0), 3),
    (("nodes", 0, "labels"), 4),  # the key's line, not the line where the mapping starts
    (("nodes", 0, "labels", "zone"), 5),
    (("nodes", 1, "name"), 6),
    (("manifests", 0, "spec", "containers", 0, "ports", 0, "containerPort"), 10),
])
def test_line_of_known_paths(path, line):
    assert one(TEXT).line_of(path) == line


def test_line_of_missing_path_is_nearest_ancestor():
    document = one(TEXT)
    assert document.line_of(("nodes", 1, "role")) == 6
    assert document.line_of(("manifests", 0, "spec", "selector", "matchLabels")) == 9
    assert document.line_of(("nowhere",)) == 1


def test_multiple_documents_skip_empty_ones_and_keep_their_lines():
    documents = parse_documents("a: 1\n---\n# nothing\n---\nb:\n  c: 2\n", "m.yaml")
    assert [d.data for d in documents] == [{"a": 1}, {"b": {"c": 2}}]
    assert documents[1].line_of(("b", "c")) == 6
    assert documents[1].line_of(()) == 5


def test_scalars_are_typed_as_yaml_says():
    assert one("a: 1\nb: yes\nc: '1'\nd:\ne: 1.5\n").data == {"a": 1, "b": True, "c": "1", "d": None, "e": 1.5}


def test_merge_keys_resolve_and_own_keys_win():
    document = one("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n")
    assert document.data["other"] == {"x": 1, "y": 3}
    assert document.line_of(("other", "y")) == 4


def test_duplicate_keys_are_errors():
    with pytest.raises(TopologyError) as caught:
        parse_documents("a: 1\nb:\n  c: 1\n  c: 2\na: 3\n", "d.yaml")
    assert [(d.line, d.path) for d in caught.value.diagnostics] == [(4, "b.c"), (5, "a")]
    assert "duplicate key 'c' (first at line 3)" in str(caught.value)


@pytest.mark.parametrize("text, line, message", [
    ("a: 1\nb: [1, 2\n", 3, "invalid YAML"),
    ("a:\n  - x\n - y\n", 3, "invalid YAML"),
    ("a: !Ref x\n", 1, "could not determine a constructor"),
    ("a: &x [*x]\n", 1, "recursive alias"),
    ("? [1, 2]\n: x\n", 1, "a mapping key must be a plain value"),
])
def test_syntax_errors_become_diagnostics(text, line, message):
    with pytest.raises(TopologyError) as caught:
        parse_documents(text, "s.yaml")
    (diagnostic,) = caught.value.diagnostics
    assert (diagnostic.file, diagnostic.line) == ("s.yaml", line)
    assert message in diagnostic.message
    assert diagnostic.hint


def test_read_documents_file_problems(tmp_path):
    with pytest.raises(TopologyError, match="file not found"):
        read_documents(tmp_path / "missing.yaml")
    with pytest.raises(TopologyError, match="is a directory"):
        read_documents(tmp_path)
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    with pytest.raises(TopologyError, match="not UTF-8"):
        read_documents(tmp_path / "latin1.yaml")


def test_dotted():
    assert dotted(("manifests", 2, "spec", "containers", 0, "name")) == "manifests[2].spec.containers[0].name"
    assert dotted(()) == ""
