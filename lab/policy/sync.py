"""Applying NetworkPolicy on every node: the rendered rules (lab.policy.iptables, pure) go in with
one `iptables-restore --noflush` per node, in parallel. Every policy change rewrites the policy
chains of every node: the rule set is small (a chain per isolated pod), so a full rewrite is fast
and the result never depends on what an earlier sync did."""
from __future__ import annotations


from lab.controlplane.controller import Controller, Diff
from lab.controlplane.state import ClusterState, NodeState
from lab.policy import iptables as rules
from lab import host
from lab.host.record import LabRecord

NAME = "policy"


RESTORE = {4: "iptables-restore", 6: "ip6tables-restore"}
CHAINS = {4: "chains", 6: "chains6"}  # the record's keys: node -> the policy chains last written, per family


def _restore(node: NodeState, text: str, family: int = 4) -> None:
    host.restore(node.netns, [RESTORE[family], "--noflush"], text,
                 f"network policy rules on node {node.name}" + (" (IPv6)" if family == 6 else ""))


def setup(state: ClusterState) -> None:
    """Once per node at `lab up`: the policy chain, first in FORWARD (bridged traffic between pods
    of one node passes there too: br_netfilter is on in every node's namespace), in each of the
    cluster's families (ip6tables for IPv6: every rule is enforced per family)."""
    with host.pool(len(state.nodes)) as pool:
        list(pool.map(lambda n: [_restore(n, rules.base_rules(), f) for f in state.families], state.nodes))


def sync(record: LabRecord, state: ClusterState) -> None:
    """Every node's policy chains as `state` wants them; the caller saves the record."""
    section = record.section(NAME)

    def one(node: NodeState) -> tuple[str, dict[int, list[str]]]:
        written = {}
        for family in state.families:
            existing = frozenset(section.get(CHAINS[family], {}).get(node.name, ()))
            text = rules.render(state, node, existing, family)
            _restore(node, text, family)
            written[family] = sorted(rules.declared_chains(text))
        return node.name, written

    done, error = host.on_each(state.nodes, one)
    for name, written in done:  # what the other nodes now hold, even when one refused
        for family, chains in written.items():
            section.setdefault(CHAINS[family], {})[name] = chains
    if error:
        raise error


def _sync(record: LabRecord, diff: Diff) -> list[str]:
    """The policies read no endpoints: only new objects (or a first sync) are written; returns the
    nodes whose policy chains were."""
    if not diff.objects_changed:
        return []
    sync(record, diff.new)
    return [n.name for n in diff.new.nodes]


CONTROLLER = Controller(NAME, setup=setup, sync=_sync)
