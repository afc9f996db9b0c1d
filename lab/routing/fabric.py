"""network: cloud-routes — the underlay itself routes pods, as a VPC route table does for AWS VPC CNI
or GKE routes: nodes have only a default route to the underlay gateway (.1); an OpenFlow 1.3
controller written on os-ken (the maintained fork of Ryu, which cannot start on Python >= 3.10)
programs the OVS underlay switch so that a packet for a podCIDR, sent to the gateway, is delivered
to the node that owns it.

Pure here: the route table and the flows it becomes. The controller process and its lifecycle are
in lab/routing/fabric_app.py and lab/routing/fabric_runtime.py."""
from __future__ import annotations

from dataclasses import dataclass

from lab.controlplane import ipam, naming
from lab.controlplane.state import ClusterState, NodeState
from lab.routing.kind import Backend, Crossing, Drawing, NextHop, WireHop
from lab.routing.ops import NetOps

GATEWAY_MAC = "0e:fa:b1:1c:00:01"  # the fabric's answer to "who has <underlay .1>?"


def render(state: ClusterState, node: NodeState) -> NetOps:
    """Nothing in the nodes: the fabric routes, nodes keep their default route."""
    return NetOps()


def next_hop(state: ClusterState, node: NodeState, peer: NodeState) -> NextHop:
    gw = str(ipam.underlay_gateway(state.underlay_subnet))
    return NextHop("eth0", gw, f"default via {gw} dev eth0: the fabric routes {peer.pod_cidr} to {peer.name}")


def crossing(state: ClusterState, a: NodeState, b: NodeState, src: str, dst: str) -> Crossing:
    gw = ipam.underlay_gateway(state.underlay_subnet)
    return Crossing((WireHop("fabric (OpenFlow)", "", state.switch_name,
                             f"to the gateway {gw}'s MAC; the controller's flow for {b.pod_cidr} rewrites it to "
                             f"{b.name}'s MAC"),), "eth0")


DRAWING = Drawing(
    switch=lambda state: ("fabric routes:", *(f"{n.pod_cidr} → {n.name}" for n in state.nodes)),
    eth0=lambda state, n: (f"default via {ipam.underlay_gateway(state.underlay_subnet)} (fabric)",),
    controller=("os-ken controller", "OpenFlow: podCIDR routes"), controller_link="OpenFlow 1.3",
)
BACKEND = Backend("cloud-routes", render, runtime="lab.routing.fabric_runtime", next_hop=next_hop, crossing=crossing,
                  drawing=DRAWING)


@dataclass(frozen=True)
class Route:
    cidr: str        # a node's podCIDR
    node: str
    mac: str         # the node's eth0
    port: str        # its port on the underlay switch


def routes(state: ClusterState, port_names: dict[str, str]) -> list[Route]:
    """The VPC route table: podCIDR -> the node (and switch port) that owns it."""
    return [Route(n.pod_cidr, n.name, naming.node_mac(n.ip), port_names[n.name]) for n in state.nodes]


@dataclass(frozen=True)
class Flow:
    priority: int
    match: tuple[tuple[str, object], ...]     # OpenFlow 1.3 OXM fields, as os-ken names them
    actions: tuple[tuple[str, ...], ...]  # ("output", port) | ("set_field", field, value) | ("controller",) | ("normal",)
    note: str = ""


def _mask(prefix: int) -> str:
    bits = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    return ".".join(str(bits >> shift & 0xFF) for shift in (24, 16, 8, 0))


def route_flow(gateway_mac: str, r: dict) -> Flow:
    """A packet for r's podCIDR sent to the gateway goes to r's node, re-addressed as a router would."""
    net, prefix = r["cidr"].split("/")
    return Flow(50, (("eth_type", 0x0800), ("eth_dst", gateway_mac), ("ipv4_dst", (net, _mask(int(prefix))))),
                (("set_field", "eth_src", gateway_mac), ("set_field", "eth_dst", r["mac"]), ("output", r["port"])),
                r["node"])


def base_flows(gateway_ip: str) -> list[Flow]:
    return [Flow(100, (("eth_type", 0x0806), ("arp_op", 1), ("arp_tpa", gateway_ip)), (("controller",),),
                 "the gateway's ARP replies"),
            Flow(0, (), (("normal",),), "everything else is switched")]


def flows(state: ClusterState, table: list[Route]) -> list[Flow]:
    """Everything the controller installs (what `lab get routes fabric` compares with the switch)."""
    return base_flows(str(ipam.underlay_gateway(state.underlay_subnet))) + [route_flow(GATEWAY_MAC, r.__dict__) for r in table]


def show(flow: Flow) -> str:
    match = ",".join(f"{k}={v[0]}/{v[1]}" if isinstance(v, tuple) else f"{k}={v}" for k, v in flow.match)
    actions = ",".join(":".join(str(x) for x in a) for a in flow.actions)
    return f"priority={flow.priority}{',' + match if match else ''} actions={actions}" + (f"  ({flow.note})" if flow.note else "")
