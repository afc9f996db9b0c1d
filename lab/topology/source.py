"""YAML reading that remembers where every value came from.

pydantic reports errors by path ("manifests", 2, "spec", "replicas"); users need a file and a line.
So we compose YAML node trees ourselves, build plain dicts/lists/scalars from them, and record the
line of each path on the way. Duplicate keys are an error: YAML would silently keep the last one.

Every user's file comes through here, so the limits live here too (CVE-2019-11253: an alias bomb
took the API server down): size before reading, then documents, depth, aliases and nodes counted
while composing, before anything is built from the nodes. Scalars become what JSON can hold, as
the API server's YAML→JSON step makes them: timestamps stay strings, keys are strings.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Optional

import yaml

from lab.errors import Diagnostic, TopologyError

DocPath = tuple[Any, ...]  # keys and list indexes from the document root

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_JSON_SCALARS = {_STR_TAG} | {f"tag:yaml.org,2002:{t}" for t in ("int", "float", "bool", "null")}

MAX_BYTES = 3 * 1024 * 1024  # the API server's request limit
MAX_DOCUMENTS = 1000
MAX_DEPTH = 100              # nesting, counted through aliases
MAX_ALIASES = 1000
MAX_NODES = 100_000          # values in a file once aliases are expanded (an alias bomb has 387 million)
_HINT_SPLIT = "split it into several files (lab apply -f takes a folder)"


def _limit(file: str, line: Optional[int], message: str, hint: str) -> NoReturn:
    raise TopologyError([Diagnostic(file, line, "", message, hint)])


def check_size(size: int, file: str) -> None:
    """Refuse a file over MAX_BYTES before reading it."""
    if size > MAX_BYTES:
        _limit(file, None, f"file too large: {size:,} bytes (at most {MAX_BYTES:,}, the Kubernetes API server's "
                           "request limit)", _HINT_SPLIT)


@dataclass(frozen=True)
class Source:
    """One YAML document: its plain data and the line of every path in it."""

    file: str
    data: Any
    lines: dict[DocPath, int]

    def line_of(self, path: DocPath) -> Optional[int]:
        """Line of `path`, or of its nearest ancestor that exists (a missing field → its mapping)."""
        path = tuple(path)
        while path not in self.lines:
            if not path:
                return None
            path = path[:-1]
        return self.lines[path]


def read_documents(path: Path) -> list[Source]:
    """Every non-empty document of a YAML file; unreadable files become diagnostics, not tracebacks."""
    def fail(message: str, hint: Optional[str] = None) -> NoReturn:
        raise TopologyError([Diagnostic(str(path), None, "", message, hint)])

    try:
        check_size(path.stat().st_size, str(path))
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        fail("file not found", "check the path; a relative path starts from the current directory")
    except IsADirectoryError:
        yamls = sorted(p.name for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        fail("is a directory, not a YAML file",
             f"give a file, e.g. {path / yamls[0]}" if yamls else "give the path of a YAML file")
    except UnicodeDecodeError as e:
        fail(f"not UTF-8 text (byte {e.start})", "save the file as UTF-8")
    except OSError as e:
        fail(f"cannot read file: {e.strerror}")
    return parse_documents(text, str(path))


def parse_documents(text: str, file: str) -> list[Source]:
    """Parse YAML text into one Source per non-empty document, within the limits."""
    check_size(len(text.encode("utf-8", "surrogatepass")), file)
    bad = _NOT_PRINTABLE.search(text)
    if bad:
        code = ord(bad.group())
        what = "a NUL byte" if code == 0 else f"the control character #x{code:04x}"
        _limit(file, text.count("\n", 0, bad.start()) + 1, f"invalid YAML: {what} (YAML text cannot hold it)",
               "is this a binary file? give a YAML text file; write the character as an escape in a "
               "double-quoted string (\"\\x00\") if you mean it")
    documents: list[Source] = []
    loader = None
    try:
        loader = _GuardedLoader(text, file)
        builder = _Builder(loader, file)
        count = 0
        while loader.check_node():
            count += 1
            if count > MAX_DOCUMENTS:
                _limit(file, loader.peek_event().start_mark.line + 1,
                       f"more than {MAX_DOCUMENTS} YAML documents in one file", _HINT_SPLIT)
            loader.sizes.clear()  # anchors are per document
            node = loader.get_node()
            lines: dict[DocPath, int] = {}
            data = builder.build(node, (), lines, node.start_mark.line + 1)
            if data is not None:
                documents.append(Source(file, data, lines))
    except yaml.YAMLError as e:
        raise TopologyError([_syntax_diagnostic(e, file, text)]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if builder.duplicates:
        raise TopologyError(sorted(builder.duplicates, key=lambda d: d.line))
    return documents


def parse_json(text: str, file: str) -> Any:
    """A JSON file's value, within the same size and depth limits as YAML; ValueError if not JSON."""
    check_size(len(text.encode("utf-8", "surrogatepass")), file)
    try:
        data = json.loads(text)
    except RecursionError:
        data = None
        depth = MAX_DEPTH + 1
    else:
        depth, level = 0, [data]
        while level and depth <= MAX_DEPTH:  # breadth first: no recursion on hostile input
            depth += 1
            level = [c for v in level if isinstance(v, (dict, list)) for c in (v.values() if isinstance(v, dict) else v)]
    if depth > MAX_DEPTH:
        _limit(file, None, f"nested deeper than {MAX_DEPTH} levels",
               "no topology or Kubernetes object needs this; check the brackets")
    return data


try:  # libyaml's parser (4x faster); the composer stays PyYAML's, so that the limits are counted in it
    from yaml.cyaml import CParser as _Parser

    def _parser_init(loader, text: str) -> None:
        _Parser.__init__(loader, text)
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.parser import Parser as _Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, _Parser):  # type: ignore[no-redef]
        pass

    def _parser_init(loader, text: str) -> None:
        Reader.__init__(loader, text)
        Scanner.__init__(loader)
        yaml.parser.Parser.__init__(loader)

# YAML's printable characters (YAML 1.1, 5.1); any other is refused before parsing, with its line
_NOT_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class _GuardedLoader(yaml.composer.Composer, _Parser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """PyYAML's composer (first, before libyaml's) with the limits counted as nodes are composed: a
    refused file costs at most MAX_NODES nodes of parsing, and nothing is built from it."""

    def __init__(self, text: str, file: str):
        _parser_init(self, text)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self.file = file
        self.depth = 0
        self.nodes = 0     # composed so far, each alias counted as the nodes it stands for
        self.aliases = 0
        self.sizes: dict[int, tuple[int, int]] = {}  # anchored node → (nodes, height) it expands to
        self.heights = [0]  # per node being composed: the height of its tallest child so far

    def compose_node(self, parent, index):
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                _limit(self.file, line, f"more than {MAX_ALIASES} aliases (*name) in one file",
                       "write the values out, or split the file")
            nodes, height = self.sizes.get(id(self.anchors.get(event.anchor)), (1, 1))
            self._count(nodes, height, line, f" (alias *{event.anchor} repeats {nodes:,} values)")
            self.heights[-1] = max(self.heights[-1], height)
            return super().compose_node(parent, index)
        self._count(1, 1, line, "")
        before = self.nodes
        self.depth += 1
        self.heights.append(0)
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
            height = 1 + self.heights.pop()
        self.heights[-1] = max(self.heights[-1], height)
        if event.anchor is not None:
            self.sizes[id(node)] = (self.nodes - before + 1, height)
        return node

    def _count(self, nodes: int, height: int, line: int, alias: str) -> None:
        self.nodes += nodes
        if self.nodes > MAX_NODES:
            _limit(self.file, line, f"more than {MAX_NODES:,} values in one file{alias}",
                   ("an alias bomb looks like this; write the values out" if alias else _HINT_SPLIT))
        if self.depth + height > MAX_DEPTH:
            _limit(self.file, line, f"nested deeper than {MAX_DEPTH} levels{alias}",
                   "no topology or Kubernetes object needs this; check the brackets and indentation")


class _Builder:
    """Turns composed nodes into plain Python values, recording lines and duplicate keys."""

    def __init__(self, loader: yaml.SafeLoader, file: str):
        self.loader = loader
        self.file = file
        self.duplicates: list[Diagnostic] = []
        self.active: set[int] = set()  # nodes being built: an alias back to one is a cycle
        self.flattened: set[int] = set()  # mappings already checked and merged (aliases revisit them)

    def build(self, node: yaml.Node, path: DocPath, lines: dict[DocPath, int], line: int) -> Any:
        lines[path] = line
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if id(node) in self.active:
            raise yaml.constructor.ConstructorError(None, None, "recursive alias", node.start_mark)
        if node.tag not in (_MAP_TAG, _SEQ_TAG):
            raise yaml.constructor.ConstructorError(
                None, None, f"unsupported YAML tag {node.tag!r}", node.start_mark)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, path + (i,), lines, item.start_mark.line + 1)
                        for i, item in enumerate(node.value)]
            return self._mapping(node, path, lines)
        finally:
            self.active.discard(id(node))

    def scalar(self, node: yaml.ScalarNode) -> Any:
        """A value JSON can hold: a timestamp stays the text it was (as the API server's YAML→JSON
        step keeps it); a tag naming any other type (!!binary, !!python/...) is refused."""
        if node.tag == _TIMESTAMP_TAG:
            return node.value
        if node.tag not in _JSON_SCALARS:
            raise yaml.constructor.ConstructorError(
                None, None, f"unsupported YAML tag {node.tag!r}", node.start_mark)
        try:
            return self.loader.construct_object(node, deep=True)
        except ValueError:  # an integer of more than 4300 digits
            raise yaml.constructor.ConstructorError(
                None, None, f"number out of range: {node.value[:20]}...", node.start_mark) from None

    def key(self, node: yaml.ScalarNode) -> str:
        """Mapping keys are strings, as in JSON: `80: x` is the key "80"."""
        return node.value if node.tag != _STR_TAG else self.loader.construct_object(node)

    def _mapping(self, node: yaml.MappingNode, path: DocPath, lines: dict[DocPath, int]) -> dict:
        if id(node) not in self.flattened:
            self._check_duplicates(node, path)
            self.loader.flatten_mapping(node)  # resolve `<<: *anchor` merges; own keys win
            self.flattened.add(id(node))
        result = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a plain value, not a list or mapping",
                    key_node.start_mark)
            key = self.key(key_node)
            result[key] = self.build(value_node, path + (key,), lines, key_node.start_mark.line + 1)
        return result

    def _check_duplicates(self, node: yaml.MappingNode, path: DocPath) -> None:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key = self.key(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                self.duplicates.append(Diagnostic(
                    self.file, line, dotted(path + (key,)),
                    f"duplicate key '{key}' (first at line {seen[key]})",
                    "YAML would silently keep only the last one; remove or rename one of them"))
            else:
                seen[key] = line


_SYNTAX_HINTS = {
    "tab character": "YAML does not allow tabs; indent with spaces",
    "did not find expected key": "check the indentation: items of one list or mapping must line up",
    "mapping values are not allowed": "quote values that contain ': ', or check the indentation",
    "could not find expected ':'": "every key needs a ':' after it; check the indentation",
    "expected <block end>": "check the indentation: items of one list or mapping must line up",
    "found undefined alias": "define the anchor (&name) before using the alias (*name)",
    "unsupported YAML tag": "tags (!Something, !!python/..., !!binary, !!set) are not supported; remove the tag",
    "number out of range": "quote it if it is a name",
}


def _syntax_diagnostic(error: yaml.YAMLError, file: str, text: str) -> Diagnostic:
    """A YAML error as a diagnostic at the line where the parser gave up."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    if mark and "cannot start any token" in problem and text.splitlines()[mark.line:mark.line + 1] \
            and text.splitlines()[mark.line][mark.column:mark.column + 1] == "\t":  # libyaml does not say which
        problem = "found a tab character that cannot start any token"
    message = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    hint = next((h for key, h in _SYNTAX_HINTS.items() if key in problem),
                "check indentation and quoting on this line and the one before")
    return Diagnostic(file, mark.line + 1 if mark else None, "", message, hint)


def dotted(path: DocPath) -> str:
    """A path as users write it: manifests[2].spec.replicas."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) and not isinstance(part, bool) else f".{part}"
    return text.lstrip(".")
