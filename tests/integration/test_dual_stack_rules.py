"""The IPv6 proxier's texts against the real tools and kernel, in a throw-away network namespace:
ip6tables-restore loads the iptables mode's IPv6 rules beside the IPv4 ones, nft loads table ip6
kube-proxy beside ip kube-proxy, and each family's ip-masq-agent rules load. What the kernel hands
back holds the IPv6 ClusterIPs in the ip6 tables and none of them in the IPv4 ones."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from lab.kube_proxy import iptables, nftables
from tests.unit.test_dual_stack_proxy import dual

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates a network namespace and loads rules"),
    pytest.mark.skipif(shutil.which("nft") is None or shutil.which("ip6tables-restore") is None,
                       reason="needs nft and ip6tables-restore (Debian packages nftables, iptables)"),
    pytest.mark.root,
]


def run(ns: str, *argv: str, text: str = "") -> str:
    proc = subprocess.run(["ip", "netns", "exec", ns, *argv], input=text, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr}"
    return proc.stdout


def test_iptables_mode_loads_one_restore_per_family(netns):
    state, slices = dual()
    for family, (restore, save) in {"IPv4": ("iptables-restore", "iptables-save"),
                                    "IPv6": ("ip6tables-restore", "ip6tables-save")}.items():
        run(netns, restore, "--noflush", text=iptables.base_rules() + iptables.masq_agent_rules(state, family))
        run(netns, restore, "--noflush", text=iptables.render(state, "n1", slices, family=family))
    v4, v6 = run(netns, "iptables-save", "-t", "nat"), run(netns, "ip6tables-save", "-t", "nat")
    assert "-d fd00:10:96::101/128" in v6 and "DNAT --to-destination [fd00:10:244::2]:8080" in v6
    assert "fd00" not in v4 and "-d 10.96.0.100/32" in v4
    assert "icmp6-port-unreachable" in run(netns, "ip6tables-save", "-t", "filter")


def test_nftables_mode_has_an_ip6_table_beside_the_ip_table(netns):
    state, slices = dual("nftables")
    for family in ("IPv4", "IPv6"):
        for script in (nftables.masq_agent_rules(state, family), nftables.render(state, "n1", slices, family=family)):
            run(netns, "nft", "-c", "-f", "-", text=script)
            run(netns, "nft", "-f", "-", text=script)
    tables = run(netns, "nft", "list", "tables")
    assert "table ip kube-proxy" in tables and "table ip6 kube-proxy" in tables
    assert "table ip6 ip-masq-agent" in tables
    v6 = run(netns, "nft", "list", "map", "ip6", "kube-proxy", "service-ips")
    assert "fd00:10:96::101 . tcp . 80" in v6
    assert "fd00" not in run(netns, "nft", "list", "map", "ip", "kube-proxy", "service-ips")
