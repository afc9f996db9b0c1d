"""YAML reading that remembers where every value came from.

pydantic reports errors by path ("manifests", 2, "spec", "replicas"); users need a file and a line.
So we compose YAML node trees ourselves, build plain dicts/lists/scalars from them, and record the
line of each path on the way. Duplicate keys are an error: YAML would silently keep the last one.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Optional

import yaml

from lab.errors import Diagnostic, TopologyError

DocPath = tuple[Any, ...]  # keys and list indexes from the document root

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


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

    if path.is_dir():
        yamls = sorted(p.name for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        fail("is a directory, not a YAML file",
             f"give a file, e.g. {path / yamls[0]}" if yamls else "give the path of a YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        fail("file not found", "check the path; a relative path starts from the current directory")
    except UnicodeDecodeError as e:
        fail(f"not UTF-8 text (byte {e.start})", "save the file as UTF-8")
    except OSError as e:
        fail(f"cannot read file: {e.strerror}")
    return parse_documents(text, str(path))


def parse_documents(text: str, file: str) -> list[Source]:
    """Parse YAML text into one Source per non-empty document."""
    loader = yaml.SafeLoader(text)
    builder = _Builder(loader, file)
    documents = []
    try:
        while loader.check_node():
            node = loader.get_node()
            lines: dict[DocPath, int] = {}
            data = builder.build(node, (), lines, node.start_mark.line + 1)
            if data is not None:
                documents.append(Source(file, data, lines))
    except yaml.YAMLError as e:
        raise TopologyError([_syntax_diagnostic(e, file)]) from None
    finally:
        loader.dispose()
    if builder.duplicates:
        raise TopologyError(sorted(builder.duplicates, key=lambda d: d.line))
    return documents


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
            return self.loader.construct_object(node, deep=True)
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
            key = self.loader.construct_object(key_node)
            result[key] = self.build(value_node, path + (key,), lines, key_node.start_mark.line + 1)
        return result

    def _check_duplicates(self, node: yaml.MappingNode, path: DocPath) -> None:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key = self.loader.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                self.duplicates.append(Diagnostic(
                    self.file, line, dotted(path + (key,)),
                    f"duplicate key '{key}' (first at line {seen[key]})",
                    "YAML would silently keep only the last one; remove or rename one of them"))
            else:
                seen[key] = line


_SYNTAX_HINTS = {
    "found character '\\t'": "YAML does not allow tabs; indent with spaces",
    "mapping values are not allowed": "quote values that contain ': ', or check the indentation",
    "could not find expected ':'": "every key needs a ':' after it; check the indentation",
    "expected <block end>": "check the indentation: items of one list or mapping must line up",
    "found undefined alias": "define the anchor (&name) before using the alias (*name)",
    "could not determine a constructor": "custom tags (!Something) are not supported; remove the tag",
}


def _syntax_diagnostic(error: yaml.YAMLError, file: str) -> Diagnostic:
    """A YAML error as a diagnostic at the line where the parser gave up."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
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
