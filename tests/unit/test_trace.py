"""lab trace, pure parts: the monitor's lines, the predicted walk on shipped topologies, the comparison."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane.plan import plan
from lab.errors import LabError
from lab.trace import compare, events, predict
from lab.trace.events import Observed
from lab.trace.run import targets
from lab.topology.model import Topology
from tests.unit.golden import check_golden, shipped_state

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "trace" / "xtables-monitor-drop.txt"


def test_monitor_lines_parse_into_visits_with_the_dropping_policy():
    visits = events.parse(SAMPLE.read_text())
    forward = next(v for v in visits if v.hook == "filter FORWARD")
    assert forward.packet.get("IN") == "flannel.1" and forward.packet.get("OUT") == "cni0"
    assert forward.packet.get("SRC") == "10.244.0.3" and forward.packet.get("DPORT") == "8080"
    drop = events.drops(visits)
    assert drop[0].chain.startswith("LAB-NP-IN-")
    assert drop[0].comment == "default/locked: ingress not allowed by any policy"
    assert drop[-1].table == "k8snetlab_fault_f1" and drop[-1].rule == ""   # a native nft table: names only


def _walk(topology: str, src: str, dst: str, protocol: str = "TCP", **cluster) -> str:
    state = shipped_state(topology, **cluster)
    s, d = targets(state, src, dst, protocol, "default")
    hops = predict.walk(state, s, d, protocol, endpoint_slices(state))
    return "".join(f"{h.step} | {h.component} | {h.namespace} | {h.interface} | {h.what}\n" for h in hops)


def _pods(topology: str, app: str, **cluster) -> list:
    return [p for p in shipped_state(topology, **cluster).pods if p.label_dict().get("app") == app]


CASES = {
    "pod-pod-same-node": ("vxlan", "frontend", "backend", {}),
    "pod-pod-vxlan": ("vxlan", "frontend", "backend-other", {}),
    "pod-pod-host-gw": ("vxlan", "frontend", "backend-other", {"network": "host-gw"}),
    "pod-pod-bgp-ptp": ("vxlan", "frontend", "backend-other", {"network": "bgp", "cni": "ptp"}),
    "pod-service": ("services", "client", "svc/backend:80", {}),
    "node-pod": ("vxlan", "node/control-plane", "backend-other", {}),
    "pod-external": ("vxlan", "frontend", "host/internet", {}),
    "external-nodeport": ("services", "host/internet", "node/worker1:30080", {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_predicted_walks_on_shipped_topologies(case):
    topology, src, dst, cluster = CASES[case]
    state = shipped_state(topology, **cluster)
    if src in ("frontend", "client"):
        src = _pods(topology, src, **cluster)[0]
        if dst.startswith("backend"):
            backends = _pods(topology, "backend", **cluster)
            same = [p for p in backends if p.node == src.node]
            others = [p for p in state.pods if p.node == src.node and p.key != src.key and p.probe_port()
                      and not p.host_network]
            dst = (same or others if dst == "backend" else [p for p in backends if p.node != src.node])[0].name
        src = src.name
    elif dst == "backend-other":
        dst = next(p for p in _pods(topology, "backend", **cluster) if p.node != state.nodes[0].name).name
    check_golden(f"trace-{case}.txt", _walk(topology, src, dst, **cluster))


def test_a_denied_pair_names_the_policy_and_rule():
    doc = yaml.safe_load((SAMPLE.parent / "trc.yaml").read_text())
    state = plan(Topology.model_validate(doc))
    drops = []
    for s in state.pods:
        for d in state.pods:
            if s.key == d.key or s.host_network or d.host_network or d.probe_port() is None:
                continue
            a, b = targets(state, s.key, d.key, "TCP", "default")
            hops = predict.walk(state, a, b, "TCP", endpoint_slices(state))
            drops += [h for h in hops if h.kind == "filter" and h.expect[0] == "drop"]
    assert drops and all(h.expect[1] == "default/locked: ingress not allowed by any policy (default/only-web)"
                         for h in drops)


def test_unknown_names_are_errors_listing_what_exists():
    state = shipped_state("vxlan")
    with pytest.raises(LabError, match="pods: default/"):
        targets(state, "nope", "frontend", "TCP", "default")
    with pytest.raises(LabError, match="nodes: control-plane, worker1, worker2"):
        targets(state, "node/x", "frontend", "TCP", "default")
    with pytest.raises(LabError, match="Services: "):
        targets(state, "sidecar-demo", "svc/nope:80", "TCP", "default")


def test_compare_marks_the_hop_where_the_kernel_disagreed():
    state = shipped_state("vxlan")
    s, d = targets(state, "node/worker1", "host/internet", "TCP", "default")
    hops = predict.walk(state, s, d, "TCP")
    route = next(h for h in hops if h.kind == "route")
    obs = Observed(20000, ok=False, error="timed out",
                   routes={(route.namespace, route.expect[2]): "172.18.0.5 via 172.18.0.9 dev eth0 src 172.18.0.3"})
    rows = compare.rows(hops, obs)
    assert [r.mark for r in rows if r.step == str(route.step)] == [compare.DIFFERENT]
    assert rows[-1].mark == compare.DIFFERENT and "timed out" in rows[-1].observed
    line = "tcp 6 118 TIME_WAIT src=10.244.0.3 dst=10.96.0.100 sport=20001 dport=80 src=10.244.1.2 " \
           "dst=172.18.0.2 sport=8080 dport=20001 [ASSURED] mark=0 use=1"
    c = compare.parse_conntrack(line)
    assert (c.dnat, c.snat) == ("10.244.1.2:8080", "172.18.0.2")


def _leg_case():
    state = shipped_state("services")
    s, d = targets(state, "host/internet", "node/worker1:30080", "TCP", "default")
    hops = predict.walk(state, s, d, "TCP", endpoint_slices(state))
    return state, d, hops


def test_trace_tables_and_capture_filters_match_only_the_probe():
    from lab.trace import observe
    from lab.trace.run import after_masquerade

    state, d, hops = _leg_case()
    leg = after_masquerade(state, hops, d, "TCP")
    assert leg is not None and "172.18.0.3" in leg.sources and leg.ports == (8080,)
    text = "\n".join([observe.trace_rules("TCP", 20000, leg), observe.trace_rules("UDP", 20001),
                      observe.trace_rules("ICMP", 20002), observe.capture_filter("TCP", 20000, leg),
                      observe.capture_filter("ICMP", 20002)])
    check_golden("trace-rules.txt", text + "\n")
    # the rules that match only jump: the one rule xtables-monitor prints is `meta nftrace set 1`
    assert all(line.strip().endswith("jump flag") for line in text.splitlines() if " @th," in line or " id " in line)
    assert after_masquerade(state, hops, d, "ICMP") is None


def test_capture_lines_and_the_probes_visits_after_a_masquerade():
    text = (SAMPLE.parent / "tcpdump-vxlan.txt").read_text()
    caps = events.parse_capture(text)
    assert [c.interface for c in caps][:3] == ["cni0", "flannel.1", "eth0"]
    vx = caps[2]
    assert vx.direction == "Out" and "VXLAN" in vx.text and "| IP 10.244.1.0.55032 > 10.244.0.2.8080" in vx.text
    assert "seq" not in vx.text and "options" not in vx.text
    mine = events.captures_of_probe(caps, {"20000", "55032"})
    assert all("4711" not in c.text for c in mine) and len(mine) == len(caps) - 2
    obs = Observed(20000, conntrack={"n2": [
        "tcp 6 118 TIME_WAIT src=172.18.0.4 dst=172.18.0.3 sport=20000 dport=30080 src=10.244.0.2 dst=10.244.1.0 "
        "sport=8080 dport=55032 [ASSURED] mark=0 use=1"]})
    assert compare.translated_ports(obs) == {55032}
    visits = events.parse(SAMPLE.read_text())
    assert events.of_probe(visits, {"55032"}) == [v for v in visits if v.packet.get("DPORT") == "8472"]
    icmp = compare.parse_conntrack("icmp 1 29 src=10.244.0.3 dst=172.18.0.4 type=8 code=0 id=20002 src=172.18.0.4 "
                                   "dst=172.18.0.2 type=0 code=0 id=20002 mark=0 use=1")
    assert (icmp.snat, icmp.orig[2], icmp.reply[3]) == ("172.18.0.2", "20002", "20002")


def test_echo_request_checksum():
    from lab.trace.observe import echo_request

    pkt = echo_request(20002)
    words = [int.from_bytes(pkt[i:i + 2], "big") for i in range(0, len(pkt), 2)]
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert total == 0xFFFF and pkt[:1] == b"\x08" and int.from_bytes(pkt[4:6], "big") == 20002


def test_bgp_route_hops_expect_frr_routes():
    state = shipped_state("vxlan", network="bgp", cni="ptp")
    src = next(p for p in state.pods if not p.host_network and p.probe_port())
    dst = next(p for p in state.pods if p.node != src.node and not p.host_network and p.probe_port())
    s, d = targets(state, src.key, dst.key, "TCP", "default")
    hops = predict.walk(state, s, d, "TCP")
    cross = [h for h in hops if h.kind == "route" and h.component.startswith("node ") and h.expect[0] == "eth0"]
    assert cross and cross[0].expect[3] == "bgp"
    obs = Observed(20000, ok=True, routes={(cross[0].namespace, cross[0].expect[2]):
                                           f"{d.ip} via {cross[0].expect[1]} dev eth0 src 172.18.0.2 uid 0 (fib: x)"})
    assert [r.mark for r in compare.rows(hops, obs) if r.step == str(cross[0].step)] == [compare.DIFFERENT]


def test_icmp_to_a_cluster_ip_is_predicted_unanswered_and_a_silence_confirms_it():
    state = shipped_state("services")
    s, d = targets(state, "loner", "svc/backend:80", "ICMP", "default")
    hops = predict.walk(state, s, d, "ICMP", endpoint_slices(state))
    assert "ICMP has none" in next(h.what for h in hops if h.kind == "dnat")
    assert hops[-1].kind == "unanswered" and "a ClusterIP is on no interface" in hops[-1].what
    assert compare.rows(hops, Observed(7, ok=False, error="timed out"))[-1].mark == compare.SAME
    assert compare.rows(hops, Observed(7, ok=True, server="x"))[-1].mark == compare.DIFFERENT
    refused = compare.rows(hops, Observed(7, ok=False, error="host unreachable from 10.244.0.1"))[-1]
    assert refused.mark == compare.DIFFERENT and refused.observed.startswith("refused: ")


def _packet(src: str, dst: str, **more) -> events.Visit:
    fields = {"SRC": src, "DST": dst, "SPORT": "20000", "DPORT": "8080", **more}
    return events.Visit(events.Packet("1", tuple(fields.items())),
                        [events.Event("raw", "OUTPUT", "rule", "CONTINUE")])


def test_same_means_the_predicted_addresses_were_seen_not_just_a_packet():
    state = shipped_state("vxlan")
    frontend, backend = _pods("vxlan", "frontend")[0], _pods("vxlan", "backend")[0]
    s, d = targets(state, frontend.name, backend.name, "TCP", "default")
    hops = predict.walk(state, s, d, "TCP")
    send = next(h for h in hops if h.kind == "send")
    src, dst = send.expect

    def mark(visit):
        obs = Observed(20000, ok=True, seen=src, visits={send.namespace: [visit]})
        return next(r for r in compare.rows(hops, obs) if r.step == str(send.step))

    assert mark(_packet(src, dst)).mark == compare.SAME
    wrong = mark(_packet("10.9.9.9", dst))  # a packet was seen, but not the one predicted
    assert wrong.mark == compare.DIFFERENT and f"not {src} → {dst}" in wrong.observed


def test_after_a_masquerade_no_answer_stays_a_difference():
    """A NodePort from outside: kube-proxy masquerades --random-fully, so later hops may miss the
    probe's packets ("?"), but the probe's own "no answer" is a value: still a difference."""
    state, _, hops = _leg_case()
    assert any(h.kind == "snat" and "random-fully" in h.what for h in hops)
    deliver = next(h for h in hops if h.kind == "deliver")
    rows = compare.rows(hops, Observed(20000, ok=False, error="timeout after 1.0s (connecting)"))
    row = next(r for r in rows if r.step == str(deliver.step))
    assert row.mark == compare.DIFFERENT and row.observed.startswith("no answer")
    arrive = [r for r in rows if r.observed.startswith("nothing of the probe") and int(r.step) > int(deliver.step) - 5]
    assert all(r.mark == compare.UNSEEN for r in arrive)  # what the trace may have missed stays "?"


def test_a_capture_row_is_the_same_only_with_the_predicted_addresses():
    send = predict.Hop(1, "pod", "ns", "eth0", "", "send", ("10.244.0.3", "10.244.1.2"))
    assert compare._carries("IP 10.244.0.3.20015 > 10.244.1.2.8080: Flags [S]", send)
    assert compare._carries("IP 10.244.0.3 > 10.244.1.2: ICMP echo request, id 20003", send)
    assert not compare._carries("IP 10.244.0.3.20015 > 10.244.1.25.8080: Flags [S]", send)
    assert not compare._carries("IP 10.244.0.33.20015 > 10.244.1.2.8080: Flags [S]", send)
    # coming in through a bridge the capture may already show the DNAT: only the source counts
    arrive = predict.Hop(4, "node", "ns", "cni0", "", "arrive", ("cni0", "", "10.244.0.3", "10.96.0.10"))
    assert compare._carries("IP 10.244.0.3.20001 > 10.244.1.2.8080: Flags [S]", arrive)


def _gateway_walk(*args: str, **request) -> list:
    from lab.trace.run import with_request

    state = shipped_state("gateway")
    s, d = targets(state, "host/internet", "gateway/default/eg", "TCP", "default")
    d = with_request(d, request.get("host"), request.get("path"), list(args))
    return predict.walk(state, s, d, "TCP", endpoint_slices(state))


def test_a_trace_to_a_gateway_shows_the_lb_dnat_envoys_route_and_its_connection_to_the_backend():
    hops = _gateway_walk("env: canary")
    check_golden("trace-external-gateway.txt",
                 "".join(f"{h.step} | {h.component} | {h.namespace} | {h.interface} | {h.what}\n" for h in hops))
    kinds = [h.kind for h in hops]
    proxy = hops[kinds.index("proxy")]
    assert "route httproute/default/shop/rule/0/match/0 → cluster default/shop-v2/80" in proxy.what
    assert kinds.index("dnat") < kinds.index("deliver") < kinds.index("proxy")       # the observed leg: to Envoy
    after = hops[kinds.index("proxy") + 1:-1]
    assert after and all(h.kind == "" for h in after)                                 # Envoy's own: predicted only
    assert after[-1].what.startswith("delivered") and "shop-v2" in after[-1].component
    assert hops[-1].kind == "reply" and hops[-1].expect == ("172.18.0.240",)
    dnat = hops[kinds.index("dnat")]
    assert dnat.what.startswith("KUBE-EXT → KUBE-SVC (envoy-gateway-system/envoy-default-eg:http-80)")


@pytest.mark.parametrize("request_, answer", [
    ({"path": "/old/cart"}, "301 to http://shop.example/new/cart from Envoy"),
    ({"host": "nobody.example"}, "404 from Envoy (no route)"),
    ({"path": "/", "header": "env: stable"}, "the backend's answer, through Envoy"),
])
def test_envoys_answer_without_a_backend_ends_the_walk_at_envoy(request_, answer):
    hops = _gateway_walk(*([request_["header"]] if "header" in request_ else []), **request_)
    proxy = next(h for h in hops if h.kind == "proxy")
    assert proxy.expect == (answer,) and hops[-1].what.startswith(answer)
    assert (hops.index(proxy) == len(hops) - 2) == (answer != "the backend's answer, through Envoy")


def test_a_gateway_target_resolves_by_name_and_by_address_and_says_what_is_wrong():
    from lab.trace.run import with_request

    state = shipped_state("gateway")
    by_name = targets(state, "host/internet", "gateway/eg:443", "TCP", "default")[1]
    by_ip = targets(state, "host/internet", "172.18.0.240", "TCP", "default")[1]
    assert (by_name.kind, by_name.port, by_name.http_host) == ("gateway", 443, "shop.example")
    assert (by_ip.gateway, by_ip.port) == ("default/eg", 80)
    with pytest.raises(LabError, match="listener ports are 80, 443"):
        targets(state, "host/internet", "gateway/eg:8080", "TCP", "default")
    with pytest.raises(LabError, match="no Gateway default/nope .* Gateways: default/eg"):
        targets(state, "host/internet", "gateway/nope", "TCP", "default")
    with pytest.raises(LabError, match="is no Gateway"):
        with_request(targets(state, "host/internet", "host/internet", "TCP", "default")[1], "x", None, [])
    with pytest.raises(LabError, match="'NAME: VALUE'"):
        with_request(by_ip, None, None, ["novalue"])


def test_the_probe_stops_reading_an_http_answer_at_its_content_length():
    from lab.trace.observe import _complete

    assert _complete(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")   # Envoy's
    assert _complete(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
    assert not _complete(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab")
    assert not _complete(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n")
    assert not _complete(b"HTTP/1.1 200 OK\r\n\r\nno length: read to the close")


def _nodeport_from_outside(port: int, node: str = "worker1"):
    state = shipped_state("ebpf")
    s, d = targets(state, "host/internet", f"node/{node}:{port}", "TCP", "default")
    return state, predict.walk(state, s, d, "TCP", endpoint_slices(state))


def test_a_nodeport_from_outside_under_ebpf_is_the_tc_program_not_kube_proxy():
    state, hops = _nodeport_from_outside(30080)
    tc = [h for h in hops if h.kind == "tclb"]
    assert len(tc) == 1 and "tc_nodeport (tc ingress eth0)" in tc[0].component and "lb_external" in tc[0].what
    assert not any(h.kind == "dnat" for h in hops) and all(h.expect == () for h in hops if h.kind == "snat")
    client, source, *eps = tc[0].expect
    first = eps[0].rpartition(":")[0]
    owner = next(p.node for p in state.pods if p.ip == first)
    assert client == next(h.ip for h in state.hosts if h.name == "internet")
    # Cluster: SNAT to the node's address, or towards another node's pod flannel.1's (as sock_lb.c's snat_source)
    assert source == (state.node("worker1").ip if owner == "worker1" else "10.244.1.0"), source
    assert "lb_nat_rev" in hops[-1].what and hops[-1].kind == "reply"
    _, local = _nodeport_from_outside(30081)
    tc = next(h for h in local if h.kind == "tclb")
    assert tc.expect[0] == tc.expect[1] and "client's address is kept" in tc.what   # Local: no SNAT
    _, iptables = (lambda st: (st, predict.walk(st, *targets(st, "host/internet", "node/worker1:30080", "TCP", "default"),
                                                "TCP", endpoint_slices(st))))(shipped_state("ebpf", proxy="iptables"))
    assert not any(h.kind == "tclb" for h in iptables) and any(h.kind == "dnat" for h in iptables)


def test_the_tc_step_is_the_same_only_when_netfilter_saw_the_packet_translated():
    _, hops = _nodeport_from_outside(30081)
    tc = next(h for h in hops if h.kind == "tclb")
    client, source, ep = tc.expect
    ip, _, port = ep.rpartition(":")

    def row(visit, conntrack=(), nat=None):
        obs = Observed(20000, ok=True, seen=client, visits={tc.namespace: [visit]},
                       conntrack={tc.namespace: list(conntrack)}, nat={} if nat is None else {tc.namespace: nat})
        return next(r for r in compare.rows(hops, obs) if r.step == str(tc.step))

    done = row(_packet(source, ip, IN="eth0", DPORT=port))
    assert done.mark == compare.SAME and "already as" in done.observed
    untouched = row(_packet(client, "172.18.0.3", IN="eth0", DPORT="30081"))   # the program detached
    assert untouched.mark == compare.DIFFERENT and "untranslated" in untouched.observed
    nat = f"tcp 6 10 SYN_SENT src={client} dst=172.18.0.3 sport=20000 dport=30081 src={ip} dst={client} " \
          f"sport={port} dport=20000"
    by_netfilter = row(_packet(client, "172.18.0.3", IN="eth0", DPORT="30081"), [nat])
    assert by_netfilter.mark == compare.DIFFERENT and "not the tc program" in by_netfilter.observed
    # with the node's lb_nat read: the probe's own entry must say what the packet became
    flow = f"{client}:20000 → 172.18.0.3:30081/tcp => "
    read = row(_packet(source, ip, IN="eth0", DPORT=port), nat=[flow + f"{source}:20000 → {ep}"])
    assert read.mark == compare.SAME and "lb_nat: " in read.observed
    other = row(_packet(source, ip, IN="eth0", DPORT=port), nat=[flow + f"10.9.9.9:20000 → {ep}"])
    assert other.mark == compare.DIFFERENT
    missing = row(_packet(source, ip, IN="eth0", DPORT=port), nat=[])
    assert missing.mark == compare.DIFFERENT and "no entry" in missing.observed


def test_lb_nat_entries_read_back_as_flows():
    from lab.kube_proxy import ebpf
    key = ebpf._addr("172.18.0.5", 20000)[:4] + ebpf._addr("172.18.0.3", 30080)[:4] + bytes.fromhex("4e20 7580") + b"\x06\0\0\0"
    val = ebpf._addr("10.244.1.0", 20000)[:4] + ebpf._addr("10.244.0.2", 8080)[:4] + bytes.fromhex("4e20 1f90")
    assert ebpf.nat_lines({("lb_nat", key): val, ("lb_nat_rev", key): val}) == [
        "172.18.0.5:20000 → 172.18.0.3:30080/tcp => 10.244.1.0:20000 → 10.244.0.2:8080"]
