"""LoadBalancer failover (MetalLB L2 style): after `lab node stop` of the node answering ARP for an
LB address, the time until a plain host's `curl` to that address answers again (a new TCP
connection every 50 ms, 0.3 s connect timeout). The agent looks every agent.TICK seconds, so
about half a tick of it is waiting. Beside it, the raw baseline in the same run: the same move
done by hand (proxy entry and route on another node, one gratuitous ARP from there), timed to the
first answer. The lab is the benchmark's own (lbbench: topologies/loadbalancer.yaml renamed).

    sudo .venv/bin/python bench/loadbalancer.py [--rounds N]
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
import time

from common import LAB, ROOT, OwnLab, median, renamed, table

from lab.host import in_ns, record
from lab.host import netns as namespaces
from lab.loadbalancer import speaker as l2
from lab.runtime import agent

ADDRESS = "172.18.0.240"   # Service web, externalTrafficPolicy Cluster


def answers(netns: str) -> bool:
    return subprocess.run(["ip", "netns", "exec", netns, "curl", "-s", "-o", "/dev/null", "--connect-timeout", "0.3",
                           "-m", "1", f"http://{ADDRESS}/hostname"], capture_output=True).returncode == 0


def until_answer(netns: str, limit: float = 15.0) -> float:
    t0 = time.perf_counter()
    while not answers(netns):
        if time.perf_counter() - t0 > limit:
            raise SystemExit(f"{ADDRESS} did not answer within {limit} s")
        time.sleep(0.05)
    return time.perf_counter() - t0


def speaker(lab: str) -> str:
    return l2.speaking(record.load(lab))[ADDRESS]


def failover(lab: str, client: str) -> float:
    node = speaker(lab)
    t0 = time.perf_counter()
    subprocess.run([*LAB, "node", "stop", node, "--lab", lab], check=True, capture_output=True)
    while answers(client) and time.perf_counter() - t0 < 5:   # the old path dies with the link
        time.sleep(0.02)
    took = time.perf_counter() - t0 + until_answer(client)
    subprocess.run([*LAB, "node", "start", node, "--lab", lab], check=True, capture_output=True)
    while speaker(lab) != node:   # the address goes back to its elected node
        time.sleep(0.05)
    until_answer(client)
    return took


def by_hand(lab: str, client: str) -> float:
    """The raw move: take the address from its speaker, give it to another node, one GARP."""
    rec = record.load(lab)
    old = rec.state.node(l2.speaking(rec)[ADDRESS])
    new = next(n for n in rec.state.nodes if n.name != old.name)
    t0 = time.perf_counter()
    subprocess.run(["ip", "-n", old.netns, "-force", "-batch", "-"], input=f"neigh del proxy {ADDRESS} dev eth0\n"
                   f"route del {ADDRESS}/32 dev lo\n", text=True, capture_output=True)
    subprocess.run(["ip", "-n", new.netns, "-batch", "-"], input=f"route replace {ADDRESS}/32 dev lo\n"
                   f"neigh replace proxy {ADDRESS} dev eth0\n", text=True, check=True)
    subprocess.run(["ip", "netns", "exec", new.netns, "sysctl", "-qw", "net.ipv4.neigh.eth0.proxy_delay=0"], check=True)
    in_ns(new.netns, lambda: namespaces.gratuitous_arp(ADDRESS, l2.DEV))
    took = time.perf_counter() - t0 + until_answer(client)
    for node, line in ((new, f"neigh del proxy {ADDRESS} dev eth0\nroute del {ADDRESS}/32 dev lo\n"),
                       (old, f"route replace {ADDRESS}/32 dev lo\nneigh replace proxy {ADDRESS} dev eth0\n")):
        subprocess.run(["ip", "-n", node.netns, "-force", "-batch", "-"], input=line, text=True, capture_output=True)
    in_ns(old.netns, lambda: namespaces.gratuitous_arp(ADDRESS, l2.DEV))
    until_answer(client)
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = renamed(str(ROOT / "topologies" / "loadbalancer.yaml"), "lbbench", folder)
        with OwnLab(path) as lab:
            client = record.load(lab.name).state.hosts[0].netns
            until_answer(client)
            hand = [by_hand(lab.name, client) for _ in range(args.rounds)]
            stop = [failover(lab.name, client) for _ in range(args.rounds)]
    print(table([("failover after `lab node stop` (curl answers again)", median(stop), "a few s"),
                 ("the same move by hand: proxy entry + route + one GARP", median(hand), "-")]))
    print(f"agent step period {agent.TICK} s; {args.rounds} rounds; all failovers: "
          + ", ".join(f"{x:.2f}" for x in stop) + "; by hand: " + ", ".join(f"{x:.3f}" for x in hand))


if __name__ == "__main__":
    main()
