"""Per kind: what to read first, and the steps (apply ops, undo ops) built from what was read."""
from __future__ import annotations

from typing import Callable, Optional

from lab.controlplane import kube_dns
from lab.controlplane.state import ClusterState, container_key
from lab.errors import LabError
from lab.faults import ops
from lab.faults import targets
from lab.faults.targets import Target, node, pod, sandboxed
from lab import routing
from lab.cni import kinds as cni_kinds

DEFAULT_QDISCS = ("noqueue", "pfifo_fast", "fq_codel", "mq", "noop", "pfifo")
SYSCTL_KEYS = {"ip_forward": "net.ipv4.ip_forward", "rp_filter": "net.ipv4.conf.all.rp_filter",
               "bridge-nf-call-iptables": "net.bridge.bridge-nf-call-iptables"}
PRESETS = {"ip-forward-off": ("ip_forward", 0), "rp-filter-strict": ("rp_filter", 1),
           "bridge-nf-off": ("bridge-nf-call-iptables", 0)}
PRIORITY = {"prerouting": -300, "postrouting": 300}


def _seen(observed: dict, read: tuple):
    return observed[ops.key(read)]


# --- links ---

def _links(state: ClusterState, t: Target, p: dict) -> list[tuple]:
    """The reads naming the links a fault acts on: ("link", netns, dev), or ("peer", pod netns, node netns)
    for a pod's host-side veth."""
    if t.kind == "node":
        return [("link", node(state, t.name).netns, p.get("dev") or "eth0")]
    if t.kind == "overlay":
        backend = routing.backend(state)
        if not backend.overlay_device:
            having = ", ".join(b.name for b in routing.BACKENDS.values() if b.overlay_device)
            raise LabError(f"lab {state.lab} has no overlay device (network: {state.network}; only {having} has one)")
        # one device per family the cluster has (flannel.1, flannel-v6.1): an IPv6-only lab has no flannel.1
        devices = [backend.overlay_device if f == 4 else backend.overlay_device6 for f in state.families]
        chosen = [node(state, t.name)] if t.name else list(state.nodes)
        return [("link", n.netns, d) for n in chosen for d in devices if d]
    sp = sandboxed(state, t.name)
    if p.get("dev") not in (None, "eth0"):
        raise LabError(f"a pod has one link, eth0; dev={p['dev']} is for node/NAME")
    if p.get("side") == "host":
        return [("peer", sp.netns, node(state, sp.node).netns)]
    return [("link", sp.netns, "eth0")]


def _link_seen(observed: dict, read: tuple) -> tuple[str, str, dict]:
    """(netns, dev, the link as `ip -d -j link` shows it)."""
    link = _seen(observed, read)
    netns = read[1] if read[0] == "link" else read[2]
    if not link:
        raise LabError(f"no link {read[2]} in {read[1]}" if read[0] == "link" else f"no host-side veth of {read[1]}")
    return netns, link["ifname"], link


def _relink(dev: str, routes: list, neigh: list) -> list[str]:
    """Up again, with what the kernel dropped when it went down: the routes through it (not the
    kernel's own, which come back with the address) and its permanent neighbours."""
    lines = [f"link set dev {dev} up"]
    lines += [f"route replace {ops.route_line(r)}" for r in routes if r.get("dev") == dev and r.get("protocol") != "kernel"]
    lines += [f"neigh replace {n['dst']} lladdr {n['lladdr']} dev {dev} nud permanent" for n in neigh if n.get("dev") == dev]
    return lines


def _link_reads(state, t, p) -> list[tuple]:
    r = _links(state, t, p)[0]
    netns = r[1] if r[0] == "link" else r[2]
    return [r, ("routes", netns), ("neigh", netns)]


def _link_down(state, t, p, observed, fid):
    r, routes, neigh = _link_reads(state, t, p)
    netns, dev, link = _link_seen(observed, r)
    if "UP" not in link.get("flags", []):
        raise LabError(f"{dev} in {netns} is already down")
    up = ("ip", netns, _relink(dev, _seen(observed, routes), _seen(observed, neigh)))
    down = ("ip", netns, [f"link set dev {dev} down"])
    if p.get("count") is None:
        return [([down], [up])], False
    half = ("sleep", p["period"] / 2, "")
    return [([down, half, up, half] * p["count"], [up])], True


# --- routes ---

def _route_reads(state, t, p) -> list[tuple]:
    return [("routes", node(state, t.name).netns)]


def _cidr_of(state: ClusterState, ref: str, family: str = "") -> str:
    """The node's podCIDR of the family (default the cluster's primary)."""
    n = node(state, ref.partition("/")[2])
    cidr = n.pod_cidr_of(int(family)) if family else n.pod_cidr
    if not cidr:
        raise LabError(f"family={family}: lab {state.lab} has no IPv{family} pod network; its families: "
                       f"{', '.join(f'IPv{f}' for f in state.families)}")
    return cidr


def _routes_to(routes: list, cidr: str) -> list[dict]:
    return [r for r in routes if r.get("dst") and ops.same_dst(r, cidr)]


def _route(state, t, p, observed, fid):
    n = node(state, t.name)
    routes = _seen(observed, ("routes", n.netns))
    cidr = _cidr_of(state, p["to"], p.get("family") or "") if p.get("to") else p["cidr"]
    if cidr in n.cidrs:
        raise LabError(f"{cidr} is node {n.name}'s own podCIDR (on its bridge): pick another node's")
    old = _routes_to(routes, cidr)
    restore = [f"route replace {ops.route_line(r)}" for r in old]
    metric = f" metric {old[0]['metric']}" if old and "metric" in old[0] else ""
    if p["kind"] == "route-delete":
        if not old:
            raise LabError(f"node {n.name} has no route to {cidr}; its routes: {', '.join(r['dst'] for r in routes)}")
        apply = [f"route del {ops.route_line(r)}" for r in old]
    elif p["kind"] == "route-blackhole":
        apply = [f"route replace blackhole {cidr}{metric}"]
    else:
        via = _routes_to(routes, _cidr_of(state, p["via"], p.get("family") or ""))
        if not via:
            raise LabError(f"node {n.name} has no route to {p['via']}'s podCIDR to copy the next hop from")
        wrong = {k: v for k, v in via[0].items() if k in ("gateway", "dev", "flags", "type")}
        apply = [f"route replace {ops.route_line({**wrong, 'dst': cidr, **({'metric': old[0]['metric']} if metric else {})})}"]
    undo = restore or [f"route del {cidr}{metric}"]
    return [([("ip", n.netns, apply)], [("ip", n.netns, undo)])], False


# --- netfilter ---

def _table(fid: str) -> str:
    return f"k8snetlab_fault_{fid}"


def _nft(netns: str, dev: str, rule: str, hooks: tuple[str, ...], fid: str) -> tuple[list, list]:
    """The lab's own table for one fault: the agent's syncs (table ip kube-proxy, iptables-restore
    --noflush) never touch it, and clear deletes exactly it."""
    match = {"prerouting": f'iifname "{dev}" ', "postrouting": f'oifname "{dev}" '}
    chains = "".join(f"  chain {h} {{\n    type filter hook {h} priority {PRIORITY[h]}; policy accept;\n"
                     f"    {match[h]}{rule}\n  }}\n" for h in hooks)
    script = f"table inet {_table(fid)} {{\n{chains}}}\n"
    return [("nft", netns, script)], [("nft", netns, f"delete table inet {_table(fid)}\n")]


def _hooks(direction: str) -> tuple[str, ...]:
    return {"in": ("prerouting",), "out": ("postrouting",), "both": ("prerouting", "postrouting")}[direction]


def _drop(state, t, p, observed, fid):
    netns, dev = _plain_link(state, t, p)
    proto = p["proto"]
    rule = f"meta l4proto {proto}" + (f" th dport {p['port']}" if p.get("port") else "") + " drop"
    return [_nft(netns, dev, rule, _hooks(p["direction"]), fid)], False


def _loss(state, t, p, observed, fid):
    netns, dev = _plain_link(state, t, p)
    return [_nft(netns, dev, f"numgen random mod 100 < {p['percent']} drop", _hooks("both"), fid)], False


def _plain_link(state, t, p) -> tuple[str, str]:
    read = _links(state, t, p)[0]
    return read[1], read[2]


def _forward_reads(state, t, p):
    return [("forward", node(state, t.name).netns)]


def _forward_drop(state, t, p, observed, fid):
    netns = node(state, t.name).netns
    old = _seen(observed, ("forward", netns))
    if old == "DROP":
        raise LabError(f"FORWARD's policy in node {t.name} is already DROP")
    return [([("iptables", netns, ["-P", "FORWARD", "DROP"])], [("iptables", netns, ["-P", "FORWARD", old])])], False


# --- MTU, qdiscs ---

def _mtu(state, t, p, observed, fid):
    steps = []
    for read in _links(state, t, p):
        netns, dev, link = _link_seen(observed, read)
        if link["mtu"] == p["value"]:
            raise LabError(f"{dev} in {netns} already has MTU {p['value']}")
        steps.append(([("ip", netns, [f"link set dev {dev} mtu {p['value']}"])],
                      [("ip", netns, [f"link set dev {dev} mtu {link['mtu']}"])]))
    return steps, False


def _qdisc_reads(state, t, p):
    netns, dev = _plain_link(state, t, p)
    return [("qdisc", netns, dev)]


def _qdisc(state, t, p, observed, fid):
    netns, dev = _plain_link(state, t, p)
    old = _seen(observed, ("qdisc", netns, dev))
    if old not in DEFAULT_QDISCS:
        raise LabError(f"{dev} in {netns} already has a root qdisc {old} (another fault's?): clear that first")
    if p["kind"] == "rate":
        spec = f"tbf rate {p['rate']} burst {p['burst']} latency {p['latency']}"
    else:
        spec = f"netem delay {p['delay']}" + (f" {p['jitter']}" if p.get("jitter") else "")
    return [([("tc", netns, [f"qdisc replace dev {dev} root {spec}"])], [("tc", netns, [f"qdisc del dev {dev} root"])])], False


# --- sysctls, hairpin ---

def _sysctl_spec(p: dict) -> tuple[str, int]:
    return PRESETS.get(p["kind"]) or (p["name"], p["value"])


def _sysctl_reads(state, t, p):
    name, _ = _sysctl_spec(p)
    return [("sysctl", node(state, t.name).netns, SYSCTL_KEYS[name]), ("kernel",)]


def bridge_nf_per_netns(release: str) -> bool:
    """bridge-nf-call-* are per network namespace since Linux 5.3; before, a node's write is the host's."""
    major, minor = (int(x) for x in release.split(".")[:2])
    return (major, minor) >= (5, 3)


def _sysctl(state, t, p, observed, fid):
    name, value = _sysctl_spec(p)
    netns, key = node(state, t.name).netns, SYSCTL_KEYS[name]
    old = _seen(observed, ("sysctl", netns, key))
    release = _seen(observed, ("kernel",))
    if name.startswith("bridge-nf") and not bridge_nf_per_netns(release):
        raise LabError(f"{key} is global on kernel {release} (per namespace since 5.3): it would change the host's")
    if old is None:
        raise LabError(f"{key} does not exist in {netns}" + (" (br_netfilter is not loaded)" if "bridge" in key else ""))
    if str(old) == str(value):
        raise LabError(f"{key} is already {value} in node {t.name}")
    return [([("sysctl", netns, {key: str(value)})], [("sysctl", netns, {key: str(old)})])], False


def _hairpin_reads(state, t, p):
    if not cni_kinds.of(state).bridged:
        raise LabError(f"hairpin-off needs a bridge: lab {state.lab} uses cni: {state.cni} (no bridge ports)")
    sp = sandboxed(state, t.name)
    return [("peer", sp.netns, node(state, sp.node).netns)]


def _hairpin(state, t, p, observed, fid):
    read = _hairpin_reads(state, t, p)[0]
    netns, dev, link = _link_seen(observed, read)
    if not link.get("linkinfo", {}).get("info_slave_data", {}).get("hairpin"):
        raise LabError(f"hairpin mode is already off on {dev} (pod {t.name}'s bridge port in {netns})")
    return [([("ip", netns, [f"link set dev {dev} type bridge_slave hairpin off"])],
             [("ip", netns, [f"link set dev {dev} type bridge_slave hairpin on"])])], False


# --- processes ---

def _processes(state: ClusterState, t: Target) -> list[str]:
    """The process keys a stop/kill means: container keys, "agent", or "bgpd/NODE"."""
    if t.kind == "agent":
        return ["agent"]
    if t.kind == "node":
        daemon = routing.backend(state).node_daemon
        if not daemon:
            raise LabError(f"stop node/NAME stops its routing daemon: lab {state.lab} has none (network: {state.network})")
        return [f"{daemon}/{node(state, t.name).name}"]
    if t.kind == targets.KUBE_DNS:
        keys = [container_key(p, c) for p in state.pods for c in p.containers if c.image == kube_dns.IMAGE]
        if not keys:
            raise LabError(f"lab {state.lab} has no cluster DNS (kube-dns)")
        return keys
    sp = pod(state, t.name)
    names = [c.name for c in sp.containers]
    if t.container and t.container not in names:
        raise LabError(f"pod {sp.key} has no container {t.container!r}; its containers: {', '.join(names)}")
    return [container_key(sp, c) for c in sp.containers if not t.container or c.name == t.container]


def _proc_reads(state, t, p):
    return [("proc", k) for k in _processes(state, t)]


def _signal(state, t, p, observed, fid):
    steps = []
    for read in _proc_reads(state, t, p):
        proc = _seen(observed, read)
        if not proc:
            raise LabError(f"{read[1]} is not running")
        if p["kind"] == "stop":
            steps.append(([("signal", proc, "SIGSTOP")], [("signal", proc, "SIGCONT")]))
        else:
            steps.append(([("signal", proc, "SIGKILL")], [("start", read[1], "")]))
    return steps, False


# --- BGP ---

def _bgp_reads(state, t, p):
    """The neighbour's remote-as as the node's bgpd has it now (what the undo puts back)."""
    if "bgp-peer-as" not in routing.backend(state).faults:
        having = ", ".join(b.name for b in routing.BACKENDS.values() if "bgp-peer-as" in b.faults)
        raise LabError(f"bgp-peer-as needs network: {having}; lab {state.lab} uses {state.network}")
    me, peer = node(state, t.name).name, p["peer"].partition("/")[2]
    sessions = {name: ip for name, ip, _ in routing.backend(state).peers(state, me)}
    if peer not in sessions:
        raise LabError(f"node {me} has no BGP session with {peer}; its peers: {', '.join(sessions) or 'none'}")
    return [("bgp-remote-as", me, sessions[peer])]


def _bgp_peer_as(state, t, p, observed, fid):
    read = _bgp_reads(state, t, p)[0]
    was = _seen(observed, read)
    if not was:
        raise LabError(f"bgpd on {read[1]} does not know neighbour {read[2]} (is FRR running?)")
    if int(was) == p["as"]:
        raise LabError(f"node {read[1]} already peers with {read[2]} as AS {was}: give another as=")
    local = routing.backend(state).local_as(state, read[1])

    def remote_as(value) -> tuple:
        return ("vtysh", read[1], ["configure terminal", f"router bgp {local}", f"neighbor {read[2]} remote-as {value}"])

    return [([remote_as(p["as"])], [remote_as(was)])], False


Planner = Callable[..., tuple[list, bool]]
KIND_PLANS: dict[str, tuple[Callable, Planner]] = {
    "link-down": (_link_reads, _link_down), "link-flap": (_link_reads, _link_down),
    "route-delete": (_route_reads, _route), "route-blackhole": (_route_reads, _route), "route-wrong": (_route_reads, _route),
    "drop": (lambda *a: [], _drop), "loss": (lambda *a: [], _loss),
    "forward-drop": (_forward_reads, _forward_drop), "mtu": (lambda s, t, p: _links(s, t, p), _mtu),
    "rate": (_qdisc_reads, _qdisc), "delay": (_qdisc_reads, _qdisc),
    **{k: (_sysctl_reads, _sysctl) for k in ("sysctl", *PRESETS)},
    "hairpin-off": (_hairpin_reads, _hairpin), "stop": (_proc_reads, _signal), "kill": (_proc_reads, _signal),
    "bgp-peer-as": (_bgp_reads, _bgp_peer_as),
}


def reads(state: ClusterState, kind: str, t: Target, p: dict) -> list[tuple]:
    return KIND_PLANS[kind][0](state, t, {**p, "kind": kind})


def plan(state: ClusterState, kind: str, t: Target, p: dict, observed: dict, fid: str) -> tuple[list, bool]:
    # the same checks as before the reads (a node that exists, the right network), and nothing unread
    missing: Optional[str] = next((ops.key(r) for r in reads(state, kind, t, p) if ops.key(r) not in observed), None)
    if missing:
        raise LabError(f"internal: plan needs {missing!r} observed first")
    return KIND_PLANS[kind][1](state, t, {**p, "kind": kind}, observed, fid)
