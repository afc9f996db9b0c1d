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


def _restore(node: NodeState, text: str) -> None:
    host.restore(node.netns, ["iptables-restore", "--noflush"], text, f"network policy rules on node {node.name}")


def setup(state: ClusterState) -> None:
    """Once per node at `lab up`: the policy chain, first in FORWARD (bridged traffic between pods
    of one node passes there too: br_netfilter is on in every node's namespace)."""
    with host.pool(len(state.nodes)) as pool:
        list(pool.map(lambda n: _restore(n, rules.base_rules()), state.nodes))


def sync(record: LabRecord, state: ClusterState) -> None:
    """Every node's policy chains as `state` wants them; the caller saves the record."""
    chains = record.section(NAME).setdefault("chains", {})  # node -> the policy chains last written

    def one(node: NodeState) -> tuple[str, list[str]]:
        existing = frozenset(chains.get(node.name, ()))
        text = rules.render(state, node, existing)
        _restore(node, text)
        return node.name, sorted(rules.declared_chains(text))

    done, error = host.on_each(state.nodes, one)
    for name, written in done:  # what the other nodes now hold, even when one refused
        chains[name] = written
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
