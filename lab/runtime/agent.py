"""The lab's kubelet and endpoint controller in one small process per lab.

It runs every readinessProbe on its period, watches that containers still run, and whenever a
pod's readiness changes it recomputes the EndpointSlices and re-syncs kube-proxy's rules on every
node — so a backend that stops answering leaves its Services within a probe period, as in a
cluster. `lab up` starts it (`python -m lab.runtime.agent LAB`), `lab down` stops it, and it exits
by itself when its lab is gone.
"""
from __future__ import annotations

import sys
import time

from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane.state import container_key
from lab.dns import runtime as dns
from lab.kube_proxy.sync import sync
from lab.node import prober
from lab.node.processes import alive
from lab.host import record as records
from lab.host.record import LabRecord, locked

TICK = 0.2  # seconds between looks at the clock; probes run on their own periods


def container_alive(rec: LabRecord):
    return lambda key: key in rec.pids and alive(rec.pids[key])


class Agent:
    def __init__(self, name: str):
        self.name = name
        self.trackers: dict[str, prober.Tracker] = {}
        self.due: dict[str, float] = {}
        self.details: dict[str, str] = {}
        self.state = None

    def adopt(self, rec: LabRecord) -> None:
        """Track the probes of the record's state (again after a `lab apply`), keeping history."""
        if rec.state == self.state:
            return
        self.state, now = rec.state, time.monotonic()
        trackers = {}
        for pod, c in prober.probed(rec.state):
            key = container_key(pod, c)
            trackers[key] = self.trackers.get(key) or prober.Tracker(c.readiness, ready=rec.ready.get(key, False))
            self.due.setdefault(key, now + max(c.readiness.period, c.readiness.initial_delay))
        self.trackers = trackers
        self.details = {k: self.details.get(k) or rec.probe_detail.get(k, "") for k in trackers}

    def step(self) -> bool:
        """One look: run due probes, sync if readiness changed. False once the lab is gone."""
        try:
            rec = records.load(self.name)
        except Exception:  # the record is gone (lab down) or mid-removal: our lab is over
            return False
        if rec.status != "running":
            return False
        self.adopt(rec)
        now = time.monotonic()
        due = [(p, c) for p, c in prober.probed(rec.state) if self.due.get(container_key(p, c), now) <= now]
        for (p, c), (ok, detail) in zip(due, prober.run_probes(rec.state, due)):
            key = container_key(p, c)
            self.trackers[key].record(ok)
            self.details[key] = detail
            self.due[key] = now + c.readiness.period
        ready = {k: t.ready for k, t in self.trackers.items()}
        details = {k: v for k, v in self.details.items() if k in ready}
        pod_ready = prober.pod_readiness(rec.state, ready, container_alive(rec))
        if ready != rec.ready or pod_ready != rec.pod_ready:
            with locked(rec):
                rec = records.load(self.name)  # `lab apply` may have written meanwhile
                rec.ready, rec.probe_detail = ready, details
                pod_ready = prober.pod_readiness(rec.state, ready, container_alive(rec))
                changed = sync(rec, rec.state, pod_ready)
                dns.update(rec.state, endpoint_slices(rec.state, pod_ready), rec)
                rec.commit(rec.state, pod_ready)
                rec.save()
            print(f"{time.strftime('%H:%M:%S')} readiness changed; synced {', '.join(sorted(changed)) or 'no Service'}",
                  flush=True)
        elif details != rec.probe_detail:  # only what the probes saw: `lab check` explains with it
            with locked(rec):
                rec = records.load(self.name)
                rec.probe_detail = details
                rec.save()
        return True


def main(argv: list[str]) -> int:
    agent = Agent(argv[0])
    while agent.step():
        time.sleep(TICK)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
