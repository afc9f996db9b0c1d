"""The JSON the page gets (pure): the picture `lab graph` builds, and beside it the lists the page
names things by — nodes with kubectl's Ready/NotReady, pods with their readiness, Services, hosts,
the active faults — and what a click may trace (each box's trace target).

The picture is lab.graph's own model, so the browser shows what `lab graph` draws, grouped the same
way above lab.graph.build.GROUP_ABOVE pods."""
from __future__ import annotations

from dataclasses import asdict
from typing import Collection, Mapping, Sequence

from lab.controlplane.state import ClusterState
from lab.graph.build import build
from lab.graph.model import Box, Graph


def node_status(name: str, stopped: Collection[str]) -> str:
    """kubectl's word: a node off the network (lab node stop) is NotReady."""
    return "NotReady" if name in stopped else "Ready"


def _targets(state: ClusterState) -> dict[str, str]:
    """What `lab trace` calls each thing a click may pick: pods, Services (their first port), hosts,
    nodes (the page adds a NodePort)."""
    out = {p.key: f"pod/{p.key}" for p in state.pods}
    for s in state.services:
        if s.cluster_ip and s.ports:
            out[f"svc/{s.key}"] = f"svc/{s.name}.{s.namespace}:{s.ports[0].port}"
    out.update({f"host/{h.name}": f"host/{h.name}" for h in state.hosts})
    out.update({f"node/{n.name}": f"node/{n.name}" for n in state.nodes})
    return out


def _box(b: Box, targets: Mapping[str, str]) -> dict:
    one = len(b.keys) == 1 and b.keys[0] in targets
    return {"id": b.id, "lines": list(b.lines), "kind": b.kind, "keys": list(b.keys),
            "target": targets[b.keys[0]] if one else ""}


def graph_json(g: Graph, targets: Mapping[str, str]) -> dict:
    return {
        "title": g.title, "notes": list(g.notes),
        "boxes": [_box(b, targets) for b in g.boxes],
        "clusters": [{"id": c.id, "lines": list(c.lines), "kind": c.kind, "keys": list(c.keys),
                      "boxes": [_box(b, targets) for b in c.boxes]} for c in g.clusters],
        "links": [asdict(link) for link in g.links],
    }


def netns_boxes(state: ClusterState, g: Graph) -> dict[str, str]:
    """The box a trace hop in each network namespace is drawn at: a pod's own box, a node's eth0,
    a host's box (so the walk can be drawn on the picture)."""
    by_key = {k: b.id for b in [*g.boxes, *(b for c in g.clusters for b in c.boxes)] for k in b.keys}
    out = {}
    for n in state.nodes:
        if f"node/{n.name}" in by_key:
            out[n.netns] = by_key[f"node/{n.name}"]
    for h in state.hosts:
        if f"host/{h.name}" in by_key:
            out[h.netns] = by_key[f"host/{h.name}"]
    for p in state.pods:
        if not p.host_network and p.key in by_key:
            out[p.netns] = by_key[p.key]
    return out


def snapshot(state: ClusterState, pod_ready: Mapping[str, bool], stopped: Sequence[str],
             faults: Sequence[Mapping], version: int) -> dict:
    """Everything the page draws, for one version of the lab's record."""
    g = build(state, pod_ready, stopped)
    targets = _targets(state)
    return {
        "lab": state.lab, "version": version,
        "graph": graph_json(g, targets),
        "netns": netns_boxes(state, g),
        "nodes": [{"name": n.name, "role": n.role, "ip": n.ip, "podCIDR": n.pod_cidr,
                   "status": node_status(n.name, stopped)} for n in state.nodes],
        "pods": [{"key": p.key, "namespace": p.namespace, "name": p.name, "node": p.node, "ip": p.ip,
                  "ready": bool(pod_ready.get(p.key, False)), "hostNetwork": p.host_network,
                  "target": targets[p.key]} for p in state.pods],
        "services": [{"key": s.key, "type": s.type, "clusterIP": s.cluster_ip or "",
                      "ports": [{"port": sp.port, "protocol": sp.protocol, "nodePort": sp.node_port} for sp in s.ports],
                      "target": targets.get(f"svc/{s.key}", "")} for s in state.services],
        "hosts": [{"name": h.name, "ip": h.ip} for h in state.hosts],
        "faults": [{"id": f["id"], "kind": f["kind"], "target": f["target"], "params": dict(f.get("params", {}))}
                   for f in faults],
    }


def fault_kinds() -> list[dict]:
    """The fault vocabulary for the actions form (lab fault kinds)."""
    from lab.faults.model import KINDS

    return [{"kind": k, "help": info.help, "targets": list(info.targets),
             "params": {name: {"help": p.help, "choices": list(p.choices), "required": p.required,
                               "default": p.default} for name, p in info.params.items()}}
            for k, info in KINDS.items()]


def policy_table(matrix: Mapping, namespace: str = "") -> dict:
    """`lab netpol matrix -o json`'s document, narrowed to one namespace (both ends in it) if given."""
    if not namespace:
        return dict(matrix)

    def mine(key: str) -> bool:
        return key.split("/", 1)[0] == namespace

    cells = [c for c in matrix["cells"] if mine(c["src"]) and mine(c["dst"])]
    return {**matrix, "sources": [s for s in matrix["sources"] if mine(s)],
            "destinations": [d for d in matrix["destinations"] if mine(d)], "cells": cells,
            "probed": sum(c["expected"] is not None for c in cells), "not_served": sum(c["expected"] is None for c in cells),
            "differences": sum(bool(c["differs"]) for c in cells)}


def exercise_panel(ex, s, grade=None) -> dict:
    """The exercise panel: its tasks, their status by the visible tests (`lab exercise check`), how
    many hints each has. Hidden tests, answers and solutions are never in it: only the titles of
    visible tests, and only outcomes that are not hidden."""
    tasks = []
    graded = {t.id: t for t in grade.tasks} if grade is not None and not grade.error else {}
    for task in ex.tasks:
        row = {"id": task.id, "title": task.title, "points": task.points, "needs": list(task.needs),
               "hints": len(task.hints) + (1 if task.hintchecks else 0), "hints_used": s.hints.get(task.id, 0),
               "asks_answer": task.answer is not None,
               "tests": [t.step.title for t in task.tests if not t.hidden]}
        t = graded.get(task.id)
        if t is not None:
            row["status"] = "locked" if t.locked_by else "done" if t.done else "not yet"
            row["locked_by"] = list(t.locked_by)
            row["outcomes"] = [{"name": o.name, "passed": o.passed, "reason": o.reason}
                               for o in t.outcomes if not o.hidden and not o.is_answer]
        tasks.append(row)
    out = {"exercise": ex.name, "title": ex.title, "lab": ex.lab, "tasks": tasks}
    if grade is not None:
        out["error"] = grade.error
    return out
