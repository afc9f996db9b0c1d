"""lab trace on the other pod networks (trhg: host-gw, trbgp: bgp with cni ptp, 2 nodes each): the
observed walk matches the prediction cross-node pod→pod, pod→Service, pod→external and for ICMP;
the hops after kube-proxy's MASQUERADE --random-fully (external host → NodePort whose only endpoint
is on the other node) are observed on the port conntrack says was picked; captures show the packets;
a Ctrl-C leaves no trace table, monitor or capture."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.integration.conftest import ROOT, lab, needs_root, wait_for

pytestmark = [pytest.mark.root, needs_root]
DATA = ROOT / "tests" / "data" / "trace"


def _up(name: str):
    lab("up", str(DATA / f"{name}.yaml"))
    try:
        pods = json.loads(lab("--lab", name, "get", "pods", "-o", "json").stdout)["items"]
        yield name, next(p["metadata"]["name"] for p in pods if p["metadata"]["name"].startswith("web")
                         and p["spec"]["nodeName"] == "n2")
    finally:
        lab("down", name, check=False)


@pytest.fixture(scope="module", params=["trhg", "trbgp"])
def labn(request):
    yield from _up(request.param)


def trace(name: str, *args: str) -> dict:
    out = lab("--lab", name, "trace", *args, "-o", "json", check=False)
    return json.loads(out.stdout)


def differing(doc: dict) -> list[str]:
    return [f"{r['step']} {r['component']}: {r['observed']}" for r in doc["rows"] if r["mark"] == "≠"]


def test_cross_node_pod_to_pod_service_external_and_icmp(labn):
    name, web = labn
    for args in ([web], ["svc/web:80"], ["host/internet"], [web, "--protocol", "ICMP"]):
        doc = trace(name, "client", *args)
        assert doc["observed"]["ok"] and not differing(doc), (args, doc["verdict"], differing(doc))
    doc = trace(name, "client", web)
    route = next(r for r in doc["rows"] if r["component"] == "node n1 routing")
    assert "via 172.18.0.3 dev eth0" in route["observed"] and route["mark"] == "="
    if name == "trbgp":   # the route FRR learned, as the kernel has it
        assert "proto bgp" in route["observed"]
    caps = [r for r in doc["rows"] if r["step"].endswith("c")]
    assert caps and all(r["mark"] == "=" for r in caps), caps


def test_icmp_is_traced_by_its_echo_id(labn):
    name, web = labn
    doc = trace(name, "client", web, "--protocol", "ICMP")
    arrive = next(r for r in doc["rows"] if r["component"] == "node n2" and r["observed"].startswith("in on"))
    assert arrive["mark"] == "=" and f"id {doc['observed']['sport']}" in json.dumps(doc["rows"])
    deliver = next(r for r in doc["rows"] if r["predicted"].startswith("delivered"))
    assert "from 10.244.0." in deliver["observed"] and deliver["mark"] == "="


def test_hops_after_random_fully_masquerade_are_observed(labn):
    name, _ = labn
    doc = trace(name, "host/internet", "node/n2:30081")   # solo's only endpoint is the client on n1
    assert doc["observed"]["ok"] and not differing(doc), differing(doc)
    snat = next(r for r in doc["rows"] if "random-fully" in r["predicted"])
    assert "source port" in snat["observed"], snat
    new = doc["observed"]["ports"][-1]
    after = [r for r in doc["rows"] if r["namespace"] == f"{name}-n1" and r["step"][-1].isdigit()]
    assert after and all(r["mark"] in "=?" for r in after)
    assert any(f":{new} →" in r["observed"] for r in after), after     # traced on the picked port
    assert not any("random-fully changed" in r["observed"] for r in doc["rows"])


def test_ctrl_c_leaves_nothing(labn):
    name, _ = labn
    proc = subprocess.Popen([sys.executable, "-m", "lab", "--lab", name, "trace", "client", "locked"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def tables() -> str:
        return subprocess.run(["ip", "netns", "exec", f"{name}-n2", "nft", "list", "tables"], capture_output=True,
                              text=True).stdout
    try:
        assert wait_for(lambda: "k8snetlab_trace" in tables(), timeout=5, step=0.01)
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    for ns in (f"{name}-n1", f"{name}-n2", f"{name}-default-client", f"{name}-internet"):
        out = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "tables"], capture_output=True, text=True).stdout
        assert "k8snetlab_trace" not in out, ns
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "xtables-monitor --trace" not in ps and "tcpdump -i any" not in ps
