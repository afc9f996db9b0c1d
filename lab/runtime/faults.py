"""`lab fault add|clear|list`: break a running lab on purpose and undo it exactly.

add(): validate, read what the undo needs, record the fault with its undo ops (write-ahead: a `lab
fault` killed half-way leaves a record `lab fault clear` can finish), then apply step by step; a
step that fails undoes the steps before it, so nothing stays half-applied. Everything happens under
the record's sync lock: the agent writes the same record, and a stopped agent must never hold it.
Every fault lives in the lab's own namespaces and processes, so `lab down` removes whatever is
still active with them.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from typing import Optional

from lab import host
from lab.errors import LabError
from lab.faults import model, ops
from lab.faults.model import Fault, FaultPlan
from lab.host import record as records
from lab.host.record import LabRecord, locked
from lab.node import containers
from lab import routing
from lab.routing import runtimes

SIGNALS = {"SIGSTOP": "STOP", "SIGCONT": "CONT", "SIGKILL": "KILL"}


# --- reading what the undo needs ---

def _json(argv: list[str], **kw):
    done = host.run(argv, check=False, **kw)
    return json.loads(done.stdout or "null") if done.ok else None


def _pid(rec: LabRecord, key: str) -> int:
    if key == "agent":
        return rec.agent
    daemon, _, name = key.partition("/")
    if daemon == routing.backend(rec.state).node_daemon:  # "bgpd/NODE": the pod network's daemon
        return runtimes.of(rec.state.network).daemon_pid(rec, name)
    return rec.pids.get(key, 0)


def _read(rec: LabRecord, read: tuple):
    what = read[0]
    if what == "link":
        links = _json(["ip", "-n", read[1], "-d", "-j", "link", "show", "dev", read[2]])
        return links[0] if links else None
    if what == "peer":
        mine = _json(["ip", "-n", read[1], "-j", "link", "show", "dev", "eth0"]) or [{}]
        peers = _json(["ip", "-n", read[2], "-d", "-j", "link", "show"]) or []
        return next((l for l in peers if l["ifindex"] == mine[0].get("link_index")), None)
    if what == "routes":
        six = (_json(["ip", "-6", "-n", read[1], "-d", "-j", "route", "show"]) or []) if 6 in rec.state.families else []
        return (_json(["ip", "-n", read[1], "-d", "-j", "route", "show"]) or []) + six
    if what == "neigh":
        return _json(["ip", "-n", read[1], "-j", "neigh", "show", "nud", "permanent"]) or []
    if what == "qdisc":
        q = _json(["tc", "-n", read[1], "-j", "qdisc", "show", "dev", read[2], "root"])
        return q[0]["kind"] if q else None
    if what == "forward":
        rules = host.output(["iptables", "-w", "-S", "FORWARD"], netns=read[1]).split()
        return rules[rules.index("-P") + 2] if "-P" in rules else "ACCEPT"
    if what == "sysctl":
        def value() -> Optional[str]:
            try:
                return host.read_text("/proc/sys/" + read[2].replace(".", "/")).strip()
            except OSError:
                return None
        return host.in_ns(read[1], value)
    if what == "bgp-remote-as":
        shown = _json(_vtysh(rec, read[1], [f"show bgp neighbors {read[2]} json"]), netns=rec.state.node(read[1]).netns)
        return (shown or {}).get(read[2], {}).get("remoteAs")
    if what == "kernel":
        return os.uname().release
    if what == "proc":
        pid = _pid(rec, read[1])
        start = records.proc_start(pid) if pid else None
        return [pid, start] if start else None
    raise LabError(f"internal: unknown read {read!r}")


def observe(rec: LabRecord, reads: list[tuple]) -> dict:
    return {ops.key(r): _read(rec, r) for r in reads}


def _vtysh(rec: LabRecord, name: str, commands: list[str]) -> list[str]:
    """vtysh talking to this node's FRR (its own vty directory, from the pod network's runtime)."""
    return runtimes.of(rec.state.network).command(rec, name, ["vtysh", *[a for c in commands for a in ("-c", c)]])


# --- doing ---

def _signal(where, sig: str, undoing: bool) -> None:
    pid, start = where
    if records.proc_start(pid) != start:
        if undoing:
            return  # the process is gone (lab apply, a crash): nothing left to continue
        raise LabError(f"process {pid} is gone")
    host.run(["kill", "-s", SIGNALS[sig], str(pid)])


def _restart(rec: LabRecord, key: str) -> None:
    """A killed container starts again as `lab up` started it; the agent's probes do the rest. A
    killed agent is replaced by a new one (recorded before the lock it waits for is let go)."""
    if key == "agent":
        from lab.runtime import lifecycle

        rec.agent = lifecycle.start_agent(rec)
        rec.save()
        return
    ns, name, cname = key.split("/")
    pod = next(p for p in rec.state.pods if p.namespace == ns and p.name == name)
    from lab.runtime import controllers  # every controller's module: only a restart needs them

    starter = containers.Starter(rec, controllers.programs())
    starter.start_pod(replace(pod, containers=tuple(c for c in pod.containers if c.name == cname)))
    starter.wait_ready()  # records the new PID and saves


def run_op(rec: LabRecord, op: tuple, undoing: bool = False) -> None:
    kind, where, body = op
    if kind == "ip":
        host.ip_batch(list(body), netns=where)
    elif kind == "tc":
        try:
            host.run(["tc", "-n", where, "-batch", "-"], input="\n".join(body) + "\n")
        except LabError as e:
            if "netem" in " ".join(body):
                raise LabError(f"not on this kernel: no sch_netem ({e})") from None
            raise
    elif kind == "nft":
        host.restore(where, ["nft", "-f", "-"], body, "the fault's nft table")
    elif kind == "iptables":
        host.run(["iptables", "-w", *body], netns=where)
    elif kind == "sysctl":
        host.sysctl(where, dict(body))
    elif kind == "signal":
        _signal(where, body, undoing)
    elif kind == "start":
        _restart(rec, where)
    elif kind == "vtysh":
        host.run(_vtysh(rec, where, body), netns=rec.state.node(where).netns)
    elif kind == "sleep":
        time.sleep(where)
    else:
        raise LabError(f"internal: unknown fault operation {kind!r}")


def _undo(rec: LabRecord, undo: list) -> list[tuple]:
    """Run undo ops past failures (each is safe to repeat); the ops that failed, with their errors."""
    failed = []
    for op in undo:
        try:
            run_op(rec, op, undoing=True)
        except LabError as e:
            failed.append((op, str(e)))
    return failed


def _apply(rec: LabRecord, fault: Fault, fp: FaultPlan) -> None:
    """Each step in order; on a failure the done steps (and a failing multi-op step) are undone."""
    for i, step in enumerate(fp.steps):
        try:
            for op in step.apply:
                run_op(rec, op)
        except BaseException as e:  # a Ctrl-C during a flap too
            undone = [op for s in reversed(fp.steps[:i + (len(step.apply) > 1)]) for op in s.undo]
            failed = _undo(rec, undone)
            _forget(rec, fault.id, keep=[op for op, _ in failed])
            if failed:
                raise LabError(f"{fault.kind} {fault.target} failed ({e}) and its undo failed too "
                               f"({'; '.join(err for _, err in failed)}); kept as {fault.id}: "
                               f"`lab fault clear {fault.id}` tries again") from None
            if isinstance(e, LabError):
                raise LabError(f"{fault.kind} {fault.target} could not be applied: {e} (nothing was left applied)") from None
            raise


def _forget(rec: LabRecord, fid: str, keep: Optional[list] = None) -> None:
    """Drop a fault from the record (the caller holds the lock), or keep it with the undo ops still owed."""
    fresh = records.load(rec.name)
    _set(fresh, [d if d["id"] != fid else {**d, "undo": [list(op) for op in keep]}
                 for d in _recorded(fresh) if d["id"] != fid or keep])
    fresh.save()
    _set(rec, _recorded(fresh))


def _running(lab: Optional[str]) -> LabRecord:
    rec = records.find(lab)
    if rec.status != "running":
        raise LabError(f"lab {rec.name} is {rec.status}, not running")
    return rec


# --- the API (lab fault, lab scenario) ---

def add(lab: Optional[str], kind: str, target: str, params: dict) -> Fault:
    """Apply one fault; LabError naming what is wrong (and what exists) when it cannot be, with
    nothing left applied."""
    problems = model.validate(kind, target, params)
    if problems:
        raise LabError("; ".join(problems))
    rec = _running(lab)
    with locked(rec):
        rec = records.load(rec.name)
        fid = model.next_id(active_in(rec))
        reads = model.reads(rec.state, kind, target, params)
        fp = model.plan(rec.state, kind, target, params, observe(rec, reads), fault_id=fid)
        fault = Fault(fid, kind, target, model.normalize(kind, target, params)[0], fp.undo, time.time())
        _set(rec, [*_recorded(rec), fault.to_dict()])
        rec.save()  # write-ahead: the undo is on disk before anything changes
        if not fp.blocking:
            _apply(rec, fault, fp)
            return fault
    _apply(rec, fault, fp)  # a flap sleeps: the agent keeps syncing meanwhile
    with locked(rec):
        _forget(rec, fault.id)
    return fault


def clear(lab: Optional[str], fault_id: Optional[str] = None) -> list[Fault]:
    """Undo one fault or all (newest first) and forget them; LabError for an unknown id or an undo
    that failed (that fault stays recorded)."""
    rec = _running(lab)
    with locked(rec):
        rec = records.load(rec.name)
        faults = active_in(rec)
        if fault_id is not None and fault_id not in {f.id for f in faults}:
            raise LabError(f"no fault {fault_id!r} in lab {rec.name}; active: {', '.join(f.id for f in faults) or 'none'}")
        chosen = [f for f in reversed(faults) if fault_id in (None, f.id)]
        cleared, errors = [], []
        for f in chosen:
            failed = _undo(rec, f.undo)
            _forget(rec, f.id, keep=[op for op, _ in failed])
            if failed:
                errors.append(f"{f.id} ({f.kind} {f.target}): " + "; ".join(err for _, err in failed))
            else:
                cleared.append(f)
    if errors:
        raise LabError("could not undo " + ", ".join(errors) + "; what failed stays recorded for another `lab fault clear`")
    return cleared


def active_in(rec: LabRecord) -> list[Fault]:
    return [Fault.from_dict(d) for d in _recorded(rec)]


SECTION = "faults"  # the record's section of `lab fault`: the active faults with their undo ops


def _recorded(rec: LabRecord) -> list[dict]:
    return list(rec.sections.get(SECTION, {}).get("active", []))


def _set(rec: LabRecord, faults: list[dict]) -> None:
    rec.section(SECTION)["active"] = faults


def take_all(rec: LabRecord) -> list[dict]:
    """Forget every active fault and return them (an exercise's setup bakes its faults into the
    lab); the caller holds the lock and saves."""
    faults = _recorded(rec)
    _set(rec, [])
    return faults


def active(lab: Optional[str]) -> list[Fault]:
    return active_in(records.find(lab))
