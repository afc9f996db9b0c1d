"""`cluster.proxy: ebpf`, planned: Cilium-style socket load balancing for ClusterIPs. Pure.

Each node gets a cgroup (v2) holding its pods' and its hostNetwork processes, with the programs of
bpf/sock_lb.c attached (connect4, sendmsg4, recvmsg4, getpeername4) and maps of its own. What the
maps hold comes from the one kube-proxy model (lab.kube_proxy.model: CategorizeEndpoints, ready
and terminating endpoints, internalTrafficPolicy): this module only spells those decisions as the
bytes the C structs expect, and a change as the `bpftool batch` lines that turn one map content
into the other. NodePorts, externalIPs and LoadBalancer IPs are the same object's tc program on the
node's devices (lb_external: DNAT, SNAT for externalTrafficPolicy Cluster); the node's own sockets
reach them through the socket LB (lb_services). No kube-proxy rule is written: see docs/EBPF.md.

The effects (compile, load, attach, update, remove) are lab.kube_proxy.ebpf_sync.
"""
from __future__ import annotations

import hashlib
import ipaddress
import struct
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

from lab import routing
from lab.controlplane.state import ClusterState, EndpointSliceState, NodeState, ServiceState
from lab.errors import LabError
from lab.kube_proxy import nftables
from lab.kube_proxy.model import Endpoint, ServicePort, service_ports
from lab.kube_proxy.proxier import ExternalChoice, Proxier

SOURCE = Path(__file__).parent / "bpf" / "sock_lb.c"
CLANG_FLAGS = ("-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-Wall", "-Werror")
# program name in sock_lb.c -> the cgroup attach type bpftool names
PROGRAMS = {"sock4_connect": "connect4", "sock4_sendmsg": "sendmsg4",
            "sock4_recvmsg": "recvmsg4", "sock4_getpeername": "getpeername4"}
TC_PROGRAM = "tc_nodeport"      # sched_cls, tc ingress (direct action) on the devices tc_devices names
MAPS = ("lb_services", "lb_backends", "lb_hits", "lb_affinity", "lb_revnat",
        "lb_external", "lb_nat", "lb_nat_rev", "lb_config", "lb_sources")
CGROUP_PREFIX = "k8s-netlab-"   # the lab's cgroup: <cgroup2 mount>/k8s-netlab-<lab>/<node>
MAX_BACKENDS = 256              # the bound of the affinity loop in sock_lb.c
PROTOCOLS = {"tcp": 6, "udp": 17}
BALANCE, REJECT, DROP = 0, 1, 2  # VERDICT_* in sock_lb.c


# --- the cgroups ---

def lab_cgroup(root: str, lab: str) -> str:
    return f"{root.rstrip('/')}/{CGROUP_PREFIX}{lab}"


def node_cgroups(state: ClusterState, root: str) -> dict[str, str]:
    """node name -> its cgroup, created in this order (the lab's first) and removed in reverse."""
    return {n.name: f"{lab_cgroup(root, state.lab)}/{n.name}" for n in state.nodes}


def netns_cgroups(state: ClusterState, root: Optional[str]) -> dict[str, str]:
    """network namespace -> the cgroup whose programs that namespace's sockets meet: each pod's and
    node's namespace maps to its node's cgroup ({} without a cgroup v2 root). Asked through this
    mode's runtime only (lab.kube_proxy.runtimes.socket_cgroups: {} under the other modes, whose
    Services are the node's netfilter rules whoever opens the socket)."""
    if not root:
        return {}
    cgroups = node_cgroups(state, root)
    out = {n.netns: cgroups[n.name] for n in state.nodes}
    out.update({p.netns: cgroups[p.node] for p in state.pods})
    return out


# --- the object file ---

def source_key(source: str, clang_version: str) -> str:
    """The compile cache's key: the source, the flags and the compiler, hashed."""
    h = hashlib.sha256()
    for part in (source, "\0".join(CLANG_FLAGS), clang_version):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


def compile_argv(clang: str, source: Path, out: Path) -> list[str]:
    return [clang, *CLANG_FLAGS, "-c", str(source), "-o", str(out)]


# --- the maps ---

def service_id(spn: str, proto: str) -> int:
    """A service port's id in the maps: stable across syncs (a partial sync rewrites only its
    entries), from its name; never 0."""
    return int.from_bytes(hashlib.sha256(f"{spn}/{proto}".encode()).digest()[:4], "little") or 1


def _addr(ip: str, port: int) -> bytes:
    return ipaddress.IPv4Address(ip).packed + struct.pack("!H", port)


def svc_key(ip: str, port: int, proto: str) -> bytes:
    """struct svc_key: ip and port in network order, the IP protocol, a pad byte."""
    return _addr(ip, port) + bytes([PROTOCOLS[proto], 0])


def svc_val(sid: int, count: int, affinity_s: int, verdict: int) -> bytes:
    return struct.pack("<IIII", sid, count, affinity_s, verdict)


def be_key(sid: int, slot: int) -> bytes:
    return struct.pack("<II", sid, slot)


def be_val(e: Endpoint) -> bytes:
    return _addr(e.ip, e.port) + b"\0\0"


def external_choices(p: ServicePort) -> tuple[tuple[Endpoint, ...], int]:
    """(the endpoints traffic from outside to a NodePort, externalIP or LB IP of this node is spread
    over, the verdict): kube-proxy's external chain — this node's endpoints under
    externalTrafficPolicy Local, all usable ones otherwise; none: refused (the packet passes
    untouched and the node's own stack answers) if the Service has none at all, dropped if a Local
    policy finds none here."""
    eps = p.local if p.external_local else p.cluster
    if not p.has_external or not eps:
        return (), REJECT if p.no_endpoints_verdict == "reject" else DROP
    return eps, BALANCE


def choices(p: ServicePort) -> tuple[tuple[Endpoint, ...], int]:
    """(the endpoints ClusterIP traffic from this node is spread over, the verdict): kube-proxy's
    choice for internal traffic — the node's own endpoints under internalTrafficPolicy Local, all
    usable ones otherwise; none: refused if the Service has no endpoints at all, dropped if a
    Local policy finds none here (kube-proxy's no_endpoints_verdict)."""
    eps = p.local if p.internal_local else p.cluster
    if not p.has_internal or not eps:
        return (), REJECT if p.no_endpoints_verdict == "reject" else DROP
    return eps, BALANCE


Entries = dict[tuple[str, bytes], bytes]  # (map, key) -> value


def ext_val(eid: int, count: int, affinity_s: int, verdict: int, snat: bool, fenced: bool = False) -> bytes:
    return struct.pack("<IIIIII", eid, count, affinity_s, verdict, int(snat), int(fenced))


def src_key(eid: int, cidr: str) -> bytes:
    """struct src_key: an LPM key, the id's 32 bits then the range's prefix."""
    net = ipaddress.IPv4Network(cidr, strict=False)
    return struct.pack("<II", 32 + net.prefixlen, eid) + net.network_address.packed


def external_addresses(p: ServicePort, node_ip: str) -> list[tuple[str, int]]:
    """Where traffic from outside reaches this port on a node: its NodePort on the node's own
    address (kube-proxy's `--nodeport-addresses primary`), each externalIP and the LB IP on the port."""
    out = [(ip, p.port.port) for ip in (*p.svc.external_ips, p.svc.load_balancer_ip)
           if ip and ipaddress.ip_address(ip).version == 4]  # the tc program is IPv4: docs/EBPF.md
    return out + ([(node_ip, p.port.node_port)] if p.port.node_port else [])


def entries(ports: Iterable[ServicePort], node_ip: str = "") -> Entries:
    """The map entries for these service ports on one node: lb_services (ClusterIPs; with node_ip,
    also the node's NodePorts, externalIPs and LB IPs as its own sockets reach them), lb_external
    (those addresses as the tc program sees them from outside) and lb_backends for each id."""
    out: Entries = {}
    ids: dict[int, str] = {}

    def backends(sid: int, name: str, eps: tuple[Endpoint, ...]) -> None:
        if ids.setdefault(sid, name) != name:
            raise LabError(f"proxy ebpf: service ports {ids[sid]} and {name} hash to the same map id; rename one")
        if len(eps) > MAX_BACKENDS:
            raise LabError(f"proxy ebpf: {p.spn} has {len(eps)} endpoints; the load balancer takes at most {MAX_BACKENDS}")
        for slot, e in enumerate(eps):
            out[("lb_backends", be_key(sid, slot))] = be_val(e)

    for p in ports:
        if ipaddress.ip_address(p.svc.cluster_ip).version != 4:
            continue  # the programs are IPv4 (connect4...): docs/EBPF.md
        sid = service_id(p.spn, p.proto)
        eps, verdict = choices(p)
        backends(sid, p.spn, eps)
        affinity = p.svc.affinity_timeout if p.affinity else 0
        out[("lb_services", svc_key(p.svc.cluster_ip, p.port.port, p.proto))] = svc_val(sid, len(eps), affinity, verdict)
        if not (node_ip and p.external):
            continue
        # from outside: the tc program; from the node and its pods: the socket LB, to every usable
        # endpoint whatever the traffic policies (kube-proxy short-circuits pods and the node itself)
        eid, inner = service_id(p.spn, p.proto + "/external"), service_id(p.spn, p.proto + "/inside")
        ext, ext_verdict = external_choices(p)
        backends(eid, p.spn + " (external)", ext)
        backends(inner, p.spn + " (inside)", p.cluster)
        inner_verdict = BALANCE if p.cluster else REJECT if p.no_endpoints_verdict == "reject" else DROP
        fence = p.svc.source_ranges if p.svc.load_balancer_ip else ()
        for cidr in fence:  # loadBalancerSourceRanges: who may reach the LB IP
            out[("lb_sources", src_key(eid, cidr))] = b"\x01"
        for ip, port in external_addresses(p, node_ip):
            out[("lb_external", svc_key(ip, port, p.proto))] = ext_val(
                eid, len(ext), affinity, ext_verdict, not p.external_local, bool(fence) and ip == p.svc.load_balancer_ip)
            out[("lb_services", svc_key(ip, port, p.proto))] = svc_val(inner, len(p.cluster), affinity, inner_verdict)
    return out


def config(state: ClusterState, node: NodeState) -> bytes:
    """lb_config's one entry (struct lb_cfg): the node's address, its podCIDR and the cluster's, and
    the source a masquerade gives a packet to another node's pod (lab.routing decides, as for the
    probes' expectations)."""
    def net(cidr: str) -> bytes:
        n = ipaddress.IPv4Network(cidr, strict=False)
        return n.network_address.packed + n.netmask.packed
    return (ipaddress.IPv4Address(node.ip).packed + net(node.pod_cidr) + net(state.pod_cidr)
            + ipaddress.IPv4Address(_remote_source(state, node)).packed)


def _remote_source(state: ClusterState, node: NodeState) -> str:
    others = [n.name for n in state.nodes if n.name != node.name]
    return routing.backend(state).sending_address(state, node.name, others[0]) if others else node.ip


def snat_source(state: ClusterState, node: NodeState, backend_ip: str) -> str:
    """The source the tc program's SNAT gives a packet to this backend (snat_source in sock_lb.c):
    towards another node's pod the tunnel's address (lb_config's remote_ip), else the node's own."""
    ip = ipaddress.ip_address(backend_ip)
    if ip not in ipaddress.ip_network(node.pod_cidr, strict=False) and \
            ip in ipaddress.ip_network(state.pod_cidr, strict=False):
        return _remote_source(state, node)
    return node.ip


def _hex(b: bytes) -> str:
    return " ".join(f"{x:02x}" for x in b)


def batch(old: Entries, new: Entries, maps: Mapping[str, str]) -> list[str]:
    """`bpftool batch` lines that turn the maps from `old` to `new`, touching only what differs.
    Order keeps every state in between usable: backends are written before a service's count
    grows to reach them, and removed after it shrank."""
    def update(k):
        return f"map update pinned {maps[k[0]]} key hex {_hex(k[1])} value hex {_hex(new[k])}"

    def delete(k):
        return f"map delete pinned {maps[k[0]]} key hex {_hex(k[1])}"

    changed = [k for k in new if old.get(k) != new[k]]
    gone = [k for k in old if k not in new]
    fronts = ("lb_services", "lb_external")
    return ([update(k) for k in changed if k[0] not in fronts] + [update(k) for k in changed if k[0] in fronts]
            + [delete(k) for k in gone if k[0] in fronts] + [delete(k) for k in gone if k[0] not in fronts])


def nat_lines(entries: Entries) -> list[str]:
    """lb_nat's entries (struct nat_key -> struct nat_val, addresses and ports in network order) as
    "SRC:SPORT → DST:DPORT/proto => SRC:SPORT → DST:DPORT": what the tc program made of each flow."""
    names = {v: k for k, v in PROTOCOLS.items()}
    out = []
    for (m, key), val in entries.items():
        if m != "lb_nat" or len(key) < 13 or len(val) < 12:
            continue
        s, d, sp, dp = ipaddress.IPv4Address(key[:4]), ipaddress.IPv4Address(key[4:8]), *struct.unpack("!HH", key[8:12])
        ts, td, tsp, tdp = ipaddress.IPv4Address(val[:4]), ipaddress.IPv4Address(val[4:8]), *struct.unpack("!HH", val[8:12])
        out.append(f"{s}:{sp} → {d}:{dp}/{names.get(key[12], key[12])} => {ts}:{tsp} → {td}:{tdp}")
    return out


def map_paths(pins: str) -> dict[str, str]:
    """map name -> its pin under one node's directory in the lab's bpffs."""
    return {m: f"{pins}/maps/{m}" for m in MAPS}


def prog_paths(pins: str) -> dict[str, str]:
    """The cgroup programs' pins (PROGRAMS); the tc program's is tc_path."""
    return {p: f"{pins}/progs/{p}" for p in PROGRAMS}


def tc_path(pins: str) -> str:
    return f"{pins}/progs/{TC_PROGRAM}"


def _socket_lb(p: ServicePort) -> tuple[tuple[Endpoint, ...], bool]:
    eps, verdict = choices(p)
    return eps, verdict == REJECT


def _external_lb(state: ClusterState, node: str, p: ServicePort) -> ExternalChoice:
    """tc_nodeport on `node` for a new flow from outside to p's NodePort: what `balance` does with
    the lb_external entry entries() writes (the same choice, the same SNAT rule)."""
    n = state.node(node)
    eps, verdict = external_choices(p)
    entry = f"lb_external {n.ip}:{p.port.node_port}/{p.proto} (id {service_id(p.spn, p.proto + '/external'):08x})"
    snat = {str(e): snat_source(state, n, e.ip) for e in eps} if not p.external_local else {}
    return ExternalChoice(TC_PROGRAM, entry, eps, {BALANCE: "balance", REJECT: "refuse", DROP: "drop"}[verdict], snat)


# Every Service address is a map entry (written by the runtime, lab.kube_proxy.ebpf_sync): no
# kube-proxy table. The node keeps ip-masq-agent's egress NAT (nftables.masq_agent_rules).
def _dataplane(s: ServiceState) -> tuple[str, str]:
    if any(p.node_port for p in s.ports) or s.external_ips or s.load_balancer_ip:
        return ("ebpf/socket-lb+tc", "eBPF: the socket LB for the nodes' own sockets (lb_services); from outside, the "
                "tc program on the nodes' devices (lb_external: DNAT, SNAT for Cluster); no kube-proxy rules")
    return "ebpf/socket-lb", "eBPF: the socket LB rewrites connect()/sendmsg() to a backend (lb_services); no kube-proxy rules"


def _decode_addr(b: bytes) -> str:
    return f"{'.'.join(str(x) for x in b[:4])}:{int.from_bytes(b[4:6], 'big')}"


def map_rows(state: ClusterState, s: ServiceState, slices: Sequence[EndpointSliceState],
             live: Mapping[str, Mapping[tuple[str, bytes], bytes]]) -> list[list[str]]:
    """Under proxy ebpf (whose maps `live` holds), each node's map entries for this Service beside what the model writes:
    [node, address, map, service id, backends in the map, backends the model chooses, note].
    live: node -> the entries read from its maps (lb_services, lb_external, lb_backends)."""
    def slots(entries, value: bytes) -> list[str]:
        """The backends an lb_services/lb_external value reaches: slots 0..count-1 of its id."""
        sid, count = int.from_bytes(value[:4], "little"), int.from_bytes(value[4:8], "little")
        found = (entries.get(("lb_backends", be_key(sid, i))) for i in range(count))
        return [_decode_addr(b) for b in found if b is not None]

    rows = []
    for node in state.nodes:
        want = entries(service_ports(state, node.name, slices, {s.key}), node.ip)
        have = live.get(node.name, {})
        for (m, key), value in sorted(want.items()):
            if m not in ("lb_services", "lb_external"):
                continue
            wanted, got = slots(want, value), have.get((m, key))
            if got is None:
                rows.append([node.name, _decode_addr(key), m, "-", "-", str(len(wanted)), "missing from the map"])
                continue
            held = slots(have, got)
            stale, missing = sorted(set(held) - set(wanted)), sorted(set(wanted) - set(held))
            note = f"stale: {', '.join(stale)}" if stale else f"missing: {', '.join(missing)}" if missing else "ok"
            rows.append([node.name, _decode_addr(key), m, f"{int.from_bytes(got[:4], 'little'):#010x}", str(len(held)),
                         str(len(wanted)), note])
    return rows


PROXIER: Proxier = replace(
    nftables.PROXIER, name="ebpf", socket_lb=_socket_lb, external_lb=_external_lb,
    runtime="lab.kube_proxy.ebpf_sync", dataplane=_dataplane, map_rows=map_rows,
    render=lambda state, node, slices, existing, family="IPv4": "",
    render_update=lambda old, new, node, old_slices, new_slices, only, family="IPv4": "")
