"""FRR in the lab's namespaces: one zebra, one bfdd and one bgpd per speaker, each with its own config, pid
files, zserv socket and vty directory under the lab's run directory (owned by the frr user; FRR
refuses to run as root), started through `ip netns exec`. Readiness is the kernel's: `lab up`
returns once every node has a route to every other node's podCIDR."""
from __future__ import annotations

import json
import time
from pathlib import Path

from lab.controlplane.state import ClusterState
from lab.errors import LabError
from lab.routing import bgp
from lab.routing.kind import Runtime
from lab import host
from lab.host import output, sysctl
from lab.host.record import LabRecord

DAEMONS = Path("/usr/lib/frr")
CONVERGE_TIMEOUT = 30.0


def directory(record: LabRecord, name: str) -> Path:
    return record.dir / "frr" / name


def start(state: ClusterState, record: LabRecord) -> None:
    if not (DAEMONS / "bgpd").exists():
        raise LabError("network: bgp needs FRR (Debian's frr package; sudo make demo installs it)")
    if state.top_of_rack:  # the rack's router forwards between the nodes
        sysctl(next(h.netns for h in state.hosts if h.name == state.top_of_rack),
               {"net.ipv4.ip_forward": "1", **({"net.ipv6.conf.all.forwarding": "1"} if 6 in state.families else {})})
    for name, _, netns in bgp.speakers(state):
        d = directory(record, name)
        host.write_file(d / "frr.conf", bgp.frr_conf(state, name))
        host.chown(d, "frr")
        host.chown(d / "frr.conf", "frr")
        common = ["-f", str(d / "frr.conf"), "-z", str(d / "zserv.api"), "--vty_socket", str(d), "-u", "frr", "-g", "frr"]
        for daemon, extra in (("zebra", []), ("bfdd", []), ("bgpd", ["-p", "179"])):
            done = host.run(["ip", "netns", "exec", netns, str(DAEMONS / daemon), "-d", "-i",
                             str(d / f"{daemon}.pid"), *common, *extra], check=False)
            if not done.ok:
                raise LabError(f"FRR {daemon} on {name} did not start: {(done.stderr or done.stdout).strip()}")


def check_config(state: ClusterState) -> None:
    """FRR's own dry run of every config before anything starts (bgpd --dryrun)."""
    for name, _, _ in bgp.speakers(state):
        conf = bgp.frr_conf(state, name)
        done = host.run([str(DAEMONS / "bgpd"), "--dryrun", "-f", "/dev/stdin", "-u", "frr", "-g", "frr"],
                        input=conf, check=False)
        if not done.ok:
            raise LabError(f"FRR rejects the config for {name}: {(done.stderr or done.stdout).strip()}")


def missing_routes(state: ClusterState) -> dict[str, list[str]]:
    """node -> the other nodes' podCIDRs its kernel has no route for."""
    out = {}
    for node in state.nodes:
        have = {r["dst"] for family in state.families
                for r in json.loads(output(["ip", f"-{family}", "-n", node.netns, "-j", "route"]) or "[]")
                if r.get("protocol") == "bgp"}
        want = {c for n in state.nodes if n.name != node.name for c in n.cidrs}
        if want - have:
            out[node.name] = sorted(want - have)
    return out


def wait_converged(state: ClusterState) -> float:
    t0 = time.monotonic()
    while True:
        missing = missing_routes(state)
        if not missing:
            return time.monotonic() - t0
        if time.monotonic() - t0 > CONVERGE_TIMEOUT:
            raise LabError("BGP did not converge within 30 s; still missing: " +
                           "; ".join(f"{n}: {', '.join(c)}" for n, c in missing.items()) +
                           " (`lab exec node/NAME -- vtysh -c 'show bgp summary'` shows the sessions)")
        time.sleep(0.05)


def bfd_all_up(state: ClusterState, record: LabRecord) -> bool:
    """Whether every speaker's BFD sessions are up: until then a dead peer is noticed only at the
    BGP hold time (BFD starts slowly, a second or two after the BGP sessions)."""
    for name, _, netns in bgp.speakers(state):
        out = output(["ip", "netns", "exec", netns, "vtysh", "--vty_socket", str(directory(record, name)),
                   "-c", "show bfd peers json"], check=False)
        try:
            peers = json.loads(out or "[]")
        except ValueError:
            return False
        if not peers or any(p.get("status") != "up" for p in peers):
            return False
    return True


def _start_checked(state: ClusterState, record: LabRecord) -> None:
    check_config(state)  # FRR's own dry run before anything starts
    start(state, record)


def command(record: LabRecord, name: str, argv: list) -> list:
    """vtysh on a BGP speaker speaks to that speaker's own FRR (its vty directory), not the machine's."""
    if argv[:1] == ["vtysh"] and name in {s for s, _, _ in bgp.speakers(record.state)}:
        return ["vtysh", "--vty_socket", str(directory(record, name)), *argv[1:]]
    return argv


def daemon_pid(record: LabRecord, name: str) -> int:
    """bgpd's PID on speaker `name`, from its pid file; 0 when it has none."""
    try:
        return int((directory(record, name) / "bgpd.pid").read_text())
    except (OSError, ValueError):
        return 0


RUNTIME = Runtime(_start_checked, wait_converged, "BGP converged: every node has a route to every podCIDR",
                  command=command, daemon_pid=daemon_pid)
