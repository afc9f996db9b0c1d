"""`lab apply FILE`: change a running lab to what the file now says, as controllers would.

Pods that are gone or whose containers changed are removed; new ones are wired and started;
running pods keep their node and IP. Services and EndpointSlices follow, and kube-proxy's rules
are re-synced incrementally (only the Services that changed are rewritten). What a running
cluster cannot change in place — nodes, addresses, the pod network — is refused with the reason.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane.state import ClusterState, PodState, container_key, pod_key_of
from lab.dns import runtime as dns
from lab.errors import LabError
from lab.kube_proxy import sync as kube_proxy
from lab.node import pods, prober
from lab.host import record as records
from lab.host.record import LabRecord
from lab.policy import sync as netpol
from lab.runtime.agent import container_alive

# What `lab apply` cannot change: these need `lab down` and `lab up`.
FIXED = ("pod_cidr", "service_cidr", "node_mask", "network", "cni", "mtu", "underlay_subnet", "underlay_mtu",
         "switch", "nodes", "hosts", "proxy")


@dataclass(frozen=True)
class Change:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    services: tuple[str, ...]

    def __str__(self) -> str:
        parts = [f"{len(self.added)} pods created", f"{len(self.removed)} pods deleted",
                 f"{len(self.services)} Services re-synced"]
        return ", ".join(parts)


def _same_pod(a: PodState, b: PodState) -> bool:
    """Labels may change in place (relabelling); anything else means a new pod."""
    return replace(a, labels=()) == replace(b, labels=())


TOPOLOGY = "topology.yaml"  # in the lab's run directory: the topology as it stands now


def save_topology(record, topo) -> None:
    """What the lab runs, as one self-contained document (a manifests folder inlined), so that
    `lab apply -f` and `lab delete -f` can change it object by object, as kubectl does."""
    import yaml

    (record.dir / TOPOLOGY).write_text(yaml.safe_dump(topo.model_dump(mode="json", by_alias=True,
                                                                      exclude_defaults=True), sort_keys=False))


def _objects(path: str) -> list[dict]:
    """Kubernetes objects from a manifests file: documents, each an object or a list of them."""
    import yaml

    try:
        docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d is not None]
    except OSError as e:
        raise LabError(f"cannot read {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise LabError(f"{path}: not valid YAML: {e}") from None
    objs = [o for d in docs for o in (d if isinstance(d, list) else [d])]
    bad = [o for o in objs if not isinstance(o, dict) or "kind" not in o or "metadata" not in o]
    if bad:
        raise LabError(f"{path}: every document must be a Kubernetes object (kind, metadata, ...)")
    return objs


def _identity(o: dict) -> tuple:
    meta = o.get("metadata") or {}
    return o.get("kind"), meta.get("namespace") or "default", meta.get("name")


def edited(lab: Optional[str], path: str, delete: bool):
    """The running lab's topology with the objects of `path` applied (replaced by kind, namespace
    and name, or added) or deleted, validated like a topology file."""
    import yaml

    from lab.topology.load import load_topology_text

    rec = records.find(lab)
    doc = yaml.safe_load((rec.dir / TOPOLOGY).read_text())
    objs = _objects(path)
    names = {_identity(o) for o in objs}
    kept = [m for m in doc.get("manifests", []) if _identity(m) not in names]
    if delete:
        missing = names - {_identity(m) for m in doc.get("manifests", [])}
        if missing:
            raise LabError("not found in lab " + rec.name + ": " + ", ".join(f"{k} {ns}/{n}" for k, ns, n in sorted(missing)))
        doc["manifests"] = kept
    else:
        doc["manifests"] = kept + objs
    return load_topology_text(yaml.safe_dump(doc, sort_keys=False), file=f"{path} (on lab {rec.name})")


def apply(path: str, objects: bool = False, delete: bool = False, lab: Optional[str] = None) -> Change:
    """path: a whole topology file, or (objects) a file of Kubernetes objects to apply or delete."""
    from lab.controlplane.plan import plan
    from lab.topology.load import load_topology

    topo = edited(lab, path, delete) if objects else load_topology(path)
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
        was = (dict(rec.ready), dict(rec.probe_detail), dict(rec.pod_ready))
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
        rec.save()
    return Change(tuple(p.key for p in born), tuple(p.key for p in gone), tuple(sorted(changed)))


def _switch(rec: LabRecord, old: ClusterState, new: ClusterState, gone: list[PodState], born: list[PodState]) -> set[str]:
    """Replace the pods that changed, then re-sync kube-proxy, DNS and the policies to `new`, and
    commit it; any failure leaves the rest to _roll_back."""
    errors = pods.remove(old, rec, gone)
    if errors:
        raise LabError("removing pods failed: " + "; ".join(errors))
    dns.remove_resolv_confs(rec, [p.netns for p in gone])
    rec.save()
    if new.dns_domain:
        dns.write_resolv_confs(replace(new, pods=tuple(born)), rec)
    pods.create(new, rec, only=born)
    after = {p.key for p in new.pods}
    fresh = {container_key(p, c) for p in born for c in p.containers}
    ready = {k: v for k, v in rec.ready.items() if pod_key_of(k) in after and k not in fresh}
    verdicts, details = prober.first_round(replace(new, pods=tuple(born)))
    ready.update(verdicts)
    rec.ready = ready
    rec.probe_detail = {**{k: v for k, v in rec.probe_detail.items() if k in ready}, **details}
    pod_ready = prober.pod_readiness(new, ready, container_alive(rec))
    changed = kube_proxy.sync(rec, new, pod_ready)
    dns.update(new, endpoint_slices(new, pod_ready), rec)
    netpol.sync(rec, new)
    rec.commit(new, pod_ready)
    return changed


def _roll_back(rec: LabRecord, old: ClusterState, new: ClusterState, gone: list[PodState], born: list[PodState],
               was: tuple[dict, dict, dict]) -> list[str]:
    """Back to `old`, as `lab up` rolls back: the new pods removed, the removed ones made again,
    every node's rules rewritten in full. Keeps going past errors and returns them."""
    problems: list[str] = []

    def started(p: PodState) -> bool:
        return any(container_key(p, c) in rec.pids for c in p.containers)

    rec.ready, rec.probe_detail, pod_ready = was
    steps = [lambda: problems.extend(pods.remove(new, rec, [p for p in born if started(p) or p.netns in rec.netns])),
             lambda: dns.remove_resolv_confs(rec, [p.netns for p in born]),
             lambda: rec.commit(old, pod_ready),
             lambda: dns.write_resolv_confs(replace(old, pods=tuple(gone)), rec) if old.dns_domain else None,
             lambda: pods.create(old, rec, only=[p for p in gone if not started(p)]),
             lambda: kube_proxy.sync(rec, old, pod_ready, first=True),
             lambda: dns.update(old, endpoint_slices(old, pod_ready), rec),
             lambda: netpol.sync(rec, old)]
    for step in steps:
        try:
            step()
        except Exception as e:  # report every step that failed, not just the first
            problems.append(str(e))
    rec.save()
    return problems
