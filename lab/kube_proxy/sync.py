"""kube-proxy's loop, run when something changes: recompute EndpointSlices, render each node's
rules (pure) and apply them with one restore per node, writing only what changed. The loop is the
same for every mode; what differs is the mode's Proxier (lab.kube_proxy.proxiers) and its runtime.

iptables mode: one `iptables-restore --noflush` per node; after the first full sync only what the
changed Services need is written — their rules in the shared chains deleted and inserted, their own
chains rewritten, chains they no longer need deleted — so the cost follows the change, as with
kube-proxy's partial sync. nftables mode: one `nft -f -` transaction per node; the first creates
the table, later ones add and remove just the changed elements and chains. A sync in which no
Service changed runs nothing; a partial sync the node refuses (its rules were changed behind the
lab's back) is followed by a full one.
"""
from __future__ import annotations

import sys
import threading
from typing import Mapping, Optional

from lab.controlplane.controller import Controller
from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane.state import ClusterState, NodeState
from lab.errors import LabError
from lab.kube_proxy import model, proxiers, runtimes
from lab import host
from lab.host import sysctl
from lab.host.record import LabRecord

NAME = "kube-proxy"  # its section of the record: chains (node -> chains last written), full_resyncs


def _restore(node: NodeState, argv: tuple[str, ...], text: str) -> None:
    host.restore(node.netns, list(argv), text, f"kube-proxy's rules on node {node.name}")


def _chain_key(node: NodeState, family: str) -> str:
    """Where the record keeps a node's service chains of one family (IPv4 under the node's name, as before)."""
    return node.name if family == "IPv4" else f"{node.name}/{family}"


def setup(state: ClusterState) -> None:
    """Once per node at `lab up`: what kube-proxy and ip-masq-agent set up before their first sync,
    for each of the cluster's families."""
    proxier = proxiers.of(state)

    def one(node: NodeState) -> None:
        if proxier.sysctls:
            sysctl(node.netns, dict(proxier.sysctls))
        for family in state.service_families():
            text = proxier.setup_rules(state, family)
            if text.strip():
                _restore(node, proxier.restore_for(family), text)

    with host.pool(len(state.nodes)) as pool:
        list(pool.map(one, state.nodes))


def changed_services(old: ClusterState, old_slices, new: ClusterState, new_slices) -> set[str]:
    """Services whose spec or endpoints differ between two syncs (added and removed ones too)."""
    def index(state, slices):
        by = {s.key: [s] for s in state.services}
        for sl in slices:
            by.setdefault(f"{sl.namespace}/{sl.service}", []).append(sl)
        return by
    a, b = index(old, old_slices), index(new, new_slices)
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


def sync(record: LabRecord, state: ClusterState, pod_ready: Mapping[str, bool], *, first: bool = False) -> set[str]:
    """Bring every node's rules from the record's state and readiness to `state` with `pod_ready`;
    returns the Services touched. Writes only its own section of the record (the chains per node);
    the caller holds `locked(record)`, commits the new state once everything is applied, and saves."""
    old_state, new_slices = record.state, endpoint_slices(state, pod_ready)
    old_slices = endpoint_slices(old_state, record.pod_ready)
    changed = {s.key for s in state.services} if first else changed_services(old_state, old_slices, state, new_slices)
    if not changed and not first:
        return changed

    counting = threading.Lock()
    mine = record.section(NAME)
    chains = mine.setdefault("chains", {})  # node -> the service chains last written (iptables mode)
    proxier, runtime = proxiers.of(state), runtimes.of(state)

    def start_over(node: NodeState, refused: LabError) -> None:
        """A partial sync the node refused: its rules were not what the last sync left. Say so
        (a renderer bug would hide here), count it, and write everything."""
        print(f"kube-proxy: partial sync refused on node {node.name}, doing a full sync: {refused}", file=sys.stderr)
        with counting:
            mine["full_resyncs"] = mine.get("full_resyncs", 0) + 1

    def family_sync(node: NodeState, family: str) -> list[str]:
        """One proxier's sync: the family's text, through the family's restore command."""
        existing, argv = frozenset(chains.get(_chain_key(node, family), ())), proxier.restore_for(family)
        full = lambda: proxier.render(state, node, new_slices, existing, family)  # noqa: E731
        text = full() if first else proxier.render_update(old_state, state, node, old_slices, new_slices, changed, family)
        if text.strip():  # a partial sync with nothing to write runs nothing
            try:
                _restore(node, argv, text)
            except LabError as e:
                if first:
                    raise
                start_over(node, e)
                text = full()
                _restore(node, argv, text)
        return sorted(proxier.chains(text, existing))

    def one(node: NodeState) -> list[tuple[str, list[str]]]:
        written = [(_chain_key(node, f), family_sync(node, f)) for f in state.service_families()]
        if runtime:  # proxy ebpf: ClusterIPs are map entries of the node's socket LB
            runtime.update(record, node, old_state, state, old_slices, new_slices, changed, first)
        return written

    done, error = host.on_each(state.nodes, one)
    for node_chains in done:  # what the other nodes now hold, even when one refused
        for key, written in node_chains:
            chains[key] = written
    if error:
        raise error
    stale = model.stale_udp(old_state, old_slices, state, new_slices, first)
    if stale:
        _, error = host.on_each(state.nodes, lambda node: forget_udp(node, stale))
        if error:
            raise error
    return changed


def forget_udp(node: NodeState, stale: list[tuple[str, Optional[int]]]) -> None:
    """conntrack -D for each stale UDP service address (and its nodePort) in the node, as
    kube-proxy's conntrack cleanup does; "0 flow entries" (exit 1) is no failure."""
    for cluster_ip, node_port in stale:
        family = ["-f", "ipv6"] if ":" in cluster_ip else []
        asks = [["--orig-dst", cluster_ip]] + ([["--orig-port-dst", str(node_port)]] if node_port else [])
        for ask in asks:
            done = host.run(["conntrack", "-D", *family, "-p", "udp", *ask], netns=node.netns, check=False)
            if done.code not in (0, 1) or (done.code == 1 and "flow entries" not in done.stderr + done.stdout):
                raise LabError(f"conntrack -D on node {node.name} failed: {(done.stderr or done.stdout).strip()}")


def _preflight(state: ClusterState, deep: bool) -> Optional[str]:
    """Can this machine run the mode's runtime (proxy ebpf: its tools, and with deep, compile and
    load the socket LB's programs)? LabError if not; None for a mode that is rules only."""
    runtime = runtimes.of(state)
    return runtime.preflight(state, deep) if runtime else None


def _start(state: ClusterState, record: LabRecord) -> None:
    """The mode's runtime (proxy ebpf: the nodes' cgroups and programs), before any process of a node starts."""
    runtime = runtimes.of(state)
    if runtime:
        runtime.start(state, record)


CONTROLLER = Controller(
    NAME, preflight=_preflight, start=_start, setup=setup,
    sync=lambda record, diff: sync(record, diff.new, diff.new_ready, first=diff.first))
