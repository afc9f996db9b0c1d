"""`lab trace` output (pure): the seed's table (Step | Component | What happens) with the observation
beside each prediction, or JSON with both walks."""
from __future__ import annotations

import json
from dataclasses import asdict
from typing import Optional

from lab.trace.compare import DIFFERENT, Row
from lab.trace.events import Observed
from lab.trace.predict import Hop
from lab.views import render_table


def verdict(rows: list[Row], obs: Optional[Observed]) -> str:
    differs = sum(r.mark == DIFFERENT for r in rows)
    if obs is None:
        return "predicted only"
    answer = f"answered in {obs.elapsed * 1000:.1f} ms" if obs.ok else f"no answer ({obs.error})"
    return f"{answer}; " + (f"{differs} step(s) differ from the prediction (≠)" if differs else
                            "every observed step matches the prediction")


def table(title: str, rows: list[Row], obs: Optional[Observed]) -> str:
    body = render_table(["STEP", "COMPONENT", "WHAT HAPPENS (predicted)", "OBSERVED", ""],
                        [[r.step, r.component, r.predicted, r.observed, r.mark] for r in rows])
    sport = f", source port {obs.sport}" if obs is not None else ""
    return f"{title}{sport}\n{body}\n{verdict(rows, obs)}"


def to_json(title: str, hops: list[Hop], rows: list[Row], obs: Optional[Observed]) -> str:
    doc = {"trace": title, "verdict": verdict(rows, obs), "predicted": [asdict(h) for h in hops],
           "rows": [asdict(r) for r in rows]}
    if obs is not None:
        doc["observed"] = {"sport": obs.sport, "ports": obs.ports, "ok": obs.ok, "error": obs.error, "seen_source": obs.seen,
                           "server": obs.server, "elapsed": round(obs.elapsed, 4), "conntrack": obs.conntrack,
                           "routes": [{"netns": ns, "dst": ip, "route": r} for (ns, ip), r in obs.routes.items()],
                           "trace": {ns: [{"packet": dict(v.packet.fields), "hook": v.hook,
                                           "events": [asdict(e) for e in v.events]} for v in visits]
                                     for ns, visits in obs.visits.items()},
                           "captures": {ns: [asdict(c) for c in caps] for ns, caps in obs.captures.items()},
                           "nat": obs.nat}
    return json.dumps(doc, indent=1, ensure_ascii=False)
