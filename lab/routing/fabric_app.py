"""The cloud-routes controller: an os-ken OpenFlow 1.3 application, run as its own process
(`python -m lab.routing.fabric_app CONFIG`). CONFIG (JSON, written by the lab): the OpenFlow port
to listen on, the gateway's IP and MAC, and the route table (podCIDR -> node MAC and switch port
name). On every (re)connection of the switch it installs the same flows (adding a flow that exists
changes nothing), so a controller restart loses no route; it answers ARP for the gateway itself.

os-ken 4.x has no `osken-manager` command: the app manager is driven directly, as below."""
from __future__ import annotations

import json
import sys

from os_ken.base import app_manager  # must be imported before cfg (os-ken 4.x)
from os_ken import cfg
from os_ken.controller import ofp_event
from os_ken.controller.handler import CONFIG_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.lib.packet import arp, ethernet, packet
from os_ken.ofproto import ofproto_v1_3

from lab.routing import fabric

CONFIG: dict = {}


class Fabric(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.numbers: dict[str, int] = {}  # switch port name -> OpenFlow port number

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def on_connect(self, ev):
        dp = ev.msg.datapath
        dp.send_msg(dp.ofproto_parser.OFPPortDescStatsRequest(dp, 0))

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, MAIN_DISPATCHER)
    def on_ports(self, ev):
        dp = ev.msg.datapath
        self.numbers = {p.name.decode(): p.port_no for p in ev.msg.body}
        for flow in fabric.base_flows(CONFIG["gateway_ip"]):
            self._install(dp, flow)
        up = {p.port_no for p in ev.msg.body if not p.state & dp.ofproto.OFPPS_LINK_DOWN}
        routes = [r for r in CONFIG["routes"] if self.numbers.get(r["port"]) in up]
        for r in routes:
            self._install(dp, fabric.route_flow(CONFIG["gateway_mac"], r))
        self.logger.info("installed %d routes", len(routes))

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def on_port_status(self, ev):
        """A node leaving (its link goes down) takes its route out of the table, as a cloud
        deletes a dead instance's route; coming back puts it in again."""
        dp, port = ev.msg.datapath, ev.msg.desc
        for r in CONFIG["routes"]:
            if r["port"] == port.name.decode():
                up = not port.state & dp.ofproto.OFPPS_LINK_DOWN
                self._install(dp, fabric.route_flow(CONFIG["gateway_mac"], r), delete=not up)
                self.logger.info("%s route %s -> %s", "added" if up else "removed", r["cidr"], r["node"])

    def _install(self, dp, flow, delete: bool = False):
        """A pure fabric.Flow as an OpenFlow 1.3 FlowMod."""
        ofp, parser = dp.ofproto, dp.ofproto_parser
        actions = []
        for kind, *args in flow.actions:
            if kind == "output":
                actions.append(parser.OFPActionOutput(self.numbers[args[0]]))
            elif kind == "set_field":
                actions.append(parser.OFPActionSetField(**{args[0]: args[1]}))
            elif kind == "controller":
                actions.append(parser.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER))
            elif kind == "normal":
                actions.append(parser.OFPActionOutput(ofp.OFPP_NORMAL))
        inst = [] if delete else [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)]
        dp.send_msg(parser.OFPFlowMod(datapath=dp, priority=flow.priority, match=parser.OFPMatch(**dict(flow.match)),
                                      instructions=inst, command=ofp.OFPFC_DELETE_STRICT if delete else ofp.OFPFC_ADD,
                                      out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY))

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def on_packet(self, ev):
        msg = ev.msg
        dp = msg.datapath
        ofp, parser = dp.ofproto, dp.ofproto_parser
        pkt = packet.Packet(msg.data)
        req = pkt.get_protocol(arp.arp)
        if req is None or req.opcode != arp.ARP_REQUEST or req.dst_ip != CONFIG["gateway_ip"]:
            return
        reply = packet.Packet()
        reply.add_protocol(ethernet.ethernet(ethertype=0x0806, dst=req.src_mac, src=CONFIG["gateway_mac"]))
        reply.add_protocol(arp.arp(opcode=arp.ARP_REPLY, src_mac=CONFIG["gateway_mac"], src_ip=CONFIG["gateway_ip"],
                                   dst_mac=req.src_mac, dst_ip=req.src_ip))
        reply.serialize()
        dp.send_msg(parser.OFPPacketOut(datapath=dp, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER,
                                        actions=[parser.OFPActionOutput(msg.match["in_port"])], data=reply.data))


def main(argv: list[str]) -> int:
    CONFIG.update(json.load(open(argv[0])))
    cfg.CONF(args=["--ofp-listen-host", "127.0.0.1", "--ofp-tcp-listen-port", str(CONFIG["port"])], project="os_ken")
    app_manager.AppManager.run_apps([__name__])  # this module: its CONFIG is the one just read
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
