"""The cloud-routes fabric in a running lab: the OVS underlay handed to the lab's os-ken controller
(fail mode secure: flows stay when the controller is away, so a restart loses no route), the
controller process, and readiness: every route flow installed in the switch."""
from __future__ import annotations

import json
import socket
import sys
import time

from lab.controlplane import ipam
from lab.controlplane.state import ClusterState
from lab.errors import LabError
from lab.node import processes, underlay
from lab.routing import fabric
from lab.routing.kind import Runtime
from lab import host
from lab.host import output
from lab.host.record import LabRecord

APP = "lab.routing.fabric_app"
KEY = "fabric/controller"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_names(state: ClusterState, record: LabRecord) -> dict[str, str]:
    return {n.name: underlay.port_name(state, record.port_tag, i) for i, n in enumerate(state.nodes)}


def start(state: ClusterState, record: LabRecord) -> None:
    br = state.switch_name
    port = _free_port()
    config = {"port": port, "gateway_ip": str(ipam.underlay_gateway(state.underlay_subnet)), "gateway_mac": fabric.GATEWAY_MAC,
              "routes": [r.__dict__ for r in fabric.routes(state, port_names(state, record))]}
    path = record.subdir("fabric") / "controller.json"
    host.write_file(path, json.dumps(config, indent=1))
    _spawn(record, path)
    output(["ovs-vsctl", "set-fail-mode", br, "secure", "--", "set", "bridge", br, "protocols=OpenFlow13",
         "--", "set-controller", br, f"tcp:127.0.0.1:{port}"])


def _spawn(record: LabRecord, config) -> None:
    record.pids[KEY] = host.spawn([sys.executable, "-m", APP, str(config)],
                                  log=record.subdir("logs") / "fabric-controller.log").pid
    record.save()


def restart(record: LabRecord) -> None:
    """Stop the controller and start it again (the flows it installed stay in the switch)."""
    stop(record)
    _spawn(record, record.dir / "fabric" / "controller.json")


def stop(record: LabRecord) -> None:
    pid = record.pids.get(KEY)
    if not pid:
        return
    argv = host.cmdline(pid)
    if argv is None:
        return
    if APP.encode() in b"\0".join(argv):
        processes.signal_all([pid], 15)
        processes.reap({pid})


def dump(state: ClusterState) -> list[str]:
    out = output(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", state.switch_name])
    return [line.strip() for line in out.splitlines() if "priority=" in line]


def wait_ready(state: ClusterState, timeout: float = 20.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if sum("priority=50" in f for f in dump(state)) >= len(state.nodes):
            return time.monotonic() - t0
        time.sleep(0.05)
    raise LabError(f"the fabric controller installed no routes within {timeout:.0f}s; "
                   "see /run/k8s-netlab/<lab>/logs/fabric-controller.log")


def table(state: ClusterState, record: LabRecord) -> tuple[list[list[str]], list[str], list[str]]:
    """The routes the controller computes (a podCIDR -> the node's switch port), the flows it
    installs for them, and the flows the switch holds now."""
    routes = fabric.routes(state, port_names(state, record))
    return ([[r.cidr, r.node, r.mac, r.port] for r in routes], [fabric.show(f) for f in fabric.flows(state, routes)],
            dump(state))


RUNTIME = Runtime(start, wait_ready, "fabric: the controller installed a route per podCIDR", stop, fabric_table=table)
