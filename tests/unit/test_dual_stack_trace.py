"""lab trace in IPv6, pure: the predicted walk of one family's view of a dual-stack (or IPv6-only)
lab (flannel-v6.1, kube-proxy's IPv6 endpoints, IPv6 routes), how a destination picks its family,
and the observers' IPv6 tables and filters."""
from __future__ import annotations

import pytest

from lab.controlplane.endpoints import endpoint_slices
from lab.errors import LabError
from lab.trace import compare, events, observe, predict
from lab.trace.run import targets
from tests.unit.golden import shipped_state


def _walk(topology: str, src: str, dst: str, family=None, protocol: str = "TCP"):
    state = shipped_state(topology)
    s, d = targets(state, src, dst, protocol, "default", family)
    return s, d, predict.walk(state, s, d, protocol, endpoint_slices(state))


def _backend(topology: str, not_on: str):
    return next(p for p in shipped_state(topology).pods if p.name.startswith(("backend", "web")) and p.node != not_on)


def test_an_ipv6_pod_across_nodes_goes_through_flannel_v6_over_the_ipv6_underlay():
    b = _backend("dual-stack", "worker1")
    s, d, hops = _walk("dual-stack", "client", f"[{b.ip_of(6)}]:8080")
    assert (d.family, d.ip, s.ip) == (6, b.ip_of(6), "fd00:10:244:1::2")
    routes = [h.expect for h in hops if h.kind == "route"]
    assert routes[0] == ("eth0", "fd00:10:244:1::1", b.ip_of(6))            # the pod's IPv6 default route
    assert routes[1][0] == "flannel-v6.1" and routes[-1][0] == "cni0"
    encap = next(h for h in hops if h.kind == "encap")
    assert encap.component.startswith("flannel-v6.1") and all(":" in a for a in encap.expect[:2])
    assert next(h for h in hops if h.kind == "deliver").expect == ("fd00:10:244:1::2", f"{b.ip_of(6)}:8080")
    assert not any("flannel.1" in h.what or "." in h.what.split("→")[0][-4:] for h in hops if h.kind == "route")


def test_the_same_pair_by_name_in_ipv4_still_takes_flannel_1():
    b = _backend("dual-stack", "worker1")
    _, d, hops = _walk("dual-stack", "client", f"{b.name}:8080")
    assert d.family == 4
    assert [h.expect[0] for h in hops if h.kind == "route"][1] == "flannel.1"


def test_a_clusterip_in_ipv6_is_dnatted_to_ipv6_endpoints():
    _, d, hops = _walk("dual-stack", "client", "svc/backend:80", family=6)
    assert d.ip.startswith("fd00:10:96::") and d.family == 6
    dnat = next(h for h in hops if h.kind == "dnat" and h.expect)
    assert dnat.expect and all(e.startswith("[fd00:10:244:") and e.endswith("]:8080") for e in dnat.expect)
    assert hops[-1].kind == "reply" and hops[-1].expect == (d.ip,)


def test_a_single_stack_ipv6_service_picks_its_family_and_refuses_the_other():
    _, d, _ = _walk("dual-stack", "client", "svc/backend-v6:80")
    assert d.family == 6
    with pytest.raises(LabError, match="no IPv4 ClusterIP.*--family 6"):
        _walk("dual-stack", "client", "svc/backend-v6:80", family=4)


def test_ipv6_only_host_gw_routes_via_the_peers_ipv6_address():
    state = shipped_state("ipv6-only")
    web = [p for p in state.pods if p.name.startswith("web")]
    a, b = next(p for p in web if p.node == "node1"), next(p for p in web if p.node == "node2")
    s, d = targets(state, a.key, f"{b.key}:8080", "TCP", "default")
    hops = predict.walk(state, s, d, "TCP", endpoint_slices(state))
    assert (s.ip, d.ip) == (a.ip, b.ip) and d.family == 6
    assert [h.expect[:2] for h in hops if h.kind == "route"][1] == ("eth0", state.node("node2").ip6)


def test_family_errors_say_what_the_lab_has():
    with pytest.raises(LabError, match="--family 6: lab .* is IPv4"):
        targets(shipped_state("vxlan"), "frontend", "backend", "TCP", "default", 6)
    with pytest.raises(LabError, match="ICMPv6 is not built"):
        targets(shipped_state("dual-stack"), "client", "svc/backend", "ICMP", "default", 6)


def test_ipv6_observers_use_ip6_tables_and_inner_ipv6_offsets():
    rules = observe.trace_rules("TCP", 40123, family=6)
    assert "table ip6 k8snetlab_trace_40123" in rules and "table ip " not in rules
    assert "@th,560,16 40123 @th,664,8 & 0x02 == 0x02" in rules
    assert "table ip k8snetlab_trace_40123" in observe.trace_rules("TCP", 40123)
    bpf = observe.capture_filter("TCP", 40123, family=6)
    assert bpf == "(tcp port 40123) or (udp port 8472 and (ip6[110:2] = 40123 or ip6[112:2] = 40123))"


def test_an_ipv6_conntrack_dnat_reads_as_the_endpoint_is_written():
    line = ("tcp      6 119 SYN_SENT src=fd00:10:244:1::2 dst=fd00:10:96::ae3b sport=40123 dport=80 "
            "src=fd00:10:244:2::2 dst=fd00:10:244:1::2 sport=8080 dport=40123 mark=0 use=1")
    assert compare.parse_conntrack(line).dnat == "[fd00:10:244:2::2]:8080"


def test_ipv6_captures_of_the_probe_are_told_by_their_ports():
    mine = events.Captured("eth0", "Out", "IP6 fd00:10:244:1::2.40123 > fd00:10:244:2::2.8080: Flags [S]")
    other = events.Captured("eth0", "Out", "IP6 fd00:10:244:1::2.40999 > fd00:10:244:2::2.8080: Flags [S]")
    assert events.captures_of_probe([mine, other], {"40123"}) == [mine]


# --- faults with IPv6 targets ---

def _fault(state, kind, target, params, routes=()):
    from lab.faults import model, ops

    observed = {ops.key(r): (list(routes) if r[0] == "routes" else {"ifname": r[2], "flags": ["UP"], "mtu": 1430})
                for r in model.reads(state, kind, target, params)}
    fp = model.plan(state, kind, target, params, observed, fault_id="f6")
    return [ops.text(op) for s in fp.steps for op in s.apply], [ops.text(op) for op in fp.undo]


V6_ROUTE = {"type": "unicast", "dst": "fd00:10:244:2::/64", "gateway": "fd00:10:244:2::", "dev": "flannel-v6.1",
            "protocol": "boot", "metric": 1024, "flags": ["onlink"]}


def test_route_faults_take_a_nodes_ipv6_pod_subnet():
    state = shipped_state("dual-stack")
    ns = state.node("worker1").netns
    exact = "fd00:10:244:2::/64 via fd00:10:244:2:: dev flannel-v6.1 proto boot metric 1024 onlink"
    apply, undo = _fault(state, "route-delete", "node/worker1", {"to": "node/worker2", "family": "6"}, [V6_ROUTE])
    assert apply == [f"ip -n {ns} -batch: route del {exact}"] and undo == [f"ip -n {ns} -batch: route replace {exact}"]
    apply, _ = _fault(state, "route-blackhole", "node/worker1", {"cidr": "fd00:10:244:2::/64"}, [V6_ROUTE])
    assert apply == [f"ip -n {ns} -batch: route replace blackhole fd00:10:244:2::/64 metric 1024"]
    with pytest.raises(LabError, match="own podCIDR"):
        _fault(state, "route-delete", "node/worker1", {"cidr": state.node("worker1").pod_cidr_of(6)}, [V6_ROUTE])
    with pytest.raises(LabError, match="no IPv6 pod network"):
        _fault(shipped_state("vxlan"), "route-delete", "node/worker1", {"to": "node/worker2", "family": "6"})


def test_the_overlay_target_names_each_familys_vtep():
    v6only = shipped_state("ipv6-only", network="vxlan")
    apply, _ = _fault(v6only, "mtu", "overlay/node1", {"value": 1300})
    assert len(apply) == 1 and "flannel-v6.1" in apply[0] and "flannel.1" not in apply[0]
    dual = shipped_state("dual-stack")
    apply, _ = _fault(dual, "mtu", "overlay/worker1", {"value": 1300})
    assert len(apply) == 2 and "flannel.1" in apply[0] and "flannel-v6.1" in apply[1]


def test_a_masquerade_leg_in_ipv6_lists_ipv6_node_addresses_only():
    from lab.trace.run import after_masquerade

    state = shipped_state("dual-stack")
    _, d, hops = _walk("dual-stack", "client", "svc/backend:80", family=6)
    hops = [*hops, predict.Hop(99, "x", "", "", "masquerade", "snat", ("fd00:172:18::3",))]
    leg = after_masquerade(state, hops, d, "TCP")
    assert leg.sources and all(":" in ip for ip in leg.sources + leg.destinations)
