"""The real underlay: Mininet builds the switches, machines and links of an UnderlayPlan; each
machine's namespace is then given its name in /run/netns and Mininet's shells are let go, so from
then on the lab drives them through those names (plain `ip netns exec` works)."""
from __future__ import annotations

import importlib.util
import sys
import sysconfig
import warnings
from pathlib import Path
from typing import Callable, Sequence


def _import_mininet() -> None:
    """mininet.node imports distutils.version for one OVS version compare. Under setuptools'
    distutils shim (any venv) that import drags in pkg_resources: ~0.1 s of every `lab up`.
    Python 3.11 still ships the stdlib distutils: load that one when it is there."""
    if "distutils" in sys.modules or sys.version_info >= (3, 12):
        return
    init = Path(sysconfig.get_paths()["stdlib"]) / "distutils" / "__init__.py"
    if not init.exists():
        return
    spec = importlib.util.spec_from_file_location("distutils", init, submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["distutils"] = module
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        spec.loader.exec_module(module)


def build(plan, ip_batch: Callable[[Sequence[str]], None]) -> None:
    """plan: the UnderlayPlan of lab.host; ip_batch: the Host's, to name each machine's namespace
    (given, not imported: the Host imports this module)."""
    _import_mininet()
    from mininet.log import setLogLevel
    from mininet.net import Mininet
    from mininet.node import OVSBridge
    from mininet.nodelib import LinuxBridge

    setLogLevel("error")
    net = Mininet(build=False, controller=None, autoSetMacs=False)
    switches = {s.name: net.addSwitch(s.name, cls=LinuxBridge, dpid=s.dpid) if s.kind == "linux-bridge" else
                net.addSwitch(s.name, cls=OVSBridge, dpid=s.dpid, datapath="user", failMode="standalone")
                for s in plan.switches}
    hosts = {m.netns: net.addHost(m.netns, ip=m.ip) for m in plan.machines}
    for w in plan.wires:
        net.addLink(hosts[w.machine], switches[w.switch], intfName1=w.ifname, intfName2=w.port, addr1=w.mac)
    try:
        net.build()
        for switch in switches.values():
            switch.start([])
        ip_batch([f"netns attach {netns} {h.pid}" for netns, h in hosts.items()])
    finally:
        # The namespaces now have names; Mininet's shells are no longer needed.
        for node in [*hosts.values(), *switches.values()]:
            node.terminate()
