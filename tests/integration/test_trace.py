"""lab trace on a real lab (trc: vxlan, 2 nodes, a NodePort Service, a policy): every path's observed
walk matches the prediction, the denied pair names its policy, a fault's drop is named, and no trace
table or monitor is left behind."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, lab, needs_root

pytestmark = [pytest.mark.root, needs_root]
TOPOLOGY = ROOT / "tests" / "data" / "trace" / "trc.yaml"


@pytest.fixture(scope="module")
def trc():
    lab("up", str(TOPOLOGY))
    try:
        state = json.loads(Path("/run/k8s-netlab/trc/record.json").read_text())["state"]
        yield {p["name"].split("-")[0] + ("" if p["name"].startswith("web") is False else "@" + p["node"]): p["name"]
               for p in state["pods"]}
    finally:
        lab("down", "trc", check=False)


def trace(*args: str) -> dict:
    out = lab("--lab", "trc", "trace", *args, "-o", "json", check=False)
    return json.loads(out.stdout)


def marks(doc: dict) -> list[str]:
    return [f"{r['step']} {r['component']}: {r['observed']}" for r in doc["rows"] if r["mark"] == "≠"]


@pytest.mark.parametrize("src,dst", [
    ("client", "web@n1"), ("client", "web@n2"), ("client", "svc/web:80"), ("node/n1", "web@n2"),
    ("client", "host/internet"), ("host/internet", "node/n2:30080"),
])
def test_observed_matches_predicted(trc, src, dst):
    doc = trace(trc.get(src, src), trc.get(dst, dst))
    assert doc["observed"]["ok"], doc["verdict"]
    assert not marks(doc), marks(doc)


def test_service_shows_the_endpoint_that_answered(trc):
    doc = trace("client", "svc/web:80")
    dnat = next(r for r in doc["rows"] if r["observed"].startswith("conntrack: DNAT to"))
    assert doc["observed"]["server"] in trc.values()
    assert dnat["mark"] == "="


def test_vxlan_outer_header_is_observed(trc):
    doc = trace("client", trc["web@n2"])
    encap = next(r for r in doc["rows"] if "encapsulates" in r["predicted"])
    assert "UDP dport 8472" in encap["observed"] and encap["mark"] == "="


def test_denied_pair_names_the_policy(trc):
    doc = trace("client", "locked")
    drop = next(r for r in doc["rows"] if "DROP" in r["observed"])
    assert "default/locked: ingress not allowed by any policy" in drop["observed"] and drop["mark"] == "="


def test_a_fault_drop_is_named_and_nothing_is_left(trc):
    lab("--lab", "trc", "fault", "add", "drop", "node/n2", "proto=udp", "port=8472", "direction=in")
    try:
        doc = trace("client", trc["web@n2"])
    finally:
        lab("--lab", "trc", "fault", "clear")
    assert any("k8snetlab_fault_" in m for m in marks(doc)), marks(doc)
    for ns in ("trc-n1", "trc-n2", "trc-default-client"):
        tables = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "tables"], capture_output=True, text=True).stdout
        assert "k8snetlab_trace" not in tables
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "xtables-monitor --trace" not in ps


def test_pcap_is_a_readable_capture_holding_the_probes_packets(trc, tmp_path):
    out = tmp_path / "walk.pcap"
    doc = json.loads(lab("--lab", "trc", "trace", "client", trc["web@n2"], "-o", "json", "--pcap", str(out)).stdout)
    sport = doc["observed"]["sport"]
    read = subprocess.run(["tcpdump", "-r", str(out), "-nn", "-T", "vxlan"], capture_output=True, text=True)
    assert read.returncode == 0, read.stderr
    syns = [l for l in read.stdout.splitlines() if f".{sport} > " in l and "Flags [S]" in l]
    assert syns, read.stdout                                  # the probe's SYN, seen where it was captured
    lines = read.stdout.splitlines()                          # and inside VXLAN (outer, then inner header)
    assert any("8472: VXLAN" in a and f".{sport} > " in b for a, b in zip(lines, lines[1:])), read.stdout
    kept = list(Path("/run/k8s-netlab/trc/traces").glob("*/trace.pcap"))
    assert any(k.read_bytes() == out.read_bytes() for k in kept)   # the lab keeps it (lab down removes it)


def test_pcap_without_capture_is_a_clear_error(trc, tmp_path):
    done = lab("--lab", "trc", "trace", "client", trc["web@n2"], "--no-capture", "--pcap", str(tmp_path / "x.pcap"),
               check=False)
    assert done.returncode != 0 and "drop --no-capture" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.pcap").exists()
