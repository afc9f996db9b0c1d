"""Topology files in; a validated Topology, or a TopologyError listing every problem, out.

Reading keeps line numbers (lab.topology.source). pydantic's errors are translated into the user's
terms: file and line, a dotted path, what is wrong, and a hint on how to fix it. Semantic rules
(lab.topology.semantics) run on whatever validated, so one run reports as much as possible.
"""
from __future__ import annotations

import ipaddress
import os
import re
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, Optional, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from lab.errors import Diagnostic, TopologyError, group_warnings
from lab.topology import lenient, semantics
from lab.topology.model import DNS_LABEL, DNS_SUBDOMAIN, SUPPORTED_KINDS, IgnoredObject, Topology
from lab.topology.semantics import Locate, did_you_mean
from lab.topology.source import DocPath, Source, dotted, parse_documents, read_documents

_KINDS_TEXT = ", ".join(f"{kind} ({version})" for kind, version in SUPPORTED_KINDS.items())
_CONTAINER = "{name: web, image: netexec}"
_EXAMPLES = {  # one-line YAML for missing required fields; "Kind.field" wins over "field"
    "name": "name: web",
    "nodes": "nodes: [{name: node1}, {name: node2}]",
    "from": "from: pod/client",
    "to": "to: pod/web:8080",
    "expect": "expect: allow",
    "metadata": "metadata: {name: web}",
    "Pod.spec": f"spec: {{containers: [{_CONTAINER}]}}",
    "Deployment.spec": "spec: {selector: {matchLabels: {app: web}}, "
                       f"template: {{metadata: {{labels: {{app: web}}}}, spec: {{containers: [{_CONTAINER}]}}}}}}",
    "spec": f"spec: {{containers: [{_CONTAINER}]}}",
    "containers": f"containers: [{_CONTAINER}]",
    "image": "image: netexec",
    "containerPort": "containerPort: 8080",
    "selector": "selector: {matchLabels: {app: web}}",
    "template": f"template: {{metadata: {{labels: {{app: web}}}}, spec: {{containers: [{_CONTAINER}]}}}}",
    **{f"{kind}.apiVersion": f"apiVersion: {version}" for kind, version in SUPPORTED_KINDS.items()},
}


@dataclass(frozen=True)
class _Options:
    strict: bool = False  # warnings are errors
    report: Optional[Callable[[list[Diagnostic]], None]] = None  # given the (grouped) warnings of a load


_OPTIONS: ContextVar[_Options] = ContextVar("topology_load_options", default=_Options())


@contextmanager
def reporting(strict: bool = False, report: Optional[Callable[[list[Diagnostic]], None]] = None) -> Iterator[None]:
    """Within this block, topology loads (wherever they happen, e.g. inside `lab up`) treat warnings
    as errors when `strict`, and hand the warnings of a successful load to `report`."""
    token = _OPTIONS.set(_Options(strict, report))
    try:
        yield
    finally:
        _OPTIONS.reset(token)


def load_topology(path: str | Path) -> Topology:
    """Read, validate and check a topology file (and its manifests folder, if it names one)."""
    path = Path(path)
    return _load(_single_document(read_documents(path), str(path)), path.parent)


def load_topology_text(text: str, file: str = "<string>") -> Topology:
    """load_topology for text in memory; a manifests folder is relative to `file`'s folder."""
    return _load(_single_document(parse_documents(text, file), file), Path(file).parent)


def check_topology(path: str | Path) -> tuple[Topology, list[Diagnostic]]:
    """load_topology, returning the (grouped) warnings instead of reporting them; strict as set by
    `reporting` (default: not)."""
    found: list[Diagnostic] = []
    with reporting(_OPTIONS.get().strict, found.extend):
        topology = load_topology(path)
    return topology, found


def _single_document(documents: list[Source], file: str) -> Source:
    if not documents:
        raise TopologyError([Diagnostic(file, None, "", "the file is empty",
                                        "a topology needs at least a name and nodes, e.g. "
                                        "name: demo, nodes: [{name: node1}]")])
    if len(documents) > 1:
        raise TopologyError([Diagnostic(
            file, documents[1].line_of(()), "", f"a topology file holds one YAML document, found {len(documents)}",
            "remove the '---' separator; to keep manifests in their own files, name a folder in `manifests:`")])
    return documents[0]


def _load(top: Source, base: Path) -> Topology:
    options = _OPTIONS.get()
    data, manifests, diagnostics = top.data, None, []
    if isinstance(data, dict) and isinstance(data.get("manifests"), str):
        manifests, diagnostics = _read_manifests(top, base)
        data = {**data, "manifests": [doc.data for doc in manifests]}
    locate = _locator(top, manifests)
    if isinstance(data, dict) and "manifests" in data:
        relaxed, findings = lenient.relax(data["manifests"])
        data = {**data, "manifests": relaxed}
        for f in findings:
            file, line = locate(f.path)
            diagnostics.append(Diagnostic(file, line, dotted(f.path), f.message, f.hint,
                                          "warning" if f.warning else "error"))
    data, found = _plugin_path(data, base, locate)
    diagnostics += found
    topology, found = _validate(data, locate)
    diagnostics += found
    if options.strict:
        diagnostics = [replace(d, severity="error") for d in diagnostics]
    files = [top.file] + [doc.file for doc in manifests or []]
    rank = {file: i for i, file in enumerate(dict.fromkeys(files))}
    diagnostics = group_warnings(sorted(diagnostics, key=lambda d: (rank.get(d.file, len(files)), d.line or 0)))
    if any(not d.is_warning for d in diagnostics):
        raise TopologyError(diagnostics)
    if diagnostics and options.report is not None:
        options.report(diagnostics)
    return topology.model_copy(update={"manifests": [m for m in topology.manifests
                                                    if not isinstance(m, IgnoredObject)]})


def _plugin_path(data: Any, base: Path, locate: Locate) -> tuple[Any, list[Diagnostic]]:
    """cluster.cni naming a plugin of one's own (./plugins/my-cni): made absolute from the topology
    file's folder; it must be an executable file (looked at, never run)."""
    cluster = data.get("cluster") if isinstance(data, dict) else None
    cni = cluster.get("cni") if isinstance(cluster, dict) else None
    if not isinstance(cni, str) or "/" not in cni:
        return data, []
    path = (base / cni).resolve()
    if not path.is_file() or not os.access(path, os.X_OK):
        file, line = locate(("cluster", "cni"))
        problem = "is not executable" if path.is_file() else "does not exist"
        return data, [Diagnostic(file, line, "cluster.cni", f"CNI plugin {cni} ({path}) {problem}",
                                 f"chmod +x {path}" if path.is_file() else "the path is relative to the topology file")]
    return {**data, "cluster": {**cluster, "cni": str(path)}}, []


_KUSTOMIZATION = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def _read_manifests(top: Source, base: Path) -> tuple[list[Source], list[Diagnostic]]:
    """Every document of every *.yaml / *.yml file in the folder `manifests:` names (sorted by file
    name, the topology file itself and kustomize's build file left out), or of the one file it
    names; and a warning for each file left out."""
    name = top.data["manifests"]
    folder = base / name

    def fail(message: str, hint: str) -> NoReturn:
        raise TopologyError([Diagnostic(top.file, top.line_of(("manifests",)), "manifests", message, hint)])

    if not folder.exists():
        fail(f"manifests folder '{name}' not found (looked for {folder})",
             "the folder is relative to the topology file; or list the manifests inline")
    files = [folder] if folder.is_file() else sorted(
        p for p in folder.iterdir()
        if p.suffix in (".yaml", ".yml") and p.is_file() and p.resolve() != Path(top.file).resolve())
    skipped = [p for p in files if p.name in _KUSTOMIZATION and p != folder]
    files = [p for p in files if p not in skipped]
    if not files:
        fail(f"no *.yaml or *.yml files in manifests folder '{name}'", f"put the manifests in {folder}")
    warnings = [Diagnostic(str(p), None, "", "a kustomize build file is ignored: the lab reads the manifests of the "
                           "folder as they are", "to use kustomize's output, write it to a folder: "
                           "kubectl kustomize DIR > manifests/all.yaml", "warning") for p in skipped]
    documents, problems = [], []
    for file in files:
        try:
            documents += read_documents(file)
        except TopologyError as e:  # report unreadable files together, then stop
            problems += e.diagnostics
    if problems:
        raise TopologyError(problems)
    return documents, warnings


def _locator(top: Source, manifests: Optional[list[Source]]) -> Locate:
    """Map a path in the merged data to (file, line); manifests from a folder map to their own file."""
    def locate(path: DocPath) -> tuple[str, Optional[int]]:
        if manifests is not None and path[:1] == ("manifests",) and len(path) > 1 \
                and isinstance(path[1], int) and path[1] < len(manifests):
            doc = manifests[path[1]]
            return doc.file, doc.line_of(path[2:])
        return top.file, top.line_of(path)
    return locate


def _validate(data: Any, locate: Locate) -> tuple[Optional[Topology], list[Diagnostic]]:
    try:
        topology = Topology.model_validate(data)
    except ValidationError as e:
        errors = e.errors()
        return None, [_explain(error, locate) for error in errors] + _check_valid_manifests(data, errors, locate)
    return topology, semantics.check(topology, locate)


def _check_valid_manifests(data: Any, errors: list[ErrorDetails], locate: Locate) -> list[Diagnostic]:
    """Semantic checks without the failed manifests, when nothing but manifests failed."""
    if not all(len(e["loc"]) > 1 and e["loc"][0] == "manifests" and isinstance(e["loc"][1], int) for e in errors):
        return []
    failed = {e["loc"][1] for e in errors}
    rest = [m for i, m in enumerate(data["manifests"]) if i not in failed]
    try:
        topology = Topology.model_validate({**data, "manifests": rest})
    except ValidationError:
        return []
    return semantics.check(topology, locate, skipped=failed)


# --- pydantic errors in the user's terms ---

@dataclass(frozen=True)
class _Place:
    """Where a pydantic loc leads, in the data and in the model."""

    path: DocPath  # path in the data: pydantic's discriminator tags and '[key]' dropped
    kind: Optional[str]  # the manifest kind passed on the way, if any
    annotation: Any  # the type expected there, Optional and Annotated removed
    field: Optional[FieldInfo]  # the model field there, if it is one
    constraints: tuple  # Ge, Le, MinLen, StringConstraints, ... of that field

    @property
    def subject(self) -> str:
        """How a message names the value: its field name, else its dotted path."""
        if self.path and isinstance(self.path[-1], str):
            return self.path[-1] if self.field else dotted(self.path[-2:])  # a field, or a mapping's key
        return dotted(self.path) or "the topology"

    def constraint(self, name: str) -> Any:
        return next((getattr(c, name) for c in self.constraints if getattr(c, name, None) is not None), None)


def _walk(loc: tuple) -> _Place:
    """Follow a pydantic loc through Topology's annotations."""
    annotation, field, constraints, kind, path = Topology, None, [], None, []
    for part in loc:
        annotation, _ = _unwrap(annotation)
        if part == "[key]":
            continue
        if get_origin(annotation) in (Union, types.UnionType):  # pydantic names the member it tried
            member = next((m for m in get_args(annotation) if part in (_kinds(m) + (getattr(m, "__name__", None),))),
                          None)
            if member is not None and part in _kinds(member):  # the discriminated union of manifests
                kind = part
            annotation = member  # None for a member such as 'int' or 'function-after[...]': nothing to follow
            continue
        path.append(part)
        field, constraints = None, []
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = next((f for n, f in annotation.model_fields.items() if part in (n, f.alias)), None)
            annotation, constraints = (field.annotation, list(field.metadata)) if field else (None, [])
        elif get_origin(annotation) in (list, dict):
            annotation = get_args(annotation)[-1]
        else:
            annotation = None
    annotation, extra = _unwrap(annotation)
    return _Place(tuple(path), kind, annotation, field, tuple(constraints + extra))


def _kinds(model: Any) -> tuple:
    """The `kind` values a manifest model takes; () for anything else."""
    if isinstance(model, type) and issubclass(model, BaseModel) and "kind" in model.model_fields:
        return get_args(model.model_fields["kind"].annotation)
    return ()


def _unwrap(annotation: Any) -> tuple[Any, list]:
    """Strip Annotated (collecting its constraints) and Optional."""
    constraints = []
    while True:
        if get_origin(annotation) is Annotated:
            constraints += annotation.__metadata__
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation):
            rest = tuple(a for a in get_args(annotation) if a is not type(None))
            annotation = rest[0] if len(rest) == 1 else Union[rest]
        else:
            return annotation, constraints


def _explain(error: ErrorDetails, locate: Locate) -> Diagnostic:
    place = _walk(error["loc"])
    explain = _EXPLAIN.get(error["type"], _generic)
    message, hint = explain(error, place)
    path = place.path + ("kind",) if error["type"] == "union_tag_invalid" else place.path
    file, line = locate(path)
    return Diagnostic(file, line, dotted(path), message, hint)


def _show(value: Any) -> str:
    """A value as the user wrote it in YAML."""
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


def _range_hint(place: _Place) -> Optional[str]:
    low, high = place.constraint("ge"), place.constraint("le")
    return f"use a whole number from {low} to {high}" if low is not None and high is not None else None


def _extra_forbidden(error: ErrorDetails, place: _Place) -> tuple[str, str]:
    parent = _walk(error["loc"][:-1])
    name = str(place.path[-1])
    allowed = [f.alias or n for n, f in parent.annotation.model_fields.items()]
    where = f"in {dotted(parent.path)}" if parent.path else "at the top level"
    return f"unknown field '{name}'", f"allowed fields {where}: {', '.join(allowed)}" + did_you_mean(name, allowed)


def _missing(error: ErrorDetails, place: _Place) -> tuple[str, Optional[str]]:
    name = place.subject
    example = _EXAMPLES.get(f"{place.kind}.{name}") or _EXAMPLES.get(name)
    return f"missing required field '{name}'", f"e.g. {example}" if example else None


def _union_tag_invalid(error: ErrorDetails, place: _Place) -> tuple[str, str]:
    tag = error["ctx"]["tag"]
    found = error["input"].get("kind", tag) if isinstance(error["input"], dict) else tag
    hint = lenient.UNSUPPORTED_KIND_HINTS.get(tag) or \
        "remove this object, or change its kind" + did_you_mean(tag, SUPPORTED_KINDS)
    return f"kind {_show(found)} is not supported. Supported kinds are {_KINDS_TEXT}", hint


def _union_tag_not_found(error: ErrorDetails, place: _Place) -> tuple[str, str]:
    return "the manifest has no 'kind'", f"add apiVersion and kind, one of {_KINDS_TEXT}"


def _not_a_mapping(error: ErrorDetails, place: _Place) -> tuple[str, str]:
    found = error["input"]
    if not place.path:
        hint = "a topology starts with fields such as name: demo and nodes: [{name: node1}]"
    elif found is None:
        hint = "the key has no value: fill it in, or remove the line to use the defaults"
    elif isinstance(found, str) and isinstance(place.annotation, type) and "name" in place.annotation.model_fields:
        hint = f"write it as: - name: {found}"
    else:
        hint = "write it as indented 'key: value' lines"
    return f"{place.subject} must be a mapping (key: value), found {_show(found)}", hint


def _list_type(error: ErrorDetails, place: _Place) -> tuple[str, str]:
    found = error["input"]
    if found is None:
        hint = "the key has no value: fill it in, or remove the line"
    elif place.path == ("manifests",):
        hint = "list the manifests, each starting with '- ', or name a folder of manifest files"
    else:
        hint = "write each item on its own line, starting with '- '"
    return f"{place.subject} must be a list, found {_show(found)}", hint


def _too_short(error: ErrorDetails, place: _Place) -> tuple[str, Optional[str]]:
    example = _EXAMPLES.get(place.subject)
    count = error["ctx"]["min_length"]
    return (f"{place.subject} must have at least {count} item{'s' if count != 1 else ''}",
            f"e.g. {example}" if example else None)


def _too_long(error: ErrorDetails, place: _Place) -> tuple[str, Optional[str]]:
    count = error["ctx"]["max_length"]
    hint = ("one CIDR per IP family: [10.244.0.0/16, fd00:10:244::/56] at most" if place.subject.endswith("CIDR")
            else None)
    found = error["ctx"].get("actual_length")
    return f"{place.subject} takes at most {count} item{'s' if count != 1 else ''}, found {found}", hint


def _literal_error(error: ErrorDetails, place: _Place) -> tuple[str, str]:
    allowed = [str(a) for a in get_args(place.annotation)] if get_origin(place.annotation) is Literal else []
    found = error["input"]
    if place.subject == "apiVersion" and place.kind and allowed:
        return f"apiVersion of a {place.kind} must be '{allowed[0]}', found {_show(found)}", f"apiVersion: {allowed[0]}"
    yes_no = "; YAML reads unquoted yes/no/on/off as true/false" if isinstance(found, bool) else ""
    return (f"{place.subject} {_show(found)} is not supported",
            f"use one of: {', '.join(allowed)}" + did_you_mean(str(found), allowed) + yes_no)


def _string_error(error: ErrorDetails, place: _Place) -> tuple[str, Optional[str]]:
    """Pattern and length errors; names get Kubernetes' naming rule and a corrected suggestion."""
    found, longest, pattern = error["input"], place.constraint("max_length"), place.constraint("pattern")
    if error["type"] == "string_too_short":
        example = _EXAMPLES.get(place.subject)
        return f"{place.subject} must not be empty", f"e.g. {example}" if example else None
    if error["type"] == "string_too_long":
        message = (f"{place.subject} {_show(found)} is too long: "
                   f"{len(found)} characters, at most {error['ctx']['max_length']}")
    else:
        message = f"{place.subject} {_show(found)} is not a valid name"
    if pattern not in (DNS_LABEL, DNS_SUBDOMAIN):
        return message, None
    dots = "'-' and '.'" if pattern == DNS_SUBDOMAIN else "and '-'"
    hint = (f"Kubernetes names use lowercase letters, digits {dots}, start and end with a letter or digit, "
            f"and have at most {longest} characters")
    suggestion = _suggest_name(found, pattern, longest)
    return message, hint + (f"; try '{suggestion}'" if suggestion else "")


def _suggest_name(text: str, pattern: str, longest: int) -> Optional[str]:
    """The user's name made valid: lowercased, other characters replaced by '-', trimmed."""
    name = re.sub(r"[^a-z0-9.]+" if pattern == DNS_SUBDOMAIN else r"[^a-z0-9]+", "-", text.lower())
    name = ".".join(part.strip("-") for part in name.split(".") if part.strip("-"))
    name = name[:longest].rstrip("-.")
    return name if re.fullmatch(pattern, name) else None


def _string_type(error: ErrorDetails, place: _Place) -> tuple[str, str]:
    found = error["input"]
    subject = f"key {_show(found)}" if error["loc"][-1] == "[key]" else place.subject
    if found is None:
        hint = "the key has no value: write one, or remove the line"
    elif isinstance(found, bool):
        hint = f"YAML reads unquoted yes/no/on/off/true/false as booleans: quote it, e.g. \"{_show(found)}\""
    else:
        hint = f"quote it: \"{found}\""
    return f"{subject} must be text, found {_show(found)}", hint


def _int_error(error: ErrorDetails, place: _Place) -> tuple[str, str]:
    return (f"{place.subject} must be a whole number, found {_show(error['input'])}",
            _range_hint(place) or "write a whole number without quotes")


def _bound_error(error: ErrorDetails, place: _Place) -> tuple[str, Optional[str]]:
    ctx = error["ctx"]
    bound = {"greater_than_equal": f"at least {ctx.get('ge')}", "less_than_equal": f"at most {ctx.get('le')}",
             "greater_than": f"more than {ctx.get('gt')}", "less_than": f"less than {ctx.get('lt')}"}[error["type"]]
    return f"{place.subject} must be {bound}, found {_show(error['input'])}", _range_hint(place)


def _bool_error(error: ErrorDetails, place: _Place) -> tuple[str, str]:
    return (f"{place.subject} must be true or false, found {_show(error['input'])}",
            "write true or false, without quotes")


def _network_error(error: ErrorDetails, place: _Place) -> tuple[str, str]:
    found = error["input"]
    example = place.field.default if place.field else "10.244.0.0/16"
    try:
        network = ipaddress.IPv4Network(found, strict=False)
    except (ValueError, TypeError):
        hint = f"write an address and a prefix length (0-32), e.g. {example}"
    else:
        hint = f"{found} has bits set after the /{network.prefixlen} prefix: the network is {network}"
    return f"{place.subject} must be an IPv4 network like {example}, found {_show(found)}", hint


def _networks_error(error: ErrorDetails, place: _Place) -> tuple[str, str]:
    """A CIDR list (cluster.podCIDR): the one item that is wrong, and why."""
    ctx = error.get("ctx") or {}
    default = place.field.default if place.field else None
    example = default[0] if isinstance(default, tuple) and default else "10.244.0.0/16"
    return (f"{place.subject} must be an IPv4 or IPv6 network like {example} (or two, one per family), "
            f"found {_show(ctx.get('item', error['input']))}", ctx.get("hint", ""))


def _families_error(error: ErrorDetails, place: _Place) -> tuple[str, str]:
    ctx = error.get("ctx") or {}
    return f"{place.subject}: {ctx.get('problem', error['msg'])}", ctx.get("hint", "")


def _generic(error: ErrorDetails, place: _Place) -> tuple[str, None]:
    return f"{error['msg']}, found {_show(error['input'])}", None


def _value_error(error: ErrorDetails, place: _Place) -> tuple[str, None]:
    """A model's own check (its ValueError's text says what is allowed)."""
    return f"{str(error['msg']).removeprefix('Value error, ')}, found {_show(error['input'])}", None


_EXPLAIN = {
    "value_error": _value_error,
    "extra_forbidden": _extra_forbidden,
    "invalid_key": _extra_forbidden,
    "missing": _missing,
    "union_tag_invalid": _union_tag_invalid,
    "union_tag_not_found": _union_tag_not_found,
    "model_type": _not_a_mapping,
    "model_attributes_type": _not_a_mapping,
    "dict_type": _not_a_mapping,
    "list_type": _list_type,
    "too_short": _too_short,
    "too_long": _too_long,
    "literal_error": _literal_error,
    "string_pattern_mismatch": _string_error,
    "string_too_long": _string_error,
    "string_too_short": _string_error,
    "string_type": _string_type,
    "int_parsing": _int_error,
    "int_type": _int_error,
    "int_from_float": _int_error,
    "greater_than_equal": _bound_error,
    "less_than_equal": _bound_error,
    "greater_than": _bound_error,
    "less_than": _bound_error,
    "bool_parsing": _bool_error,
    "bool_type": _bool_error,
    "ip_v4_network": _network_error,
    "ip_networks": _networks_error,
    "ip_families": _families_error,
}
