"""lab.probe.netpol without root: which cells the truth table probes (every pod with a netns as
a source, each destination on its own served ports), the '-' cells nothing serves, the stable
order of rows and columns, 0 cells as an error, and how probe results become verdicts (a refusal
is never a denied cell)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lab.controlplane.plan import plan as plan_topology
from lab.probe import netpol
from lab.probe.engine import REPLY, ProbeResult
from lab.topology.load import load_topology_text
from tests.unit.golden import shipped_state

ROOT = Path(__file__).resolve().parents[2]
MS = ROOT / "topologies" / "netpol-cases" / "microservices"


NO_DNS = {"enabled": False}   # the layouts' own pods only, not the kube-dns add-on (on by default)


def ms_doc() -> dict:
    doc = yaml.safe_load((MS / "topology.yaml").read_text())
    doc.setdefault("cluster", {})["dns"] = NO_DNS
    return doc


def planned(doc: dict, previous=None):
    return plan_topology(load_topology_text(yaml.safe_dump(doc, sort_keys=False)), previous=previous)


def with_policies(doc: dict, path: Path) -> dict:
    doc = dict(doc, manifests=[*doc["manifests"], *yaml.safe_load(path.read_text())])
    return doc


def short(key: str) -> str:
    """shop/frontend-6547bd88cf-tr6qc -> shop/frontend (Deployment pod names carry a hash)."""
    ns, name = key.split("/")
    return f"{ns}/{name.split('-')[0]}"


def fake_engine(monkeypatch, answer):
    """Replace the probe engine: answer(probe, expect) -> ProbeResult; records what it was given."""
    calls = []

    def run_probes(probes, timeout=1.0, concurrency=256, expect=None, attempts=3):
        calls.append((list(probes), list(expect), timeout, attempts))
        return [answer(p, e) for p, e in zip(probes, expect)]

    monkeypatch.setattr(netpol, "run_probes", run_probes)
    return calls


def as_expected(probe, expect):
    if expect == REPLY:
        return ProbeResult(probe, True, "10.0.0.1", None, 0.001, "x", 1)
    return ProbeResult(probe, False, None, "timeout after 0.5s (connecting)", 0.5, None, 1)


# --- which cells ---------------------------------------------------------------------------

def test_the_e2e_layout_is_every_pod_to_every_pod_on_80_81_tcp_udp():
    p = netpol.plan(shipped_state("netpol", dns=NO_DNS))
    assert [s.key for s in p.sources] == [f"{ns}/{n}" for ns in "xyz" for n in "abc"]
    assert p.destinations == p.sources
    assert p.cases == ((80, "TCP"), (80, "UDP"), (81, "TCP"), (81, "UDP"))
    assert len(p.probed) == 324 and all(p.expected.values())


def test_the_kube_dns_pod_is_a_source_but_no_destination_on_the_asked_ports():
    """Cluster DNS is on by default: its pod sends probes like any pod, and serves none of 80/81."""
    p = netpol.plan(shipped_state("netpol"))
    assert [s.key for s in p.sources][1:] == [f"{ns}/{n}" for ns in "xyz" for n in "abc"]
    assert p.sources[0].key.startswith("kube-system/kube-dns-")
    assert [d.key for d in p.destinations] == [f"{ns}/{n}" for ns in "xyz" for n in "abc"]
    assert len(p.probed) == 10 * 9 * 4                              # every source to every destination


def test_each_destination_is_probed_on_its_own_ports_and_clients_are_sources():
    p = netpol.plan(planned(ms_doc()))
    assert sorted({short(s.key) for s in p.sources}) == [
        "ops/idle", "ops/statsd", "shop/backend", "shop/client", "shop/frontend"]
    assert len(p.sources) == 7                                      # 2 frontends, 2 backends
    assert {short(d.key) for d in p.destinations} == {"ops/statsd", "shop/backend", "shop/frontend"}
    assert p.cases == ((8080, "TCP"), (8125, "UDP"), (9000, "TCP"))
    served = {(8080, "TCP"): "shop/frontend", (9000, "TCP"): "shop/backend", (8125, "UDP"): "ops/statsd"}
    assert {(short(d), port, proto) for _, d, port, proto in p.probed} == {
        (dst, port, proto) for (port, proto), dst in served.items()}
    assert len(p.probed) == 7 * 2 + 7 * 2 + 7 * 1                  # sources x the destinations serving it
    assert {short(s) for s, *_ in p.probed} >= {"shop/client", "ops/idle"}


def test_a_command_container_s_ports_are_not_probed():
    doc = ms_doc()
    client = next(m for m in doc["manifests"] if m["metadata"]["name"] == "client")
    client["spec"]["containers"][0]["ports"] = [{"containerPort": 7000}]   # what `sleep` speaks is unknown
    p = netpol.plan(planned(doc))
    assert "shop/client" not in {d.key for d in p.destinations} and 7000 not in {c[0] for c in p.cases}


def test_host_network_pods_are_neither_sources_nor_destinations():
    doc = ms_doc()
    doc["manifests"].append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "agent", "namespace": "ops"},
                             "spec": {"hostNetwork": True, "containers": [
                                 {"name": "a", "image": "netexec", "ports": [{"containerPort": 9100}]}]}})
    p = netpol.plan(planned(doc))
    assert "ops/agent" not in {s.key for s in (*p.sources, *p.destinations)} and (9100, "TCP") not in p.cases


def test_asked_ports_that_a_destination_does_not_serve_are_not_served_never_probed():
    state = planned(ms_doc())
    p = netpol.plan(state, ports=[8080, 5555], protocols=["TCP", "UDP"])
    assert p.cases == ((8080, "TCP"), (8080, "UDP"), (5555, "TCP"), (5555, "UDP"))
    assert {(short(d), port, proto) for _, d, port, proto in p.probed} == {("shop/frontend", 8080, "TCP")}
    assert netpol.plan(state, protocols=["udp"]).cases == ((8125, "UDP"),)


def test_cells_nobody_serves_show_as_not_served_in_the_grid(monkeypatch):
    fake_engine(monkeypatch, as_expected)
    m = netpol.measure(planned(ms_doc()), ports=[8080], protocols=["TCP"])
    frontends = [d.key for d in m.plan.destinations if short(d.key) == "shop/frontend"]
    for k, c in m.cells.items():
        assert (c.observed == netpol.NOT_SERVED) == (k[1] not in frontends)
        assert c.observed != netpol.DENIED
    out = netpol.table(m)
    assert "14 cells, observed = expected (21 not served, '-')" in out
    row = next(l for l in out.splitlines() if l.startswith("shop/client"))
    cols = [d.key for d in m.plan.destinations]
    assert [mark for mark in row.split()[1:]] == ["." if c in frontends else "-" for c in cols]
    assert "'-' not served" in out


# --- 0 cells is an error -----------------------------------------------------------------

def test_nothing_served_is_an_error_that_names_the_pods():
    doc = ms_doc()
    doc["manifests"] = [m for m in doc["manifests"] if m["kind"] == "Namespace" or
                        m["metadata"]["name"] in ("client", "idle")]
    with pytest.raises(netpol.NothingToProbe) as e:
        netpol.plan(planned(doc))
    text = str(e.value)
    assert "nothing to probe" in text and "no pod serves anything with netexec" in text
    assert "shop/client (sleep infinity)" in text and "ops/idle (pause)" in text


def test_asking_for_a_port_nobody_serves_is_an_error_saying_what_is_served():
    with pytest.raises(netpol.NothingToProbe) as e:
        netpol.plan(planned(ms_doc()), ports=[5555])
    assert "no destination serves 5555/TCP, 5555/UDP" in str(e.value) and "8125/UDP" in str(e.value)
    with pytest.raises(netpol.NothingToProbe):
        netpol.plan(planned(ms_doc()), protocols=["SCTP"])


# --- stable order ------------------------------------------------------------------------

def test_rows_and_columns_are_sorted_whatever_the_manifest_order():
    doc = ms_doc()
    reordered = dict(doc, manifests=list(reversed(doc["manifests"][2:])) + doc["manifests"][:2])
    a, b = netpol.plan(planned(doc)), netpol.plan(planned(reordered))
    keys = [s.key for s in a.sources]
    assert keys == sorted(keys, key=lambda k: tuple(k.split("/"))) and [s.key for s in b.sources] == keys
    assert [d.key for d in a.destinations] == [d.key for d in b.destinations] and a.probed == b.probed


def test_relabels_and_policies_do_not_reorder_the_table():
    base = shipped_state("netpol")                                  # as shipped: with the kube-dns pod
    doc = yaml.safe_load((ROOT / "topologies" / "netpol.yaml").read_text())
    for m in doc["manifests"]:
        if m["kind"] == "Namespace" and m["metadata"]["name"] == "x":
            m["metadata"]["labels"] = {"ns": "zz"}
        if m["kind"] == "Pod" and (m["metadata"]["namespace"], m["metadata"]["name"]) == ("x", "a"):
            m["metadata"]["labels"] = {"pod": "zz"}
    doc["manifests"] += yaml.safe_load((ROOT / "topologies" / "netpol-cases" / "default-deny-ingress.yaml").read_text())
    after = planned(doc, previous=base)
    before_plan, after_plan = netpol.plan(base), netpol.plan(after)
    assert after_plan.probed == before_plan.probed
    assert not all(after_plan.expected.values())                    # the policy did change expectations


# --- expectations and verdicts -------------------------------------------------------------

def test_expectations_come_from_the_model_and_go_to_the_engine(monkeypatch):
    doc = with_policies(ms_doc(), MS / "policies.yaml")
    calls = fake_engine(monkeypatch, as_expected)
    m = netpol.measure(planned(doc), timeout=0.25, attempts=4)
    probes, expect, timeout, attempts = calls[0]
    assert (timeout, attempts) == (0.25, 4) and len(probes) == len(expect) == len(m.plan.probed)
    allowed = {(short(s), short(d), port) for (s, d, port, _), e in zip(m.plan.probed, expect) if e == REPLY}
    # client -> frontend, frontend -> backend, shop -> statsd, and every pod to itself
    assert ("shop/client", "shop/frontend", 8080) in allowed and ("ops/idle", "shop/frontend", 8080) not in allowed
    assert ("shop/frontend", "shop/backend", 9000) in allowed and ("shop/client", "shop/backend", 9000) not in allowed
    assert ("shop/client", "ops/statsd", 8125) in allowed and ("ops/idle", "ops/statsd", 8125) not in allowed
    assert not m.differences()
    out = netpol.table(m)
    assert " X" in out and " -" in out and "observed = expected" in out


def test_a_refusal_is_a_failure_with_its_reason_never_a_denied_cell(monkeypatch):
    state = shipped_state("netpol", dns=NO_DNS)

    def answer(probe, expect):
        if probe.port == 81 and probe.protocol == "TCP" and probe.dst_ip == by_key["x/b"].ip:
            return ProbeResult(probe, False, None, "connection refused", 0.001, None, 1)
        if probe.port == 80 and probe.protocol == "UDP" and probe.dst_ip == by_key["y/c"].ip:
            return ProbeResult(probe, False, None, "timeout after 2.0s (waiting for reply)", 2.0, None, 3)
        return as_expected(probe, expect)

    by_key = {p.key: p for p in state.pods}
    fake_engine(monkeypatch, answer)
    m = netpol.measure(state)
    diff = m.differences()
    refused = [c for c in diff if c.observed == netpol.REFUSED]
    assert len(refused) == 9 and all(c.dst == "x/b" and (c.port, c.protocol) == (81, "TCP") for c in refused)
    dropped = [c for c in diff if c.observed == netpol.DENIED]
    assert len(dropped) == 9 and all(c.attempts == 3 for c in dropped)
    out = netpol.table(m)
    assert "R*" in out and "X*" in out
    assert "x/a -> x/b 81/TCP: expected allowed, observed refused: connection refused (1 try)" in out
    assert "x/a -> y/c 80/UDP: expected allowed, observed denied: timeout after 2.0s (waiting for reply) (3 tries)" in out
    assert "324 cells, 18 differ from what the policies say" in out


def test_a_refusal_where_the_policies_deny_also_differs(monkeypatch):
    state = planned(with_policies(ms_doc(), MS / "policies.yaml"))
    fake_engine(monkeypatch, lambda p, e: as_expected(p, e) if e == REPLY else
                ProbeResult(p, False, None, "connection refused", 0.001, None, 1))
    m = netpol.measure(state)
    assert m.differences() and all(c.observed == netpol.REFUSED and c.expected is False for c in m.differences())


def test_json_has_every_cell(monkeypatch):
    fake_engine(monkeypatch, as_expected)
    m = netpol.measure(planned(ms_doc()))
    data = netpol.as_json(m)
    assert data["probed"] == 35 and data["not_served"] == 7 * 5 * 3 - 35 and data["differences"] == 0
    assert len(data["cells"]) == 7 * 5 * 3   # sources x destinations x grids
    cell = next(c for c in data["cells"] if c["observed"] == "not served")
    assert cell["expected"] is None and cell["attempts"] == 0 and cell["error"] is None
    assert set(data["cells"][0]) >= {"src", "dst", "port", "protocol", "expected", "observed", "error", "attempts"}
