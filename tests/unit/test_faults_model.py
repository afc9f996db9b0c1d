"""Faults without root: validation of bad specs, the ops each kind plans from what was observed, and
the executor's write-ahead record and rollback against the fake Host."""
from __future__ import annotations

import json

import pytest

from lab.errors import LabError
from lab.faults import model, ops
from lab.faults.model import Fault
from lab.faults.plans import bridge_nf_per_netns
from lab.host import record as records
from lab.host.record import LabRecord
from lab.runtime import faults
from tests.unit.golden import shipped_state

STATE = shipped_state("vxlan")
W1 = "vxlan-worker1"
ROUTES = [
    {"type": "unicast", "dst": "default", "gateway": "172.18.0.1", "dev": "eth0", "protocol": "boot", "scope": "global",
     "flags": []},
    {"type": "unicast", "dst": "10.244.0.0/24", "gateway": "10.244.0.0", "dev": "flannel.1", "protocol": "boot",
     "scope": "global", "flags": ["onlink"]},
    {"type": "unicast", "dst": "10.244.2.0/24", "gateway": "10.244.2.0", "dev": "flannel.1", "protocol": "boot",
     "scope": "global", "flags": ["onlink"]},
    {"type": "unicast", "dst": "172.18.0.0/24", "dev": "eth0", "protocol": "kernel", "scope": "link",
     "prefsrc": "172.18.0.3", "flags": []},
]
NEIGH = [{"dst": "10.244.0.0", "dev": "flannel.1", "lladdr": "0e:6e:ac:12:00:02", "state": ["PERMANENT"]}]
UP = {"ifname": "eth0", "flags": ["UP"], "mtu": 1500}


def observed_for(kind, target, params, **extra) -> dict:
    """What a plain vxlan lab answers to every read of the fault, with `extra` reads overridden."""
    answers = {"routes": ROUTES, "neigh": NEIGH, "forward": "ACCEPT", "kernel": "6.18.0", "qdisc": "noqueue"}
    out = {}
    for r in model.reads(STATE, kind, target, params):
        k = ops.key(r)
        if r[0] == "link":
            out[k] = {**UP, "ifname": r[2], "mtu": 1450 if r[2] == "flannel.1" else 1500}
        elif r[0] == "peer":
            out[k] = {"ifname": "veth1234", "flags": ["UP"], "mtu": 1450,
                      "linkinfo": {"info_slave_data": {"hairpin": True}}}
        elif r[0] == "sysctl":
            out[k] = "1" if "forward" in r[2] or "bridge" in r[2] else "0"
        elif r[0] == "proc":
            out[k] = [100 + len(out), "12345"]
        else:
            out[k] = answers[r[0]]
    return {**out, **extra}


def planned(kind, target, params=None, **extra) -> tuple[list[str], list[str]]:
    params = params or {}
    fp = model.plan(STATE, kind, target, params, observed_for(kind, target, params, **extra), fault_id="f7")
    return [ops.text(op) for s in fp.steps for op in s.apply], [ops.text(op) for op in fp.undo]


def pod_name(prefix: str) -> str:
    return next(p.name for p in STATE.pods if p.name.startswith(prefix) and not p.host_network)


# --- validation: every problem, with a hint, no lab needed ---

@pytest.mark.parametrize("kind, target, params, expected", [
    ("nope", "node/worker1", {}, "unknown fault kind 'nope'; kinds: link-down"),
    ("link-down", "worker1", {}, "is not one of node/NAME"),
    ("link-down", "svc/web", {}, "is not one of node/NAME"),
    ("link-down", "pod/web/app", {}, "not a container"),
    ("route-delete", "pod/x", {"to": "node/a"}, "route-delete cannot target 'pod/x': it takes node"),
    ("route-delete", "node/a", {}, "exactly one of to=node/X or cidr=CIDR"),
    ("route-delete", "node/a", {"to": "node/b", "cidr": "10.0.0.0/8"}, "exactly one of"),
    ("route-delete", "node/a", {"cidr": "10.0.0.300/8"}, "cidr=10.0.0.300/8 is not a valid cidr"),
    ("route-wrong", "node/a", {"to": "node/b"}, "route-wrong needs via="),
    ("route-wrong", "node/a", {"to": "node/b", "via": "node/b"}, "must be different nodes"),
    ("route-wrong", "node/a", {"to": "b", "via": "node/c"}, "to=b is not a valid node (e.g. node/worker1)"),
    ("drop", "node/a", {}, "drop needs proto="),
    ("drop", "node/a", {"proto": "sctp"}, "proto=sctp: choose one of udp, tcp, icmp"),
    ("drop", "node/a", {"proto": "icmp", "port": "3"}, "port= goes with proto=udp or tcp"),
    ("drop", "node/a", {"proto": "udp", "port": "70000"}, "port=70000 is out of range"),
    ("drop", "node/a", {"proto": "udp", "direction": "sideways"}, "direction=sideways: choose one of in, out, both"),
    ("link-flap", "node/a", {"count": "many"}, "count=many is not a valid int"),
    ("link-flap", "node/a", {"color": "red"}, "link-flap has no parameter 'color'; it takes: dev, side, count, period"),
    ("mtu", "node/a", {}, "mtu needs value="),
    ("mtu", "kube-dns", {"value": "1400"}, "mtu cannot target 'kube-dns'"),
    ("rate", "node/a", {"rate": "fast"}, "rate=fast: give a number with a tc unit"),
    ("loss", "node/a", {"percent": "0"}, "percent=0 is out of range"),
    ("sysctl", "node/a", {"name": "tcp_syncookies", "value": "1"}, "choose one of ip_forward, rp_filter"),
    ("kill", "node/a", {}, "kill cannot target 'node/a'"),
    ("bgp-peer-as", "node/a", {"peer": "node/b", "as": "0"}, "as=0 is out of range"),
])
def test_validate_names_each_problem_with_a_hint(kind, target, params, expected):
    problems = model.validate(kind, target, params)
    assert any(expected in p for p in problems), problems


def test_validate_reports_every_problem_at_once_and_accepts_good_specs():
    assert len(model.validate("drop", "pod/a/b", {"proto": "x", "bad": 1})) == 3
    assert model.validate("link-flap", "pod/web.shop", {"count": 2, "period": "0.2", "side": "host"}) == []
    assert model.validate("stop", "pod/web/app", {}) == []
    assert model.validate("mtu", "overlay/worker1", {"value": 1400}) == []


# --- plans: ops from what was observed, undo restores it ---

def test_link_down_undo_brings_back_the_routes_and_neighbours_the_kernel_drops():
    apply, undo = planned("link-down", "node/worker1", {"dev": "flannel.1"})
    assert apply == [f"ip -n {W1} -batch: link set dev flannel.1 down"]
    assert undo == [f"ip -n {W1} -batch: link set dev flannel.1 up; "
                    "route replace 10.244.0.0/24 via 10.244.0.0 dev flannel.1 proto boot scope global onlink; "
                    "route replace 10.244.2.0/24 via 10.244.2.0 dev flannel.1 proto boot scope global onlink; "
                    "neigh replace 10.244.0.0 lladdr 0e:6e:ac:12:00:02 dev flannel.1 nud permanent"]
    _, undo = planned("link-down", "node/worker1")
    assert "route replace default via 172.18.0.1 dev eth0" in undo[0] and "172.18.0.0/24" not in undo[0]  # the kernel's own


def test_link_down_of_a_pods_host_side_and_refusals():
    pod = pod_name("backend")
    node_ns = STATE.node(next(p.node for p in STATE.pods if p.name == pod)).netns
    apply, _ = planned("link-down", f"pod/{pod}", {"side": "host"})
    assert apply == [f"ip -n {node_ns} -batch: link set dev veth1234 down"]
    with pytest.raises(LabError, match="already down"):
        planned("link-down", "node/worker1", **{f"link {W1} eth0": {**UP, "flags": []}})
    with pytest.raises(LabError, match="uses the host network"):
        model.reads(STATE, "link-down", "pod/node-agent", {})
    with pytest.raises(LabError, match="no pod 'ghost' in lab vxlan; pods: backend"):
        model.reads(STATE, "link-down", "pod/ghost", {})


def test_link_flap_is_blocking_and_ends_up():
    fp = model.plan(STATE, "link-flap", "node/worker1", {"count": 2, "period": 0.2},
                    observed_for("link-flap", "node/worker1", {}))
    kinds = [op[0] for op in fp.steps[0].apply]
    assert fp.blocking and kinds == ["ip", "sleep", "ip", "sleep"] * 2
    assert fp.steps[0].apply[1] == ("sleep", 0.1, "") and fp.undo[0][2][0] == "link set dev eth0 up"


def test_route_faults_restore_the_exact_route():
    apply, undo = planned("route-delete", "node/worker1", {"to": "node/worker2"})
    exact = "10.244.2.0/24 via 10.244.2.0 dev flannel.1 proto boot scope global onlink"
    assert apply == [f"ip -n {W1} -batch: route del {exact}"] and undo == [f"ip -n {W1} -batch: route replace {exact}"]
    apply, undo = planned("route-blackhole", "node/worker1", {"to": "node/worker2"})
    assert apply == [f"ip -n {W1} -batch: route replace blackhole 10.244.2.0/24"] and undo[0].endswith(exact)
    apply, _ = planned("route-wrong", "node/worker1", {"to": "node/worker2", "via": "node/control-plane"})
    assert apply == [f"ip -n {W1} -batch: route replace 10.244.2.0/24 via 10.244.0.0 dev flannel.1 onlink"]
    _, undo = planned("route-blackhole", "node/worker1", {"cidr": "10.9.0.0/16"})
    assert undo == [f"ip -n {W1} -batch: route del 10.9.0.0/16"]  # there was none: the blackhole goes
    with pytest.raises(LabError, match="no route to 10.9.0.0/16; its routes: default, 10.244.0.0/24"):
        planned("route-delete", "node/worker1", {"cidr": "10.9.0.0/16"})
    with pytest.raises(LabError, match="own podCIDR"):
        planned("route-delete", "node/worker1", {"to": "node/worker1"})


def test_drop_and_loss_are_one_table_of_their_own():
    apply, undo = planned("drop", "node/worker1", {"proto": "udp", "port": 8472, "direction": "in"})
    assert apply == [f'nft -f in {W1}: table inet k8snetlab_fault_f7 {{ chain prerouting {{ type filter hook prerouting '
                     f'priority -300; policy accept; iifname "eth0" meta l4proto udp th dport 8472 drop }} }}']
    assert undo == [f"nft -f in {W1}: delete table inet k8snetlab_fault_f7"]
    apply, _ = planned("loss", "node/worker1", {"percent": 30})
    assert "numgen random mod 100 < 30 drop" in apply[0] and "postrouting" in apply[0] and "prerouting" in apply[0]


def test_forward_mtu_qdisc_and_sysctl_undo_the_observed_value():
    assert planned("forward-drop", "node/worker1") == ([f"iptables in {W1}: -P FORWARD DROP"],
                                                       [f"iptables in {W1}: -P FORWARD ACCEPT"])
    with pytest.raises(LabError, match="already DROP"):
        planned("forward-drop", "node/worker1", **{f"forward {W1}": "DROP"})
    apply, undo = planned("mtu", "overlay", {"value": 1300})
    assert len(apply) == 3 and undo[0].endswith("link set dev flannel.1 mtu 1450")
    with pytest.raises(LabError, match="no overlay device"):
        model.reads(shipped_state("host-gw"), "mtu", "overlay", {"value": 1300})
    apply, undo = planned("rate", "node/worker1", {"rate": "1mbit"})
    assert apply == [f"tc -n {W1} -batch: qdisc replace dev eth0 root tbf rate 1mbit burst 32kb latency 50ms"]
    assert undo == [f"tc -n {W1} -batch: qdisc del dev eth0 root"]
    with pytest.raises(LabError, match="already has a root qdisc tbf"):
        planned("rate", "node/worker1", {"rate": "1mbit"}, **{f"qdisc {W1} eth0": "tbf"})
    assert planned("ip-forward-off", "node/worker1") == ([f"sysctl in {W1}: net.ipv4.ip_forward=0"],
                                                         [f"sysctl in {W1}: net.ipv4.ip_forward=1"])
    assert planned("sysctl", "node/worker1", {"name": "rp_filter", "value": 2})[1] == [
        f"sysctl in {W1}: net.ipv4.conf.all.rp_filter=0"]


def test_bridge_nf_is_refused_where_it_is_the_hosts():
    assert bridge_nf_per_netns("5.3.0") and bridge_nf_per_netns("6.18.44-fc") and not bridge_nf_per_netns("5.2.21")
    with pytest.raises(LabError, match="global on kernel 4.19.0"):
        planned("bridge-nf-off", "node/worker1", kernel="4.19.0")
    with pytest.raises(LabError, match="br_netfilter is not loaded"):
        planned("bridge-nf-off", "node/worker1", **{f"sysctl {W1} net.bridge.bridge-nf-call-iptables": None})


def test_hairpin_needs_a_bridge():
    pod = pod_name("frontend")
    apply, undo = planned("hairpin-off", f"pod/{pod}")
    assert apply[0].endswith("link set dev veth1234 type bridge_slave hairpin off") and undo[0].endswith("hairpin on")
    with pytest.raises(LabError, match="needs a bridge: lab vxlan uses cni: ptp"):
        model.reads(shipped_state("vxlan", cni="ptp"), "hairpin-off", f"pod/{pod}", {})


def test_process_faults_signal_the_recorded_process_and_undo():
    pod = pod_name("backend")
    apply, undo = planned("stop", f"pod/{pod}")
    assert apply == ["kill -SIGSTOP 100"] and undo == ["kill -SIGCONT 100"]
    fp = model.plan(STATE, "kill", "kube-dns", {}, observed_for("kill", "kube-dns", {}))
    assert [op[0] for op in fp.undo] == ["start"] and fp.undo[0][1].startswith("kube-system/kube-dns-")
    with pytest.raises(LabError, match="is not running"):
        planned("stop", "agent", **{"proc agent": None})
    with pytest.raises(LabError, match="has none \\(network: vxlan\\)"):
        model.reads(STATE, "stop", "node/worker1", {})
    with pytest.raises(LabError, match="no container 'nope'; its containers: web"):
        model.reads(STATE, "stop", f"pod/{pod}/nope", {})


def test_fault_round_trips_through_json():
    fp = model.plan(STATE, "drop", "node/worker1", {"proto": "tcp"}, {}, fault_id="f3")
    f = Fault("f3", "drop", "node/worker1", {"proto": "tcp"}, fp.undo, 1.5)
    back = Fault.from_dict(json.loads(json.dumps(f.to_dict())))
    assert back == f and model.next_id([f]) == "f4" and model.next_id([]) == "f1"


# --- the executor against the fake Host ---

@pytest.fixture
def lab(run_root, fake, monkeypatch):
    records.RUN_ROOT.mkdir(parents=True)
    rec = LabRecord(name=STATE.lab, state=STATE, status="running")
    rec.dir.mkdir()
    rec.save()
    monkeypatch.setattr(faults, "observe", lambda rec, reads: observed_for_reads(reads))
    return fake


def observed_for_reads(reads):
    out = {}
    for r in reads:
        out[ops.key(r)] = ({**UP, "ifname": r[2], "mtu": 1450} if r[0] == "link" else
                           "ACCEPT" if r[0] == "forward" else ROUTES if r[0] == "routes" else NEIGH)
    return out


def test_add_records_the_undo_before_anything_changes_then_clear_forgets_it(lab):
    seen = []
    lab.answer(("iptables",), 0)
    original = faults.run_op

    def spy(rec, op, undoing=False):
        seen.append((op[0], [f.id for f in faults.active_in(records.load(STATE.lab))]))
        return original(rec, op, undoing)

    faults.run_op = spy
    try:
        f = faults.add(None, "forward-drop", "node/worker1", {})
    finally:
        faults.run_op = original
    assert seen == [("iptables", ["f1"])]  # on disk before the rule changed
    assert [x.id for x in faults.active(None)] == ["f1"] and f.undo == [("iptables", W1, ("-P", "FORWARD", "ACCEPT"))]
    assert [x.id for x in faults.clear(None)] == ["f1"] and faults.active(None) == []
    assert [c.argv for c in lab.ran("iptables")] == [("iptables", "-w", "-P", "FORWARD", "DROP"),
                                                     ("iptables", "-w", "-P", "FORWARD", "ACCEPT")]
    with pytest.raises(LabError, match="no fault 'f9' in lab vxlan; active: none"):
        faults.clear(None, "f9")


def test_a_failing_step_undoes_the_steps_before_it(lab):
    lab.answer(("ip", "-n", "vxlan-worker1"), 1, stderr="RTNETLINK answers: Invalid argument", times=1)
    with pytest.raises(LabError, match="could not be applied: .*Invalid argument.*nothing was left applied"):
        faults.add(None, "mtu", "overlay", {"value": 1400})
    batches = [(c.argv[2], c.input.strip()) for c in lab.ran("ip")]
    assert batches == [("vxlan-control-plane", "link set dev flannel.1 mtu 1400"),
                       ("vxlan-worker1", "link set dev flannel.1 mtu 1400"),
                       ("vxlan-control-plane", "link set dev flannel.1 mtu 1450")]
    assert faults.active(None) == []


def test_an_invalid_spec_touches_nothing(lab):
    with pytest.raises(LabError, match="unknown fault kind"):
        faults.add(None, "meltdown", "node/worker1", {})
    with pytest.raises(LabError, match="no node 'worker9'"):
        faults.add(None, "link-down", "node/worker9", {})
    assert lab.calls == [] and faults.active(None) == []
