"""proxy ebpf in a real lab: a pod's connections to a ClusterIP are spread by the node's socket LB
over both backends (TCP, and unconnected UDP whose replies come back from the Service address), a
process outside the node's cgroup is untouched, a backend that becomes unready stops receiving
connections (a map update, the programs stay), NodePorts from an outside host are the tc
program's (and fail when it is detached; `lab trace` predicts and checks its step, and shows
the difference when it is detached), no node has kube-proxy rules, and `lab down` leaves no
cgroup, program, map or pin. One lab for the module (and the shipped ebpf.yaml for `lab check`)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import TOPOLOGIES, lab, needs_root, wait_for

pytestmark = [needs_root, pytest.mark.root]

NAME = "ebpftest"
CGROUP = f"/sys/fs/cgroup/unified/k8s-netlab-{NAME}"
TOPOLOGY = f"""
name: {NAME}
cluster: {{network: vxlan, proxy: ebpf, dns: {{enabled: false}}}}
underlay: {{subnet: 172.18.70.0/24}}
nodes: [{{name: w1}}, {{name: w2}}]
hosts: [{{name: out}}]
manifests:
  - apiVersion: v1
    kind: Pod
    metadata: {{name: be1, labels: {{app: be}}}}
    spec:
      nodeName: w1
      containers: [{{name: web, image: netexec, ports: [{{containerPort: 8080}}, {{containerPort: 5353, protocol: UDP}}],
                    readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, periodSeconds: 1, timeoutSeconds: 1,
                                      failureThreshold: 1}}}}]
  - apiVersion: v1
    kind: Pod
    metadata: {{name: be2, labels: {{app: be}}}}
    spec:
      nodeName: w2
      containers: [{{name: web, image: netexec, ports: [{{containerPort: 8080}}, {{containerPort: 5353, protocol: UDP}}],
                    readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, periodSeconds: 1, timeoutSeconds: 1,
                                      failureThreshold: 1}}}}]
  - apiVersion: v1
    kind: Pod
    metadata: {{name: client}}
    spec: {{nodeName: w1, containers: [{{name: c, image: netexec, ports: [{{containerPort: 80}}]}}]}}
  - apiVersion: v1
    kind: Service
    metadata: {{name: be}}
    spec:
      clusterIP: 10.96.7.7
      selector: {{app: be}}
      ports: [{{name: http, port: 80, targetPort: 8080}}, {{name: dns, port: 53, targetPort: 5353, protocol: UDP}}]
  - apiVersion: v1
    kind: Service
    metadata: {{name: be-np}}
    spec: {{type: NodePort, selector: {{app: be}}, ports: [{{port: 80, targetPort: 8080, nodePort: 30090}}]}}
  - apiVersion: v1
    kind: Service
    metadata: {{name: be-local}}
    spec:
      type: NodePort
      externalTrafficPolicy: Local
      selector: {{app: be}}
      ports: [{{port: 80, targetPort: 8080, nodePort: 30091}}]
"""
UDP_CLIENT = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for _ in range(20):
    s.sendto(b"whoami", ("10.96.7.7", 53))
    data, peer = s.recvfrom(4096)
    print(peer[0], peer[1], data.decode().split()[0])
"""


def bpf_ids(kind: str) -> set[int]:
    out = subprocess.run(["bpftool", "-j", kind, "show"], capture_output=True, text=True, check=True).stdout
    return {o["id"] for o in json.loads(out or "[]")}


def hits(node: str) -> int:
    out = subprocess.run(["bpftool", "-j", "map", "dump", "pinned", f"/run/k8s-netlab/{NAME}/bpf/{node}/maps/lb_hits"],
                         capture_output=True, text=True, check=True).stdout
    # with BTF, bpftool's JSON has the raw bytes under "value" and the decoded entry under "formatted"
    return sum(e["formatted"]["value"] for e in json.loads(out))


def record() -> dict:
    return json.loads(Path(f"/run/k8s-netlab/{NAME}/record.json").read_text())


def servers(n: int) -> list[str]:
    """n connections from the client pod, as one of its processes (lab exec: the node's cgroup)."""
    out = lab("--lab", NAME, "exec", "client", "--", "sh", "-c",
              f"for i in $(seq {n}); do curl -s -m 2 http://10.96.7.7/hostname; echo; done").stdout
    return out.split()


@pytest.fixture(scope="module")
def ebpf_lab(tmp_path_factory):
    before = {"prog": bpf_ids("prog"), "map": bpf_ids("map")}
    path = tmp_path_factory.mktemp("ebpf") / "ebpf.yaml"
    path.write_text(TOPOLOGY)
    lab("up", str(path))
    try:
        yield before
    finally:
        lab("down", NAME, check=False)


def test_a_pod_reaches_both_backends_through_the_socket_lb(ebpf_lab):
    assert {"w1", "w2"} <= set(os.listdir(CGROUP))
    got = servers(40)
    assert len(got) == 40 and set(got) == {"be1", "be2"}, got
    assert hits("w1") >= 40
    nft = lab("--lab", NAME, "exec", "node/w1", "--", "nft", "list", "ruleset").stdout
    assert "10.96.7.7" not in nft and "KUBE-SVC" not in nft, "ClusterIPs are the socket LB's, not netfilter's"


def test_udp_unconnected_sendmsg_and_the_reply_from_the_service_address(ebpf_lab):
    out = lab("--lab", NAME, "exec", "client", "--", "python3", "-c", UDP_CLIENT).stdout.split("\n")
    rows = [l.split() for l in out if l.strip()]
    assert len(rows) == 20
    assert {(r[0], r[1]) for r in rows} == {("10.96.7.7", "53")}, "recvmsg4 gives the Service address back"
    assert {r[2] for r in rows} == {"be1", "be2"}


def test_a_process_outside_the_nodes_cgroup_is_untouched(ebpf_lab):
    pod_ns = next(p["netns"] for p in record()["state"]["pods"] if p["name"] == "client")
    before = hits("w1")
    done = subprocess.run(["ip", "netns", "exec", pod_ns, "curl", "-s", "-m", "1", "http://10.96.7.7/hostname"],
                          capture_output=True, text=True)
    assert done.returncode != 0 and done.stdout == "", "no rewrite: the ClusterIP is on no interface"
    assert hits("w1") == before
    # the same command, in the node's cgroup, is balanced: the difference is the cgroup alone
    placed = ["sh", "-c", 'echo $$ > "$0" && exec "$@"', f"{CGROUP}/w1/cgroup.procs",
              "ip", "netns", "exec", pod_ns, "curl", "-s", "-m", "2", "http://10.96.7.7/hostname"]
    assert subprocess.run(placed, capture_output=True, text=True).stdout in ("be1", "be2")
    assert hits("w1") == before + 1


def test_an_unready_backend_stops_receiving_connections_by_a_map_update(ebpf_lab):
    progs = bpf_ids("prog")
    pid = record()["pids"]["default/be2/web"]
    os.kill(pid, signal.SIGSTOP)   # its readiness probe times out: unready after one failure
    try:
        assert wait_for(lambda: record()["pod_ready"].get("default/be2") is False, timeout=15), "be2 never became unready"
        assert wait_for(lambda: set(servers(10)) == {"be1"}, timeout=5)
        assert set(servers(30)) == {"be1"}
        assert bpf_ids("prog") == progs, "the programs were not reloaded"
    finally:
        os.kill(pid, signal.SIGCONT)
    assert wait_for(lambda: record()["pod_ready"].get("default/be2") is True, timeout=15)
    assert wait_for(lambda: set(servers(20)) == {"be1", "be2"}, timeout=5)


def test_trace_shows_the_rewrite_at_connect_and_no_dnat(ebpf_lab):
    doc = json.loads(lab("--lab", NAME, "trace", "client", "svc/be:80", "-o", "json").stdout)
    first = doc["rows"][0]
    assert "socket LB rewrote the destination at connect()" in first["predicted"]
    assert first["observed"].startswith("no DNAT in netfilter; answered by be") and first["mark"] == "="
    assert not any(h["kind"] == "dnat" for h in doc["predicted"]), "no DNAT is predicted that cannot be observed"
    sent = next(h for h in doc["predicted"] if h["kind"] == "send")
    assert sent["expect"][1] in (ip_of("be1"), ip_of("be2")), "the packet is born addressed to the backend"


def ip_of(pod: str) -> str:
    return next(p["ip"] for p in record()["state"]["pods"] if p["name"] == pod)


def node_ip(name: str) -> str:
    return next(n["ip"] for n in record()["state"]["nodes"] if n["name"] == name)


def from_outside(node: str, port: int, path: str, n: int = 1) -> list[str]:
    """n HTTP requests from the outside host to a node's NodePort: one line each ("" if it failed)."""
    out = lab("--lab", NAME, "exec", "host/out", "--", "sh", "-c",
              f"for i in $(seq {n}); do curl -s -m 2 http://{node_ip(node)}:{port}{path} || printf x; echo; done").stdout
    return [l if l != "x" else "" for l in out.splitlines()]


def test_no_node_has_kube_proxy_rules(ebpf_lab):
    for node in ("w1", "w2"):
        tables = lab("--lab", NAME, "exec", f"node/{node}", "--", "nft", "list", "tables").stdout
        assert "kube-proxy" not in tables and "ip-masq-agent" in tables, tables
        saved = lab("--lab", NAME, "exec", f"node/{node}", "--", "iptables-save").stdout
        assert "KUBE-SVC" not in saved and "KUBE-NODEPORTS" not in saved


def test_nodeports_from_outside_by_the_tc_program(ebpf_lab):
    host_ip = next(h["ip"] for h in record()["state"]["hosts"] if h["name"] == "out")
    nodes = {node_ip("w1"), node_ip("w2")}
    # externalTrafficPolicy Cluster: every backend, the backend sees a node's address (SNAT)
    assert set(from_outside("w1", 30090, "/hostname", 20)) == {"be1", "be2"}
    seen = {l.rsplit(":", 1)[0] for l in from_outside("w1", 30090, "/clientip", 10)}
    assert seen and "" not in seen and host_ip not in seen, seen
    assert seen <= nodes | {"10.244.0.0", "10.244.1.0", "10.244.2.0"}, "the receiving node's address or its tunnel's"
    # Local: only the node's own backend, which sees the client's own address
    assert set(from_outside("w1", 30091, "/hostname", 10)) == {"be1"}
    assert set(from_outside("w2", 30091, "/hostname", 10)) == {"be2"}
    assert {l.rsplit(":", 1)[0] for l in from_outside("w2", 30091, "/clientip", 5)} == {host_ip}


def test_a_nodeport_fails_when_the_tc_program_is_detached(ebpf_lab):
    lab("--lab", NAME, "exec", "node/w1", "--", "tc", "filter", "del", "dev", "eth0", "ingress")
    try:
        assert from_outside("w1", 30090, "/hostname", 3) == ["", "", ""], "nothing else serves the NodePort"
        assert set(from_outside("w2", 30090, "/hostname", 10)) == {"be1", "be2"}, "w2's program is untouched"
    finally:
        lab("--lab", NAME, "exec", "node/w1", "--", "tc", "filter", "replace", "dev", "eth0", "ingress", "prio", "1",
            "handle", "1", "bpf", "direct-action", "object-pinned", f"/run/k8s-netlab/{NAME}/bpf/w1/progs/tc_nodeport")
    assert set(from_outside("w1", 30090, "/hostname", 20)) == {"be1", "be2"}


def trace_from_outside(node: str, port: int, check: bool = True) -> dict:
    """`lab trace` from the outside host to a NodePort, as JSON (it exits non-zero when a step differs)."""
    return json.loads(lab("--lab", NAME, "trace", "host/out", f"node/{node}:{port}", "-o", "json", check=check).stdout)


def test_trace_of_a_nodeport_from_outside_is_the_tc_program_and_matches_the_kernel(ebpf_lab):
    for node, port, source in (("w1", 30090, "snat"), ("w2", 30091, "client")):
        before = hits(node)
        doc = trace_from_outside(node, port)
        differing = [r for r in doc["rows"] if r["mark"] == "≠"]
        assert not differing, differing
        tc = next(r for r in doc["rows"] if r["predicted"] and "tc_nodeport" in r["component"])
        assert tc["mark"] == "=" and "already as" in tc["observed"] and "lb_external" in tc["predicted"], tc
        assert "lb_nat: " in tc["observed"], "the probe's own entry in the node's lb_nat, read with bpftool"
        assert ("SNAT to" in tc["predicted"]) == (source == "snat"), tc["predicted"]
        assert not any(h["kind"] == "dnat" for h in doc["predicted"]), "no kube-proxy DNAT is predicted"
        assert hits(node) > before, "the tc program counted its pick in lb_hits"


def test_trace_of_a_nodeport_differs_when_the_tc_program_is_detached(ebpf_lab):
    lab("--lab", NAME, "exec", "node/w1", "--", "tc", "filter", "del", "dev", "eth0", "ingress")
    try:
        done = lab("--lab", NAME, "trace", "host/out", "node/w1:30090", "-o", "json", check=False)
    finally:
        lab("--lab", NAME, "exec", "node/w1", "--", "tc", "filter", "replace", "dev", "eth0", "ingress", "prio", "1",
            "handle", "1", "bpf", "direct-action", "object-pinned", f"/run/k8s-netlab/{NAME}/bpf/w1/progs/tc_nodeport")
    doc = json.loads(done.stdout)
    assert done.returncode != 0 and "differ" in doc["verdict"], doc["verdict"]
    tc = next(r for r in doc["rows"] if r["predicted"] and "tc_nodeport" in r["component"])
    assert tc["mark"] == "≠" and "untranslated" in tc["observed"], tc
    assert any(r["mark"] == "≠" and r["observed"].startswith("no answer") for r in doc["rows"]), doc["rows"]


def test_describe_svc_reads_the_maps_and_names_a_stale_backend(ebpf_lab):
    text = lab("--lab", NAME, "describe", "svc", "be-np").stdout
    rows = [l.split() for l in text.split("Map entries")[1].splitlines()[2:] if l.strip() and "Events" not in l]
    assert {(r[0], r[2]) for r in rows} >= {("w1", "lb_services"), ("w1", "lb_external"), ("w2", "lb_external")}
    assert all(r[-1] == "ok" for r in rows), text
    assert "ebpf/socket-lb+tc" in lab("--lab", NAME, "get", "svc").stdout
    # a backend the Service does not have, written into slot 0 of w2's ClusterIP entry
    sid = next(r[3] for r in rows if r[0] == "w2" and r[2] == "lb_services" and r[1].endswith(":80"))
    key = " ".join(f"{b:02x}" for b in int(sid, 16).to_bytes(4, "little")) + " 00 00 00 00"
    maps = f"/run/k8s-netlab/{NAME}/bpf/w2/maps"
    old = subprocess.run(["bpftool", "-j", "map", "lookup", "pinned", f"{maps}/lb_backends", "key", "hex", *key.split()],
                         capture_output=True, text=True, check=True).stdout
    value = [x[2:] for x in json.loads(old)["value"]]
    try:
        subprocess.run(["bpftool", "map", "update", "pinned", f"{maps}/lb_backends", "key", "hex", *key.split(),
                        "value", "hex", "0a", "f4", "09", "09", "1f", "90", "00", "00"], check=True)
        assert "stale: 10.244.9.9:8080" in lab("--lab", NAME, "describe", "svc", "be-np").stdout
    finally:
        subprocess.run(["bpftool", "map", "update", "pinned", f"{maps}/lb_backends", "key", "hex", *key.split(),
                        "value", "hex", *value], check=True)
    assert "stale" not in lab("--lab", NAME, "describe", "svc", "be-np").stdout


def test_lab_check_passes_on_the_shipped_ebpf_topology(ebpf_lab):
    lab("up", str(TOPOLOGIES / "ebpf.yaml"))
    try:
        done = lab("--lab", "ebpf", "check", check=False, timeout=120)
        assert done.returncode == 0 and "PASSED" in done.stdout, done.stdout + done.stderr
        for node in ("control-plane", "worker1", "worker2"):  # the Done-when, on the shipped topology
            tables = lab("--lab", "ebpf", "exec", f"node/{node}", "--", "nft", "list", "tables").stdout
            assert "kube-proxy" not in tables, (node, tables)
            assert "tc_nodeport" in lab("--lab", "ebpf", "exec", f"node/{node}", "--", "tc", "filter", "show", "dev",
                                        "eth0", "ingress").stdout
    finally:
        lab("down", "ebpf", check=False)


def test_lab_down_leaves_no_cgroup_program_map_or_pin(ebpf_lab):
    lab("down", NAME)
    assert not os.path.exists(CGROUP)
    assert not os.path.exists(f"/run/k8s-netlab/{NAME}")
    assert "/bpf" not in "".join(l for l in open("/proc/self/mounts") if NAME in l)
    assert wait_for(lambda: bpf_ids("prog") == ebpf_lab["prog"] and bpf_ids("map") == ebpf_lab["map"], timeout=5), \
        (bpf_ids("prog") - ebpf_lab["prog"], bpf_ids("map") - ebpf_lab["map"])
