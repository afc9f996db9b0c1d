"""The lab's kubelet and endpoint controller in one small process per lab.

It runs every readinessProbe on its period, watches that containers still run, and whenever a
pod's readiness changes it recomputes the EndpointSlices and re-syncs kube-proxy's rules on every
node — so a backend that stops answering leaves its Services within a probe period, as in a
cluster. `lab up` starts it (`python -m lab.runtime.agent LAB`), `lab down` stops it, and it exits
by itself when its lab is gone: no record any more, or a record that no longer says running.

Errors. Only those two mean "the lab is gone". Any other exception in a step is logged to the
agent's log (`/run/k8s-netlab/<lab>/logs/agent.log`) with its traceback, and the agent goes on: a
step is a fresh look at the record and the kernel, so the next one retries whatever failed (a
sync refused while a node was busy, a probe thread that hit a bug). If the lab vanished under the
failed step (`lab down` removes the files and namespaces the step was using), the agent exits
quietly instead. While steps keep failing the agent backs off (doubling up to RETRY_MAX seconds)
and logs a repeated error in one line, so a lasting bug neither spins nor floods the log. A
damaged record is such an error, not a gone lab: `lab clean` or `lab down` decides its fate.
"""
from __future__ import annotations

import sys
import time
import traceback
from typing import Optional

from lab.controlplane.state import container_key
from lab.kube_proxy import sync as kube_proxy
from lab.loadbalancer import speaker
from lab.node import prober, underlay
from lab.node.processes import alive
from lab.runtime import controllers
from lab.host import record as records
from lab.host.record import LabRecord, locked

TICK = 0.2        # seconds between looks at the clock; probes run on their own periods
RETRY_MAX = 10.0  # the longest wait after failed steps


def container_alive(rec: LabRecord):
    return lambda key: key in rec.pids and alive(rec.pids[key])


class Agent:
    def __init__(self, name: str):
        self.name = name
        self.trackers: dict[str, prober.Tracker] = {}
        self.due: dict[str, float] = {}
        self.details: dict[str, str] = {}
        self.failing: dict[str, list] = {}   # key -> [first, last, count]: a failure event, as the kubelet counts it
        self.state = None
        self.failures = 0                    # steps failed in a row
        self.last_error: Optional[str] = None
        self.stopped: Optional[list[str]] = None  # the stopped nodes at the last look (their LB entries are gone)

    def adopt(self, rec: LabRecord) -> None:
        """Track the probes of the record's state (again after a `lab apply`), keeping history."""
        if rec.state == self.state:
            return
        self.state, now, kubelet = rec.state, time.monotonic(), prober.status(rec)
        trackers = {}
        for pod, c in prober.probed(rec.state):
            key = container_key(pod, c)
            trackers[key] = self.trackers.get(key) or prober.Tracker(c.readiness, ready=kubelet.ready.get(key, False))
            self.due.setdefault(key, now + max(c.readiness.period, c.readiness.initial_delay))
        self.trackers = trackers
        self.details = {k: self.details.get(k) or kubelet.detail.get(k, "") for k in trackers}
        self.failing = {k: self.failing.get(k) or kubelet.failing[k] for k in trackers
                        if k in self.failing or k in kubelet.failing}

    def step(self) -> bool:
        """One look: run due probes, sync if readiness changed. False once the lab is gone; any
        other error is raised (turn() decides what to do with it)."""
        try:
            rec = records.load(self.name)
        except records.NoSuchLab:  # `lab down` removed it
            return False
        if rec.status != "running":  # `lab down` is removing it
            return False
        self.adopt(rec)
        now = time.monotonic()
        due = [(p, c) for p, c in prober.probed(rec.state) if self.due.get(container_key(p, c), now) <= now]
        for (p, c), (ok, detail) in zip(due, prober.run_probes(rec.state, due)):
            key = container_key(p, c)
            self.trackers[key].record(ok)
            self._count(key, ok, detail)
            self.details[key] = detail
            self.due[key] = now + c.readiness.period
        ready = {k: t.ready for k, t in self.trackers.items()}
        details = {k: v for k, v in self.details.items() if k in ready}
        failing = {k: v for k, v in self.failing.items() if k in ready}
        pod_ready = prober.pod_readiness(rec.state, ready, container_alive(rec))
        kubelet = prober.status(rec)
        if ready != kubelet.ready or pod_ready != rec.pod_ready:
            with locked(rec):
                rec = records.load(self.name)  # `lab apply` may have written meanwhile
                if rec.status != "running":  # nor write "running" over `lab down`'s "deleting"
                    return False
                prober.write_status(rec, ready, details, failing)
                pod_ready = prober.pod_readiness(rec.state, ready, container_alive(rec))
                done = controllers.reconcile(rec, rec.state, pod_ready)
                rec.save()
            changed = done[kube_proxy.NAME]
            print(f"{time.strftime('%H:%M:%S')} readiness changed; synced {', '.join(sorted(changed)) or 'no Service'}",
                  flush=True)
            if done[speaker.NAME]:
                print(f"{time.strftime('%H:%M:%S')} load-balancer addresses: {'; '.join(done[speaker.NAME])}", flush=True)
        elif details != kubelet.detail or failing != kubelet.failing:  # `lab check` and `describe` explain with it
            with locked(rec):
                rec = records.load(self.name)
                if rec.status != "running":
                    return False
                prober.write_status(rec, prober.status(rec).ready, details, failing)
                rec.save()
        self.speak(rec)
        return True

    def speak(self, rec: LabRecord) -> None:
        """MetalLB's speakers: an LB address whose node stopped, or lost its last ready endpoint under
        externalTrafficPolicy Local, moves to another node, which sends gratuitous ARP. A node that
        stopped or started lost its proxy entries with its link: all are written again."""
        stopped = sorted(underlay.stopped(rec))
        refresh, self.stopped = self.stopped is not None and stopped != self.stopped, stopped
        if not refresh and speaker.wanted(rec, rec.state, rec.pod_ready) == speaker.speaking(rec):
            return
        with locked(rec):
            rec = records.load(self.name)
            if rec.status != "running":
                return
            done = speaker.sync(rec, rec.state, rec.pod_ready, refresh=refresh)
            rec.save()
        print(f"{time.strftime('%H:%M:%S')} load-balancer addresses: {'; '.join(done)}", flush=True)

    def _count(self, key: str, ok: bool, detail: str) -> None:
        """Failures with the same result are one event seen N times (kubelet's event aggregation);
        a success ends it."""
        now = time.time()
        if ok:
            self.failing.pop(key, None)
        elif key in self.failing and self.details.get(key) == detail:
            self.failing[key] = [self.failing[key][0], now, self.failing[key][2] + 1]
        else:
            self.failing[key] = [now, now, 1]

    def gone(self) -> bool:
        """Whether the lab is over: no record, or one that no longer says running."""
        try:
            return records.load(self.name).status != "running"
        except records.NoSuchLab:
            return True
        except Exception:  # a damaged record: not gone, the step's error is what to report
            return False

    def turn(self) -> Optional[float]:
        """One step under the agent's error policy (see the module's docstring): the seconds to
        wait before the next step, or None once the lab is gone."""
        try:
            if not self.step():
                return None
        except Exception as e:
            if self.gone():
                return None
            self.failures += 1
            wait = min(TICK * 2 ** self.failures, RETRY_MAX)
            error = f"{type(e).__name__}: {e}"
            if error == self.last_error:
                print(f"{time.strftime('%H:%M:%S')} step failed again ({self.failures} in a row): {error}; "
                      f"next try in {wait:.1f}s", flush=True)
            else:
                print(f"{time.strftime('%H:%M:%S')} step failed; next try in {wait:.1f}s\n{traceback.format_exc()}",
                      end="", flush=True)
            self.last_error = error
            return wait
        if self.failures:
            print(f"{time.strftime('%H:%M:%S')} steps work again after {self.failures} failed", flush=True)
        self.failures, self.last_error = 0, None
        return TICK


def main(argv: list[str]) -> int:
    agent = Agent(argv[0])
    while (wait := agent.turn()) is not None:
        time.sleep(wait)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
