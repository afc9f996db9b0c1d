"""proxy ebpf, the pure parts: the socket-LB map contents from the one kube-proxy model, the map
updates of a change, the compile cache key, the cgroup plan, no kube-proxy rules at all, the tc entries of
NodePorts, externalIPs and LB IPs and the layouts the C program and the Python must agree on. No root."""
from __future__ import annotations

import ipaddress
import re
import struct

import pytest

from lab.controlplane.state import EndpointPortState, EndpointSliceState, EndpointState
from lab.host.cgroup import cgroup2_mount, placed
from lab.kube_proxy import ebpf, nftables, proxiers, runtimes
from lab.kube_proxy.model import service_ports
from tests.unit.golden import shipped_state
from lab.controlplane.endpoints import endpoint_slices

STATE = shipped_state("ebpf")
NODE = "worker1"
READY = {p.key: not p.name.startswith("warming") for p in STATE.pods}   # warming never passes its probe


def slices_of(state, ready=None):
    return endpoint_slices(state, {p.key: not p.name.startswith("warming") for p in state.pods} if ready is None else ready)


def services(entries: ebpf.Entries) -> dict[str, tuple[int, int, int, int]]:
    """"ip:port/proto" -> (id, count, affinity, verdict), decoded from lb_services."""
    out = {}
    for (m, k), v in entries.items():
        if m == "lb_services":
            ip, port = str(ipaddress.IPv4Address(k[:4])), struct.unpack("!H", k[4:6])[0]
            out[f"{ip}:{port}/{ {6: 'tcp', 17: 'udp'}[k[6]] }"] = struct.unpack("<IIII", v)
    return out


def backends(entries: ebpf.Entries, sid: int) -> list[str]:
    found = {}
    for (m, k), v in entries.items():
        if m == "lb_backends" and struct.unpack("<II", k)[0] == sid:
            found[struct.unpack("<II", k)[1]] = f"{ipaddress.IPv4Address(v[:4])}:{struct.unpack('!H', v[4:6])[0]}"
    assert sorted(found) == list(range(len(found))), "slots are 0..count-1"
    return [found[i] for i in sorted(found)]


def ready_ips(prefix: str, node: str | None = None) -> set[str]:
    return {p.ip for p in STATE.pods if p.name.startswith(prefix + "-") and node in (None, p.node)}


def svc_ip(name: str) -> str:
    return next(s.cluster_ip for s in STATE.services if s.name == name)


def test_entries_follow_the_model_ready_backends_only():
    e = ebpf.entries(service_ports(STATE, NODE, slices_of(STATE)))
    got = services(e)
    sid, count, affinity, verdict = got["10.96.0.100:80/tcp"]
    assert (count, affinity, verdict) == (3, 0, ebpf.BALANCE)
    assert {b.split(":")[0] for b in backends(e, sid)} == ready_ips("backend")
    assert all(b.endswith(":8080") for b in backends(e, sid))
    udp = got["10.96.0.100:53/udp"]
    assert {b.split(":")[0] for b in backends(e, udp[0])} == ready_ips("backend") and udp[0] != sid
    assert all(b.endswith(":5353") for b in backends(e, udp[0]))


def test_no_ready_endpoint_is_refused_and_published_not_ready_ones_are_used():
    got = services(ebpf.entries(service_ports(STATE, NODE, slices_of(STATE))))
    assert got[f"{svc_ip('warming')}:80/tcp"][1:] == (0, 0, ebpf.REJECT)
    assert got[f"{svc_ip('warming-published')}:80/tcp"][1] == 2


def test_session_affinity_carries_its_timeout():
    assert services(ebpf.entries(service_ports(STATE, NODE, slices_of(STATE))))[f"{svc_ip('sticky')}:80/tcp"][2] == 600


def test_internal_traffic_policy_local_spreads_over_this_nodes_endpoints_only():
    for node in ("control-plane", "worker1", "worker2"):
        e = ebpf.entries(service_ports(STATE, node, slices_of(STATE)))
        sid, count, _, verdict = services(e)[f"{svc_ip('node-local')}:80/tcp"]
        here = ready_ips("backend", node)
        if here:
            assert verdict == ebpf.BALANCE and {b.split(":")[0] for b in backends(e, sid)} == here
        else:  # endpoints elsewhere only: kube-proxy drops, so does the socket LB (not a refusal)
            assert (count, verdict) == (0, ebpf.DROP)


def test_a_terminating_endpoint_is_the_fallback_when_none_is_ready():
    svc = next(s for s in STATE.services if s.name == "loner")
    pod = next(p for p in STATE.pods if p.name == "loner")
    sl = EndpointSliceState("default", "loner-x", "loner", (EndpointPortState("", "TCP", 8080),),
                            (EndpointState(pod.ip, pod.node, pod.key, ready=False, serving=True, terminating=True),))
    e = ebpf.entries(service_ports(STATE, NODE, [sl], only={svc.key}))
    sid, count, _, verdict = services(e)[f"{svc.cluster_ip}:80/tcp"]
    assert (count, verdict) == (1, ebpf.BALANCE) and backends(e, sid) == [f"{pod.ip}:8080"]


def test_an_endpoint_change_is_a_few_map_updates_not_a_reload():
    paths = ebpf.map_paths("/pins/worker1")
    ready = READY
    one = next(p for p in STATE.pods if p.name.startswith("backend-"))
    old = ebpf.entries(service_ports(STATE, NODE, slices_of(STATE, ready)))
    new = ebpf.entries(service_ports(STATE, NODE, slices_of(STATE, {**ready, one.key: False})))
    lines = ebpf.batch(old, new, paths)
    assert lines and all(re.fullmatch(r"map (update|delete) pinned /pins/worker1/maps/lb_\w+ key hex [0-9a-f ]+"
                                      r"( value hex [0-9a-f ]+)?", l) for l in lines)
    # backend ports of 4 Services (backend:80, :53, sticky, the NodePorts...) shrink by one: each
    # Service's count rewritten, a slot or two rewritten, the last slot deleted; nothing else.
    assert len(lines) < 40 and not ebpf.batch(new, new, paths)
    first_delete = next(i for i, l in enumerate(lines) if l.startswith("map delete"))
    assert all(l.startswith("map update") for l in lines[:first_delete]), "updates before deletes"
    kinds = [l.split()[3].rsplit("/", 1)[1] for l in lines[:first_delete]]
    assert kinds == sorted(kinds), "backends are written before the services that count them"
    assert all("lb_backends" in l for l in lines[first_delete:]), "the slot past the new count goes last"


def test_service_ids_are_stable_and_distinct():
    assert ebpf.service_id("default/web:http", "tcp") == ebpf.service_id("default/web:http", "tcp")
    assert ebpf.service_id("default/web:http", "tcp") != ebpf.service_id("default/web:http", "udp")
    ids = {ebpf.service_id(f"ns/s{i}", "tcp") for i in range(10000)}
    assert len(ids) == 10000 and 0 not in ids


def test_the_compile_cache_key_follows_source_flags_and_compiler():
    a = ebpf.source_key("int x;", "clang 14")
    assert a == ebpf.source_key("int x;", "clang 14")
    assert a != ebpf.source_key("int y;", "clang 14") and a != ebpf.source_key("int x;", "clang 16")
    argv = ebpf.compile_argv("clang", ebpf.SOURCE, ebpf.SOURCE.with_suffix(".o"))
    assert argv[:1] == ["clang"] and "-target" in argv and argv[argv.index("-target") + 1] == "bpf"


def test_the_cgroup_plan_one_per_node_under_the_labs_own():
    cg = ebpf.node_cgroups(STATE, "/sys/fs/cgroup/unified")
    assert cg == {n.name: f"/sys/fs/cgroup/unified/k8s-netlab-ebpf/{n.name}" for n in STATE.nodes}
    by_ns = ebpf.netns_cgroups(STATE, "/sys/fs/cgroup/unified")
    assert all(by_ns[p.netns] == cg[p.node] for p in STATE.pods)
    assert all(by_ns[n.netns] == cg[n.name] for n in STATE.nodes)
    assert not any(h.netns in by_ns for h in STATE.hosts), "outside hosts have no socket LB"
    assert runtimes.socket_cgroups(shipped_state("services")) == {}, "the other modes: no socket LB, no cgroup"
    assert ebpf.netns_cgroups(STATE, None) == {}


def test_cgroup_mount_and_placement():
    mounts = "cgroup /sys/fs/cgroup/memory cgroup rw 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n"
    assert cgroup2_mount(mounts) == "/sys/fs/cgroup/unified"
    assert cgroup2_mount("proc /proc proc rw 0 0\n") is None
    argv = placed(["ip", "netns", "exec", "p", "sleep", "1"], "/cg/n1")
    assert argv[:2] == ["sh", "-c"] and argv[3] == "/cg/n1/cgroup.procs"
    assert argv[4:] == ["ip", "netns", "exec", "p", "sleep", "1"]


def test_no_kube_proxy_rules_under_ebpf_only_egress_nat():
    proxier = proxiers.of(STATE)
    node = STATE.node(NODE)
    assert proxier.render(STATE, node, slices_of(STATE), frozenset()) == ""
    assert proxier.render_update(STATE, STATE, node, slices_of(STATE), slices_of(STATE, {}), None) == ""
    setup = proxier.setup_rules(STATE, "IPv4")
    assert "table ip ip-masq-agent" in setup and nftables.TABLE not in setup.replace("ip-masq-agent", "")


def external(entries: ebpf.Entries) -> dict[str, tuple[int, int, int, int, int, int]]:
    """"ip:port/proto" -> (id, count, affinity, verdict, snat, fenced), decoded from lb_external."""
    out = {}
    for (m, k), v in entries.items():
        if m == "lb_external":
            ip, port = str(ipaddress.IPv4Address(k[:4])), struct.unpack("!H", k[4:6])[0]
            out[f"{ip}:{port}/{ {6: 'tcp', 17: 'udp'}[k[6]] }"] = struct.unpack("<IIIIII", v)
    return out


def test_nodeports_are_tc_entries_on_the_nodes_own_address_snat_for_cluster_local_endpoints_for_local():
    for node in STATE.nodes:
        e = ebpf.entries(service_ports(STATE, node.name, slices_of(STATE)), node.ip)
        ext = external(e)
        assert set(ext) == {f"{node.ip}:30080/tcp", f"{node.ip}:30081/tcp"}, "NodePorts only on the node's own address"
        sid, count, _, verdict, snat, _ = ext[f"{node.ip}:30080/tcp"]
        assert (verdict, snat) == (ebpf.BALANCE, 1) and {b.split(":")[0] for b in backends(e, sid)} == ready_ips("backend")
        sid, count, _, verdict, snat, _ = ext[f"{node.ip}:30081/tcp"]
        mine = ready_ips("backend", node.name)
        assert snat == 0, "externalTrafficPolicy Local keeps the client's address"
        if mine:
            assert verdict == ebpf.BALANCE and {b.split(":")[0] for b in backends(e, sid)} == mine
        else:
            assert (count, verdict) == (0, ebpf.DROP), "Local with no endpoint here: dropped, as kube-proxy"
        # the node's own sockets reach its NodePorts through the socket LB, to every endpoint
        inside = services(e)[f"{node.ip}:30081/tcp"]
        assert inside[3] == ebpf.BALANCE and {b.split(":")[0] for b in backends(e, inside[0])} == ready_ips("backend")
    assert not external(ebpf.entries(service_ports(STATE, NODE, slices_of(STATE)))), "no node address, no tc entry"


def test_external_ips_and_lb_ips_are_tc_entries_on_every_node_fenced_by_source_ranges():
    state = shipped_state("loadbalancer")
    fenced = [s for s in state.services if s.source_ranges and s.load_balancer_ip]
    assert fenced
    for node in state.nodes:
        e = ebpf.entries(service_ports(state, node.name, slices_of(state)), node.ip)
        ext = external(e)
        for s in state.services:
            for ip in (*s.external_ips, s.load_balancer_ip):
                if ip:
                    got = [v for k, v in ext.items() if k.startswith(f"{ip}:")]
                    assert got and all(v[5] == (s in fenced and ip == s.load_balancer_ip) for v in got), (s.name, ip)
        for s in fenced:
            eid = next(v[0] for k, v in ext.items() if k.startswith(f"{s.load_balancer_ip}:"))
            assert all(("lb_sources", ebpf.src_key(eid, r)) in e for r in s.source_ranges)


def test_the_node_config_names_its_address_podcidr_and_the_tunnels_source():
    node = STATE.node(NODE)
    cfg = ebpf.config(STATE, node)
    ips = [str(ipaddress.IPv4Address(cfg[i:i + 4])) for i in range(0, 24, 4)]
    net = ipaddress.IPv4Network(node.pod_cidr)
    assert ips[:3] == [node.ip, str(net.network_address), str(net.netmask)]
    assert ips[5] == str(net.network_address), "vxlan: towards another node's pod the source is flannel.1's address"


def test_the_c_program_declares_what_python_writes():
    src = ebpf.SOURCE.read_text()
    for name in ebpf.MAPS:
        assert re.search(rf"}} {name} SEC\(\"\.maps\"\)", src), name
    for prog, hook in ebpf.PROGRAMS.items():
        assert f'SEC("cgroup/{hook}")\nint {prog}(' in src
    assert "struct svc_key { __u32 ip; __u16 port; __u8 proto; __u8 pad; }" in src
    assert "struct svc_val { __u32 id; __u32 count; __u32 affinity_s; __u32 verdict; }" in src
    assert "struct be_key { __u32 id; __u32 slot; }" in src and "struct be_val { __u32 ip; __u16 port; __u16 pad; }" in src
    assert f"#define MAX_BACKENDS {ebpf.MAX_BACKENDS}" in src
    for name, value in (("BALANCE", ebpf.BALANCE), ("REJECT", ebpf.REJECT), ("DROP", ebpf.DROP)):
        assert re.search(rf"#define VERDICT_{name} {value}\b", src)
    assert len(ebpf.svc_key("10.96.0.1", 80, "tcp")) == 8 and len(ebpf.svc_val(1, 2, 3, 0)) == 16
    assert "struct ext_val { __u32 id; __u32 count; __u32 affinity_s; __u32 verdict; __u32 snat; __u32 fenced; }" in src
    assert len(ebpf.ext_val(1, 2, 3, 0, True)) == 24
    assert "struct src_key { __u32 prefixlen; __u32 id; __u32 ip; }" in src and len(ebpf.src_key(1, "10.0.0.0/8")) == 12
    assert ("struct lb_cfg { __u32 node_ip; __u32 node_net; __u32 node_mask; __u32 pods_net; __u32 pods_mask; "
            "__u32 remote_ip; }") in src and len(ebpf.config(STATE, STATE.node(NODE))) == 24
    assert f'SEC("tc")\nint {ebpf.TC_PROGRAM}(' in src


@pytest.mark.parametrize("n", [ebpf.MAX_BACKENDS + 1])
def test_too_many_backends_is_a_clear_error(n):
    from lab.errors import LabError
    svc = next(s for s in STATE.services if s.name == "loner")
    eps = tuple(EndpointState(str(ipaddress.IPv4Address("10.244.9.0") + i), "worker1", f"default/p{i}") for i in range(n))
    sl = EndpointSliceState("default", "loner-x", "loner", (EndpointPortState("", "TCP", 8080),), eps)
    with pytest.raises(LabError, match="at most"):
        ebpf.entries(service_ports(STATE, NODE, [sl], only={svc.key}))


# --- the sync loop against the fake Host (no root) ---

@pytest.fixture
def ebpf_record(run_root):
    from lab.host.record import LabRecord
    rec = LabRecord(name=STATE.lab, state=STATE, status="running", pod_ready=dict(READY),
                    cgroups=[f"/cg/k8s-netlab-{STATE.lab}", *ebpf.node_cgroups(STATE, "/cg").values()])
    rec.bpffs = str(rec.dir / "bpf")
    rec.dir.mkdir(parents=True)
    rec.save()
    return rec


def batches(fake) -> dict[str, list[str]]:
    """node -> the map lines its `bpftool batch` got."""
    out = {}
    for c in fake.calls:
        if c.argv[-3:] == ("batch", "file", "-"):
            lines = c.input.splitlines()
            node = lines[0].split(" pinned ")[1].split("/bpf/")[1].split("/")[0]
            out[node] = lines
    return out


def test_an_endpoint_change_syncs_as_a_map_update_per_node_and_no_clusterip_rule(ebpf_record, monkeypatch):
    from lab.host import using
    from lab.host.fake import FakeHost
    from lab.kube_proxy import ebpf_sync, sync

    monkeypatch.setattr(ebpf_sync, "_tool", lambda name: name)
    with using(FakeHost()) as fake:
        sync.sync(ebpf_record, STATE, READY, first=True)
    first = batches(fake)
    assert set(first) == {n.name for n in STATE.nodes}
    assert all(l.startswith("map update") for lines in first.values() for l in lines)
    assert not any(c.argv[:2] == ("nft", "-f") for c in fake.calls), "no kube-proxy rule is written"
    assert not any("loadall" in c.argv or "attach" in c.argv for c in fake.calls), "a sync never reloads"

    ebpf_record.commit(STATE, READY)
    one = next(p for p in STATE.pods if p.name.startswith("backend-"))
    with using(FakeHost()) as fake:
        sync.sync(ebpf_record, STATE, {**READY, one.key: False})
    later = batches(fake)
    assert set(later) == {n.name for n in STATE.nodes}
    untouched = [s for s in STATE.services if s.name in ("loner", "warming", "warming-published")]
    for svc in untouched:  # Services the change does not touch: none of their entries is written
        sid = ebpf.service_id(f"{svc.key}", "tcp")
        assert any(ebpf._hex(ebpf.svc_key(svc.cluster_ip, 80, "tcp")) in l for l in first["worker1"]), "written at first"
        for lines in later.values():
            assert not any(ebpf._hex(ebpf.svc_key(svc.cluster_ip, 80, "tcp")) in l for l in lines)
            assert not any(f"key hex {ebpf._hex(ebpf.be_key(sid, 0))}" in l for l in lines)
    assert any(l.startswith("map delete") for lines in later.values() for l in lines)


def test_a_refused_map_update_is_a_clear_error(ebpf_record, monkeypatch):
    from lab.errors import LabError
    from lab.host import using
    from lab.host.fake import FakeHost
    from lab.kube_proxy import ebpf_sync, sync

    monkeypatch.setattr(ebpf_sync, "_tool", lambda name: name)
    fake = FakeHost()
    fake.answer(("bpftool", "batch"), 255, stderr="Error: bpf obj get: No such file or directory")
    with using(fake), pytest.raises(LabError, match="socket-LB maps of node .* were not updated: Error: bpf obj get"):
        sync.sync(ebpf_record, STATE, READY, first=True)


def test_no_toolchain_fails_at_once_with_the_fix(monkeypatch):
    from lab.errors import LabError
    from lab.kube_proxy import ebpf_sync

    monkeypatch.setattr(ebpf_sync.shutil, "which", lambda name: None)
    with pytest.raises(LabError, match="needs clang, which is not installed: scripts/install.sh"):
        ebpf_sync.check()


def test_no_cgroup2_fails_at_once(monkeypatch, tmp_path):
    from lab.errors import LabError
    from lab.kube_proxy import ebpf_sync

    obj = tmp_path / "sock_lb.o"
    monkeypatch.setattr(ebpf_sync, "build", lambda: obj)
    monkeypatch.setattr(ebpf_sync, "_tool", lambda name: name)
    monkeypatch.setattr(ebpf_sync.cgroup, "mount_point", lambda: None)
    with pytest.raises(LabError, match="cgroup v2 is not mounted"):
        ebpf_sync.check()


def test_lab_validate_checks_the_toolchain_without_running_anything(monkeypatch):
    """`lab validate` never runs a program: under proxy ebpf it looks for clang, bpftool, libbpf's
    headers and cgroup v2 (LabError naming what is missing); compiling and loading is `lab up`'s."""
    from lab.errors import LabError
    from lab.host.fake import FakeHost
    from lab.host import using
    from lab.kube_proxy import ebpf_sync
    from lab.runtime import controllers

    monkeypatch.setattr(ebpf_sync.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(ebpf_sync.Path, "exists", lambda self: True)
    monkeypatch.setattr(ebpf_sync.cgroup, "mount_point", lambda: "/sys/fs/cgroup/unified")
    monkeypatch.setattr(ebpf_sync, "build", lambda: pytest.fail("validate compiled the programs"))
    with using(FakeHost()) as fake:
        notes = controllers.preflight(STATE, deep=False)
    assert not fake.calls, fake.calls
    assert notes == ["proxy ebpf: clang, bpftool and libbpf's headers installed, cgroup v2 at /sys/fs/cgroup/unified; "
                     "`lab up` compiles and loads the programs"]
    monkeypatch.setattr(ebpf_sync.shutil, "which", lambda name: None if name == "bpftool" else f"/usr/bin/{name}")
    with pytest.raises(LabError, match="needs bpftool, which is not installed"):
        controllers.preflight(STATE, deep=False)


def test_the_tc_program_sits_on_the_uplink_the_bridge_and_the_tunnel():
    from lab.kube_proxy import ebpf_sync
    assert ebpf_sync.tc_devices(STATE) == ("eth0", "cni0", "flannel.1")
    ptp = shipped_state("vpc-cni")
    assert ebpf_sync.tc_devices(ptp) == ("eth0",), "ptp: no bridge; its pods' veths are found one by one"
