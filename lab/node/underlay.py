"""The underlay: nodes and plain hosts are Mininet hosts on one switch (a Linux bridge, or OVS
with the userspace datapath). Planned here (underlay_plan: pure), built by the Host (Mininet,
lab.host.mininet); each gets a name in /run/netns so plain `ip netns exec` works, and from then on
the lab drives them through those names. A topology with a
public segment has a second switch (a Linux bridge) for it: its hosts, and the NAT gateway's eth1."""
from __future__ import annotations

import ipaddress
import json
import secrets
import shutil
import time

from lab.controlplane import ipam, naming
from lab.controlplane.state import ClusterState
from lab.errors import LabError
from lab.host import (Machine, Switch, UnderlayPlan, Wire, build_underlay, ip_batch, make_uts, netns_path, output,
                      path_exists, restore, sysctl)
from lab.host.record import LabRecord

OVS_CTL = "/usr/share/openvswitch/scripts/ovs-ctl"


def machines(state: ClusterState):
    """Nodes then the underlay's hosts: the order their switch ports are given in."""
    return [*state.nodes, *state.underlay_hosts()]


def public_machines(state: ClusterState):
    """On the public segment: the NAT gateway (its eth1) and the public hosts (their eth0)."""
    return [h for h in state.hosts if h.public_ip or h.network == "public"]


def port_name(state: ClusterState, tag: str, index: int) -> str:
    """A switch port in the root namespace. The per-run tag keeps a quick `lab up` after `lab down`
    clear of the last run's ports, which the kernel frees only when it has cleaned up the deleted
    node namespaces (deleting them synchronously costs a third of `lab down`)."""
    return f"{state.switch_name}{tag}p{index}"


def public_port_name(state: ClusterState, tag: str, index: int) -> str:
    return f"{naming.public_switch_name(state.lab)}{tag}p{index}"


def _ovs_running() -> bool:
    return shutil.which("ovs-vsctl") is not None and output(["ovs-vsctl", "--timeout=2", "show"], check=False) != ""


def _check_switch(state: ClusterState) -> None:
    if state.switch == "ovs" and not _ovs_running():
        raise LabError("underlay switch ovs needs Open vSwitch running: "
                       f"`sudo {OVS_CTL} start` (the userspace datapath is used; no kernel module needed)")


def underlay_plan(state: ClusterState, tag: str) -> UnderlayPlan:
    """Pure: the switches, machines and wires of this run (tag: its part of the port names)."""
    ms = machines(state)
    public = naming.public_switch_name(state.lab) if state.public_subnet else None
    prefix = state.underlay_subnet.split("/")[1]
    switches = [Switch(state.switch_name, naming.dpid(state.switch_name), state.switch)]
    hosts = [Machine(m.netns, f"{m.ip}/{prefix}") for m in ms]
    wires = [Wire(m.netns, state.switch_name, "eth0", port_name(state, tag, i), naming.node_mac(m.ip))
             for i, m in enumerate(ms)]
    if public:
        switches.append(Switch(public, naming.dpid(public), "linux-bridge"))
        for i, m in enumerate(public_machines(state)):
            address = m.public_ip or m.ip
            if m.netns not in {h.netns for h in hosts}:
                hosts.append(Machine(m.netns, f"{address}/{state.public_subnet.split('/')[1]}"))
            wires.append(Wire(m.netns, public, "eth1" if m.public_ip else "eth0", public_port_name(state, tag, i),
                              naming.node_mac(address)))
    return UnderlayPlan(tuple(switches), tuple(hosts), tuple(wires))


def build(state: ClusterState, record: LabRecord) -> None:
    _check_switch(state)
    ms = machines(state)
    outside = [h for h in public_machines(state) if h.network == "public"]
    public = naming.public_switch_name(state.lab) if state.public_subnet else None
    record.port_tag = secrets.token_hex(1)
    record.claim(
        netns=tuple(m.netns for m in [*ms, *outside]),
        links=(state.switch_name,) * (state.switch == "linux-bridge") + ((public,) if public else ()),
        ovs=(state.switch_name,) if state.switch == "ovs" else (),
        shells=(state.switch_name, *(m.netns for m in [*ms, *outside]), *((public,) if public else ())),
    )
    build_underlay(underlay_plan(state, record.port_tag))
    _verify(state, record.port_tag)
    for m in [*ms, *outside]:  # `hostname` on a node (and in its hostNetwork pods) prints the node's name
        make_uts(record.uts_path(m.netns), m.name)


def _verify(state: ClusterState, tag: str) -> None:
    """Mininet does not check its commands' exit status: check the result instead."""
    if state.switch == "linux-bridge":
        ports = {l["ifname"] for l in json.loads(output(["ip", "-j", "link", "show", "master", state.switch_name]) or "[]")}
    else:
        ports = set(output(["ovs-vsctl", "list-ports", state.switch_name]).split())
    want = {port_name(state, tag, i) for i in range(len(machines(state)))}
    if state.public_subnet:
        public = naming.public_switch_name(state.lab)
        ports |= {l["ifname"] for l in json.loads(output(["ip", "-j", "link", "show", "master", public]) or "[]")}
        want |= {public_port_name(state, tag, i) for i in range(len(public_machines(state)))}
    if want - ports:
        raise LabError(f"underlay switch {state.switch_name} is missing ports {sorted(want - ports)}")


def configure(state: ClusterState) -> None:
    """Per-node kernel settings: MTU on the underlay, forwarding on (a fresh namespace has it off),
    and a default route, as every real node has one: traffic to a ClusterIP needs a route before
    kube-proxy's rules rewrite it (or reject it, for a Service without endpoints)."""
    ipv6 = 6 in state.families
    for m in machines(state):
        if ipv6:  # before any address or link of the lab's: what comes later (cni0, veths) inherits "default"
            sysctl(m.netns, ipv6_sysctls(m in state.nodes))
        lines = [f"link set eth0 mtu {state.underlay_mtu}"]
        if ipv6:
            # eth0 was up before accept_dad=0: its link-local is tentative for ~2 s, and until then
            # no neighbour solicitation leaves (the first cross-node IPv6 packets wait): renew it
            lines += ["addr flush dev eth0 scope link",
                      f"addr add {ipam.link_local(naming.node_mac(m.ip))}/64 dev eth0 nodad",
                      f"addr add {m.ip6}/{ipv6_prefix(state)} dev eth0 nodad"]
        if m in state.nodes:
            lines.append(f"route replace default via {ipam.underlay_gateway(state.underlay_subnet)} dev eth0")
            if ipv6:
                lines.append(f"route replace default via {ipv6_gateway(state)} dev eth0")
        ip_batch(lines, netns=m.netns)
        if state.switch == "ovs":
            # docs/PITFALLS.md: with the userspace datapath TCP/UDP/VXLAN are dropped until tx offload is off.
            output(["nsenter", f"--net={netns_path(m.netns)}", "--", "ethtool", "-K", "eth0", "tx", "off"])
    for n in state.nodes:
        sysctl(n.netns, {"net.ipv4.ip_forward": "1"})
    gateway = state.nat_gateway()
    if gateway is not None:
        _nat_gateway(state, gateway)
    for h in public_machines(state):
        if h.network == "public":
            ip_batch([f"link set eth0 mtu {state.underlay_mtu}"], netns=h.netns)


def ipv6_sysctls(node: bool) -> dict[str, str]:
    """No duplicate address detection in the lab's namespaces (the addresses are planned unique):
    with it, every IPv6 address the lab or a CNI plugin adds stays tentative ~2 s and early probes
    fail falsely. Nodes forward IPv6 as they forward IPv4. Set in each of the lab's own
    namespaces, so they go with them at `lab down`: nothing of the host's to restore. An address
    survives its link going down, as an IPv4 one does."""
    out = {"net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0",
           "net.ipv6.conf.eth0.accept_dad": "0", "net.ipv6.conf.all.disable_ipv6": "0",
           # `lab node stop` and the link-down fault set eth0 down: IPv6 addresses would go with it
           "net.ipv6.conf.all.keep_addr_on_down": "1"}
    return {**out, "net.ipv6.conf.all.forwarding": "1"} if node else out


def ipv6_prefix(state: ClusterState) -> int:
    return ipaddress.ip_network(state.underlay_subnet6).prefixlen


def ipv6_gateway(state: ClusterState) -> str:
    """The IPv6 underlay's first address, as the IPv4 one's: the nodes' default route (a ClusterIP
    needs a route before kube-proxy rewrites it), answered by nothing."""
    return str(ipaddress.ip_network(state.underlay_subnet6).network_address + 1)


def _nat_gateway(state: ClusterState, gateway) -> None:
    """AWS's NAT gateway: the underlay's first address (every node's default route), its public
    address on eth1, forwarding on, and what leaves by eth1 SNATed to the public address, so the
    internet sees that one address and cannot open connections inward."""
    prefix = state.public_subnet.split("/")[1]
    ip_batch([f"link set eth1 mtu {state.underlay_mtu}", f"addr replace {gateway.public_ip}/{prefix} dev eth1",
              "link set eth1 up"], netns=gateway.netns)
    sysctl(gateway.netns, {"net.ipv4.ip_forward": "1"})
    restore(gateway.netns, ["iptables-restore", "--noflush"],
            f"*nat\n-A POSTROUTING -o eth1 -j SNAT --to-source {gateway.public_ip}\nCOMMIT\n", "the NAT gateway's SNAT")


def owned_links(record: LabRecord) -> list[str]:
    """The root-namespace links this lab made: its switch and the switch ports of this run."""
    if not record.port_tag:
        return list(record.links)
    ports = [port_name(record.state, record.port_tag, i) for i in range(len(machines(record.state)))]
    if record.state.public_subnet:
        ports += [public_port_name(record.state, record.port_tag, i) for i in range(len(public_machines(record.state)))]
    return list(record.links) + ports


def wait_links_gone(record: LabRecord, timeout: float = 3.0) -> list[str]:
    """The kernel frees a deleted namespace's veth peers asynchronously (~0.05-0.1 s later): wait
    for this lab's own links to be gone, so `lab down` returns with the host as it was. Returns
    those still present at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        left = [link for link in owned_links(record) if path_exists(f"/sys/class/net/{link}")]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.005)


def destroy_switch(record: LabRecord) -> None:
    """The switch and its ports, deleted now: left to go with the node namespaces, the kernel frees
    the ports only once it has cleaned up every namespace deleted with them (~0.14 s for 34).
    Teardown runs this beside stopping the processes, so it costs little time of its own."""
    for br in record.ovs_bridges:
        if shutil.which("ovs-vsctl"):
            output(["ovs-vsctl", "--timeout=5", "--if-exists", "del-br", br], check=False)
    present = [link for link in owned_links(record) if path_exists(f"/sys/class/net/{link}")]
    try:
        ip_batch([f"link del {link}" for link in present], force=True)
    except LabError:
        if any(path_exists(f"/sys/class/net/{link}") for link in present):
            raise  # else a port went with its node namespace, deleted meanwhile: all gone, as wanted


NODES = "nodes"  # the record's section of `lab node stop|start` (lab.runtime.nodes)


def stopped(record: LabRecord) -> list[str]:
    """The nodes taken off the network by `lab node stop`."""
    return list(record.sections.get(NODES, {}).get("stopped", []))


def set_stopped(record: LabRecord, names: list[str]) -> None:
    """Only `lab node stop|start` writes it (the caller saves)."""
    record.section(NODES)["stopped"] = list(names)
