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
    ("a: !Ref x\n", 1, "unsupported YAML tag"),
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


def _bomb(levels: int = 9, width: int = 9) -> str:
    """The billion-laughs file of CVE-2019-11253: each level repeats the one before `width` times."""
    lines = ["l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text, line, message", [
    (_bomb(), 6, "more than 100,000 values in one file (alias *l4 repeats"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", 1, "nested deeper than 100 levels"),
    ("".join(f"x{i}: &x{i} [{f'*x{i - 1}' if i else 1}]\n" for i in range(120)), 99, "nested deeper than 100 levels (alias"),
    ("a: &a 1\nb: [" + ", ".join(["*a"] * 1001) + "]\n", 2, "more than 1000 aliases"),
    ("a: 1\n---\n" * 1001, 2000, "more than 1000 YAML documents"),
    ("v: [" + ", ".join(["1"] * 100_001) + "]\n", 1, "more than 100,000 values in one file"),
    ("name: a\x00b\n", 1, "a NUL byte"),
    ("a: 1\nb: \x07\n", 2, "the control character #x0007"),
    ("a: !!python/object/apply:os.system ['touch /tmp/pwned']\n", 1, "unsupported YAML tag"),
    ("a: !!binary aGVsbG8=\n", 1, "unsupported YAML tag"),
    ("a: !!set {x, y}\n", 1, "unsupported YAML tag"),
    ("a: " + "9" * 5000 + "\n", 1, "number out of range"),
])
def test_limits_refuse_hostile_input_fast(text, line, message):
    """Refused in under 3 s of the reader's own CPU time (other work on the machine does not count)."""
    import time

    t0 = time.process_time()
    with pytest.raises(TopologyError) as caught:
        parse_documents(text, "h.yaml")
    assert time.process_time() - t0 < 3
    (diagnostic,) = caught.value.diagnostics
    assert (diagnostic.file, diagnostic.line) == ("h.yaml", line)
    assert message in diagnostic.message
    assert diagnostic.hint


def test_limits_leave_ordinary_aliases_and_merges_alone():
    document = one("base: &b {x: 1}\n" + "".join(f"o{i}: {{<<: *b, y: {i}}}\n" for i in range(200)))
    assert document.data["o199"] == {"x": 1, "y": 199}


def test_too_large_a_file_is_refused_before_reading(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * (4 * 1024 * 1024) + "\n")
    with pytest.raises(TopologyError, match="file too large: 4,194,308 bytes"):
        read_documents(big)


def test_scalars_become_what_json_holds():
    assert one("t: 2020-01-01\n1: x\ntrue: y\n").data == {"t": "2020-01-01", "1": "x", "true": "y"}


def test_json_has_the_same_limits():
    from lab.topology.source import parse_json

    assert parse_json('{"a": [[1]]}', "o.json") == {"a": [[1]]}
    for text in ("[" * 101 + "]" * 101, "[" * 100_000 + "]" * 100_000):
        with pytest.raises(TopologyError, match="nested deeper than 100 levels"):
            parse_json(text, "o.json")
    with pytest.raises(ValueError):
        parse_json("{", "o.json")
