"""`lab apply FILE`: change a running lab to what the file now says, as controllers would.

Pods that are gone or whose containers changed are removed; new ones are wired and started;
running pods keep their node and IP. Services and EndpointSlices follow, and kube-proxy's rules
are re-synced incrementally (only the Services that changed are rewritten). What a running
cluster cannot change in place — nodes, addresses, the pod network — is refused with the reason.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence, TextIO

from lab import host
from lab.controlplane.state import ClusterState, PodState, container_key, pod_key_of
from lab.errors import Diagnostic, LabError, TopologyError
from lab.node import pods, prober
from lab.host import record as records
from lab.host.record import LabRecord
from lab.kube_proxy import sync as kube_proxy
from lab.runtime import controllers
from lab.runtime.agent import container_alive
from lab.topology.source import MAX_BYTES, Source, check_size, parse_documents, parse_json

# What `lab apply` cannot change: these need `lab down` and `lab up`.
FIXED = ("pod_cidr", "service_cidr", "secondary_service_cidr", "node_mask", "network", "cni", "mtu", "underlay_subnet",
         "underlay_mtu", "switch", "nodes", "hosts", "proxy")


@dataclass(frozen=True)
class Change:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    services: tuple[str, ...]
    lines: tuple[str, ...] = ()      # -f: kubectl's line per object (service/web created, ...)
    missing: tuple[str, ...] = ()    # delete -f: the objects the lab did not have
    warnings: tuple[str, ...] = field(default=())
    notes: tuple[Diagnostic, ...] = ()   # the loader's warnings about the applied objects (file:line)

    def __str__(self) -> str:
        parts = [f"{len(self.added)} pods created", f"{len(self.removed)} pods deleted",
                 f"{len(self.services)} Services re-synced"]
        return ", ".join(parts)


def _same_pod(a: PodState, b: PodState) -> bool:
    """Labels may change in place (relabelling); anything else means a new pod."""
    return replace(a, labels=()) == replace(b, labels=())


TOPOLOGY = "topology.yaml"  # in the lab's run directory: the topology as it stands now


def _load_own(text: str):
    """A file the lab wrote itself (its topology, its ignored objects): libyaml's C loader, ten
    times the pure-Python one. A user's files go through lab.topology.source, with its limits."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _dump_own(doc) -> str:
    import yaml

    return yaml.dump(doc, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False)


def save_topology(record, topo) -> None:
    """What the lab runs, as one self-contained document (a manifests folder inlined), so that
    `lab apply -f` and `lab delete -f` can change it object by object, as kubectl does."""
    host.write_file(record.dir / TOPOLOGY, _dump_own(topo.model_dump(mode="json", by_alias=True, exclude_defaults=True)))


STDIN = "-"


@dataclass(frozen=True)
class Item:
    """One Kubernetes object read for `lab apply -f` / `lab delete -f`: where it came from (for
    errors) and, for YAML, its document's lines."""

    file: str
    obj: dict
    source: Optional[Source] = None
    at: tuple = ()  # where the object is in its document ((), or ("items", i) of a List)

    def line(self, path: tuple = ()) -> Optional[int]:
        return self.source.line_of(self.at + tuple(path)) if self.source else None


MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def manifest_files(name: str, recursive: bool = False) -> list[Path]:
    """The files `-f NAME` stands for, as kubectl reads them: a file, or a folder's *.yaml, *.yml
    and *.json files (sorted; its sub-folders too with -R)."""
    path = Path(name)
    try:
        path.stat()
    except OSError as e:  # not there, or a name too long for the file system
        raise LabError(f'the path "{name}" does not exist' if isinstance(e, FileNotFoundError) else
                       f'the path "{name}": {e.strerror}') from None
    if not path.is_dir():
        return [path]
    found = path.rglob("*") if recursive else path.iterdir()
    return sorted(p for p in found if p.suffix in MANIFEST_SUFFIXES and p.is_file() and p.name not in KUSTOMIZATION)


KUSTOMIZATION = ("kustomization.yaml", "kustomization.yml")  # kustomize's build file, not an object


def kustomizations(names: Sequence[str], recursive: bool = False) -> list[str]:
    """The kustomize build files in the folders of `names`, which manifest_files leaves out."""
    found = []
    for name in names:
        path = Path(name)
        if name != STDIN and path.is_dir():
            found += sorted(str(p) for p in (path.rglob("*") if recursive else path.iterdir())
                            if p.name in KUSTOMIZATION and p.is_file())
    return found


def _parse(text: str, file: str) -> list[tuple[Any, Optional[Source]]]:
    """The documents of one file: JSON (a .json file, or stdin that is JSON) or YAML with lines."""
    if file.endswith(".json") or (file == "<stdin>" and text.lstrip().startswith(("{", "["))):
        try:
            return [(parse_json(text, file), None)]
        except ValueError as e:
            if file.endswith(".json"):
                raise LabError(f"{file}: not valid JSON: {e}") from None
    try:
        return [(doc.data, doc) for doc in parse_documents(text, file)]
    except TopologyError as e:
        raise LabError(f"{file}: not valid YAML: " + "; ".join(str(d) for d in e.diagnostics)) from None


def objects_of(text: str, file: str) -> list[Item]:
    """Kubernetes objects from one file's text: documents, each an object, a list of them, or a
    kind: List (as `kubectl get -o yaml` writes) with `items`."""
    items: list[Item] = []
    for data, source in _parse(text, file):
        if isinstance(data, list):
            items += [Item(file, o, source, (i,)) for i, o in enumerate(data)]
        elif isinstance(data, dict) and str(data.get("kind", "")).endswith("List") and "items" in data:
            items += [Item(file, o, source, ("items", i)) for i, o in enumerate(data.get("items") or [])]
        else:
            items.append(Item(file, data, source))
    for item in items:
        wrong = _not_an_object(item.obj)
        if wrong:
            where = f"{file}:{item.line()}" if item.line() else file
            raise LabError(f"{where}: every document must be a Kubernetes object (kind, metadata with a name, ...): "
                           f"{wrong}")
    return items


def _not_an_object(o: Any) -> Optional[str]:
    """What keeps `o` from being an object kubectl would send: the API server wants kind,
    metadata.name (and metadata.namespace, if given) as non-empty strings."""
    if not isinstance(o, dict):
        return "this is not a mapping"
    meta = o.get("metadata")
    if not isinstance(o.get("kind"), str) or not o["kind"]:
        return "kind must be text, e.g. kind: Service"
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        return "metadata.name must be text, e.g. metadata: {name: web}"
    if meta.get("namespace") is not None and not isinstance(meta["namespace"], str):
        return "metadata.namespace must be text"
    return None


def read_objects(names: Sequence[str], recursive: bool = False, stdin: Optional[TextIO] = None) -> list[Item]:
    """The objects of every `-f` (files, folders, `-` for stdin), in order, as kubectl reads them."""
    items: list[Item] = []
    for name in names:
        if name == STDIN:
            items += objects_of((stdin or sys.stdin).read(MAX_BYTES + 1), "<stdin>")  # more is refused
            continue
        for path in manifest_files(name, recursive):
            try:
                check_size(path.stat().st_size, str(path))
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as e:
                raise LabError(f"{path}: not UTF-8 text (byte {e.start})") from None
            except OSError as e:
                raise LabError(f"cannot read {path}: {e.strerror}") from None
            items += objects_of(text, str(path))
    if not items:
        raise LabError(f"no objects passed: {', '.join(names)} holds no Kubernetes objects")
    return items


def _objects(path: str) -> list[dict]:
    """Kubernetes objects from a manifests file (kept for callers that pass one file)."""
    return [item.obj for item in read_objects([path])]


def _identity(o: dict) -> tuple:
    meta = o.get("metadata") or {}
    return o.get("kind"), meta.get("namespace") or "default", meta.get("name")


def object_name(o: dict) -> str:
    """kubectl's name of an object: `deployment.apps/web`, `service/web`,
    `networkpolicy.networking.k8s.io/deny-all`."""
    group = str(o.get("apiVersion") or "").rpartition("/")[0]
    resource = str(o.get("kind", "")).lower()
    return f"{resource}.{group}/{_identity(o)[2]}" if group else f"{resource}/{_identity(o)[2]}"


def outcome(before: Optional[dict], after: Optional[dict]) -> str:
    """What kubectl says of one object: created, configured or unchanged (both in the lab's own
    normalized form, so that a field written differently but meaning the same is unchanged)."""
    if before is None:
        return "created"
    return "unchanged" if _normal(before) == _normal(after) else "configured"


def _normal(o: Optional[dict]) -> Optional[dict]:
    """namespace: default written out or left out is the same object."""
    if not isinstance(o, dict) or not isinstance(o.get("metadata"), dict):
        return o
    meta = {k: v for k, v in o["metadata"].items() if not (k == "namespace" and v in ("default", None))}
    return {**o, "metadata": meta}


def _unique(items: Sequence[Item]) -> list[Item]:
    """One item per (kind, namespace, name), the last one read winning, in first-read order."""
    last = {_identity(i.obj): i for i in items}
    return [last[k] for k in dict.fromkeys(_identity(i.obj) for i in items)]


def _dumped(topo) -> dict:
    return topo.model_dump(mode="json", by_alias=True, exclude_defaults=True)


def _in_files(diagnostics: Sequence[Diagnostic], text: str, file: str, items: Sequence[Item], first: int,
              lab: str, only_items: bool = False) -> list[Diagnostic]:
    """Diagnostics of the edited topology (`text`, named `file`) about the applied objects (its
    manifests[first:]) named by their own file and line, with the path inside the object; the lab's
    other objects named as the lab's. only_items: drop the rest (warnings `lab up` already gave)."""
    synthetic = parse_documents(text, file)[0]
    count = len(synthetic.data.get("manifests") or [])
    starts = sorted((synthetic.line_of(("manifests", i)) or 0, i) for i in range(count))

    def item_at(line: Optional[int]) -> Optional[Item]:
        index = next((i for start, i in reversed(starts) if line and start <= line), None)
        return items[index - first] if index is not None and first <= index < first + len(items) else None

    def place(f: str, line: Optional[int]) -> Optional[tuple[str, Optional[int]]]:
        if f != file:
            return f, line
        item = item_at(line)
        return (item.file, item.line()) if item else (None if only_items else (f"lab {lab}", None))

    fixed = []
    for d in diagnostics:
        m = re.match(r"manifests\[(\d+)\]\.?(.*)$", d.path or "")
        also = tuple(x for x in (place(f, n) for f, n in d.also) if x)
        if m and first <= int(m.group(1)) < first + len(items):
            item = items[int(m.group(1)) - first]
            rest = m.group(2)
            path = tuple(int(i) if i else k for k, i in re.findall(r"([^.\[\]]+)|\[(\d+)\]", rest))
            fixed.append(replace(d, file=item.file, line=item.line(path), path=rest, also=also))
            continue
        if d.file == file and (not d.line or item_at(d.line) is None):
            if only_items:
                if also:  # a grouped warning whose first place is not one of the applied objects
                    fixed.append(replace(d, file=also[0][0], line=also[0][1], path="", also=also[1:]))
                continue
            fixed.append(replace(d, file=f"lab {lab}", line=None, also=also))
            continue
        where = place(d.file, d.line) or (d.file, d.line)
        fixed.append(replace(d, file=where[0], line=where[1], also=also))
    return fixed


@dataclass(frozen=True)
class Edit:
    """The running lab's topology with objects applied or deleted, and kubectl's line per object."""

    topo: Any
    lines: tuple[str, ...]
    missing: tuple[str, ...] = ()   # delete: objects the lab does not have (kubectl's NotFound)
    items: tuple[Item, ...] = ()
    notes: tuple[Diagnostic, ...] = ()  # the loader's warnings about the applied objects
    ignored: tuple[dict, ...] = ()      # the lab's objects of ignored kinds, after this edit

    @property
    def changed(self) -> bool:
        return any(not line.endswith(" unchanged") for line in self.lines)


IGNORED = "ignored-objects.yaml"  # in the run directory: objects of kinds the lab ignores, as applied


def _ignored(o: dict) -> bool:
    """A kind with no network meaning (ServiceAccount, ConfigMap, ...): the lab keeps no model of it."""
    from lab.topology.lenient import IGNORED_KINDS

    return isinstance(o.get("kind"), str) and o["kind"] in IGNORED_KINDS


def _stored(rec) -> dict:
    path = rec.dir / IGNORED
    return {_identity(o): o for o in (_load_own(host.read_text(path)) or [])} if host.path_exists(path) else {}


def save_ignored(rec, objects: Sequence[dict]) -> None:
    """Remember the applied objects of ignored kinds, so that applying them again is `unchanged`
    and deleting them is `deleted`, as kubectl says."""

    host.write_file(rec.dir / IGNORED, _dump_own(list(objects)))


def edit(lab: Optional[str], items: Sequence[Item], delete: bool, missing_ok: bool = False) -> Edit:
    """The running lab's topology with `items` applied (replaced by kind, namespace and name, or
    added) or deleted, validated like a topology file; with kubectl's line for each object.
    Objects of ignored kinds are compared with (and kept in) the lab's own list of them."""

    from lab.topology.load import load_topology_text, reporting

    rec = records.find(lab)
    doc = _load_own(host.read_text(rec.dir / TOPOLOGY))
    items = _unique(items)
    names = {_identity(i.obj) for i in items}
    stored = _stored(rec)
    had = {**stored, **{_identity(m): m for m in doc.get("manifests", [])}}
    kept = [m for m in doc.get("manifests", []) if _identity(m) not in names]
    if delete:
        missing = [i for i in items if _identity(i.obj) not in had]
        if missing and not missing_ok:
            raise LabError("not found in lab " + rec.name + ": " +
                           ", ".join(f"{k} {ns}/{n}" for k, ns, n in sorted(_identity(i.obj) for i in missing)))
        doc["manifests"] = kept
        store = [o for k, o in stored.items() if k not in names]
    else:
        doc["manifests"] = kept + [i.obj for i in items]
        store = [o for k, o in stored.items() if k not in names] + [i.obj for i in items if _ignored(i.obj)]
    text, file = _dump_own(doc), f"{rec.dir / TOPOLOGY} (on lab {rec.name})"
    found: list[Diagnostic] = []
    try:
        with reporting(report=found.extend):
            topo = load_topology_text(text, file=file)
    except TopologyError as e:
        raise TopologyError(_in_files(e.diagnostics, text, file, items, len(kept), rec.name)) from None
    if delete:
        lines = tuple(f"{object_name(i.obj)} deleted" for i in items if _identity(i.obj) in had)
        gone = tuple(f"{i.file}: {object_name(i.obj)} not found in lab {rec.name}" for i in items
                     if _identity(i.obj) not in had)
        return Edit(topo, lines, gone, tuple(items), ignored=tuple(store))
    notes = tuple(_in_files(found, text, file, items, len(kept), rec.name, only_items=True))
    now = {_identity(m): m for m in _dumped(topo).get("manifests", [])}
    lines = tuple(f"{object_name(i.obj)} "
                  f"{outcome(had.get(_identity(i.obj)), i.obj if _ignored(i.obj) else now.get(_identity(i.obj)))}"
                  for i in items)
    return Edit(topo, lines, (), tuple(items), notes, tuple(store))


def edited(lab: Optional[str], path, delete: bool):
    """edit() for one file (or a list of Items): just the edited topology."""
    items = read_objects([path]) if isinstance(path, (str, Path)) else list(path)
    return edit(lab, items, delete).topo


def unselecting_policies(state: ClusterState, items: Sequence[Item]) -> list[str]:
    """Warnings for the applied NetworkPolicies that select no pod of their namespace."""
    from lab.policy.model import selects

    applied = {(ns, n) for k, ns, n in (_identity(i.obj) for i in items) if k == "NetworkPolicy"}
    names = {(_identity(i.obj)[1], _identity(i.obj)[2]): object_name(i.obj) for i in items}
    warnings = []
    for pol in state.policies:
        if (pol.namespace, pol.name) not in applied:
            continue
        if not any(p.namespace == pol.namespace and not p.host_network and selects(pol.pod_selector, p.label_dict())
                   for p in state.pods):
            warnings.append(f"{names[(pol.namespace, pol.name)]} selects no pod in namespace {pol.namespace}: "
                            "it has no effect until a pod with its labels runs there")
    return warnings


def apply(path, objects: bool = False, delete: bool = False, lab: Optional[str] = None,
          missing_ok: bool = False) -> Change:
    """path: a whole topology file, or (objects) a file of Kubernetes objects, or the Items read
    from several (read_objects), to apply or delete. missing_ok: delete what the lab has and
    report the rest in Change.missing, as kubectl does, instead of refusing everything."""
    from lab.controlplane.plan import plan
    from lab.topology.load import load_topology

    change = None
    if objects:
        items = read_objects([path]) if isinstance(path, (str, Path)) else list(path)
        change = edit(lab, items, delete, missing_ok=missing_ok)
        topo = change.topo
        if delete and not change.lines:
            return Change((), (), (), (), change.missing)
        path = ", ".join(dict.fromkeys(i.file for i in items))
    else:
        topo = load_topology(path)
    rec = records.load(topo.name)
    if rec.status != "running":
        raise LabError(f"lab {topo.name} is {rec.status}, not running")
    new = plan(topo, source=rec.state.source if objects else os.path.abspath(path), previous=rec.state)
    fixed = [f for f in FIXED if getattr(new, f) != getattr(rec.state, f)]
    if fixed:
        raise LabError(f"lab apply cannot change {', '.join(fixed)} of a running lab; "
                       f"`lab down {topo.name}` and `lab up {path}` rebuild it")
    with records.locked(rec):
        rec = records.load(topo.name)
        old: ClusterState = rec.state
        before = {p.key: p for p in old.pods}
        after = {p.key: p for p in new.pods}
        gone = [p for k, p in before.items() if k not in after or not _same_pod(p, after[k])]
        born = [p for k, p in after.items() if k not in before or not _same_pod(before[k], p)]
        was = (prober.status(rec), dict(rec.pod_ready))
        try:
            changed = _switch(rec, old, new, gone, born)
        except BaseException as e:
            problems = _roll_back(rec, old, new, gone, born, was)
            if problems:
                raise LabError(f"{e}\nlab apply failed, and rolling back failed too: {'; '.join(problems)}; "
                               f"`lab down {rec.name}` removes the lab") from None
            if isinstance(e, Exception):
                raise LabError(f"{e}\nlab apply failed; the lab was rolled back to what it was") from None
            raise
        save_topology(rec, topo)
        if change is not None:
            save_ignored(rec, change.ignored)
        rec.save()
    lines, missing, warnings = (), (), ()
    if change is not None:
        lines, missing = change.lines, change.missing
        warnings = () if delete else tuple(unselecting_policies(new, change.items))
    return Change(tuple(p.key for p in born), tuple(p.key for p in gone), tuple(sorted(changed)),
                  lines, missing, warnings, change.notes if change is not None else ())


def _switch(rec: LabRecord, old: ClusterState, new: ClusterState, gone: list[PodState], born: list[PodState]) -> set[str]:
    """Replace the pods that changed, then reconcile every controller to `new` (which commits it);
    any failure leaves the rest to _roll_back. Returns the Services kube-proxy re-synced."""
    errors = pods.remove(old, rec, gone)
    if errors:
        raise LabError("removing pods failed: " + "; ".join(errors))
    controllers.pods_gone(rec, gone)
    rec.save()
    controllers.pods_starting(new, rec, born)
    pods.create(new, rec, controllers.programs(), only=born)
    after = {p.key for p in new.pods}
    fresh = {container_key(p, c) for p in born for c in p.containers}
    was = prober.status(rec)
    ready = {k: v for k, v in was.ready.items() if pod_key_of(k) in after and k not in fresh}
    verdicts, details, failing = prober.first_round(replace(new, pods=tuple(born)))
    ready.update(verdicts)
    prober.write_status(rec, ready, {**{k: v for k, v in was.detail.items() if k in ready}, **details},
                        {**{k: v for k, v in was.failing.items() if k in ready}, **failing})
    pod_ready = prober.pod_readiness(new, ready, container_alive(rec))
    return set(controllers.reconcile(rec, new, pod_ready)[kube_proxy.NAME])


def _roll_back(rec: LabRecord, old: ClusterState, new: ClusterState, gone: list[PodState], born: list[PodState],
               was: tuple[prober.Status, dict]) -> list[str]:
    """Back to `old`, as `lab up` rolls back: the new pods removed, the removed ones made again,
    every controller synced in full. Keeps going past errors and returns them."""
    problems: list[str] = []

    def started(p: PodState) -> bool:
        return any(container_key(p, c) in rec.pids for c in p.containers)

    status, pod_ready = was
    prober.write_status(rec, status.ready, status.detail, status.failing)
    steps = [lambda: problems.extend(pods.remove(new, rec, [p for p in born if started(p) or p.netns in rec.netns])),
             lambda: controllers.pods_gone(rec, born),
             lambda: rec.commit(old, pod_ready),
             lambda: controllers.pods_starting(old, rec, gone),
             lambda: pods.create(old, rec, controllers.programs(), only=[p for p in gone if not started(p)]),
             lambda: controllers.reconcile(rec, old, pod_ready, first=True, errors=problems)]
    for step in steps:
        try:
            step()
        except Exception as e:  # report every step that failed, not just the first
            problems.append(str(e))
    rec.save()
    return problems
