"""A proxy mode's runtime, found through its kind: the Proxier names the module (ebpf_sync for
proxy ebpf) and that module's RUNTIME holds the effects beyond the restore command. The kinds are
pure and sit in a layer below the modules that run things; this module sits above both."""
from __future__ import annotations

import importlib
from typing import Optional

from lab.controlplane.state import ClusterState
from lab.kube_proxy import proxiers
from lab.kube_proxy.proxier import Proxier, Runtime


def _runtime(kind: Proxier) -> Optional[Runtime]:
    return importlib.import_module(kind.runtime).RUNTIME if kind.runtime else None


def of(state: ClusterState) -> Optional[Runtime]:
    """The state's mode's runtime, or None when its rules are all it has."""
    return _runtime(proxiers.of(state))


def socket_cgroups(state: ClusterState) -> dict[str, str]:
    """For the probe engine: source namespace -> the cgroup its sockets are made in ({} unless the
    mode balances in the socket), so a probe from a pod meets its node's socket LB as its processes do."""
    runtime = of(state)
    return runtime.socket_cgroups(state) if runtime else {}


def nat_flows(record) -> dict[str, list[str]]:
    """For `lab trace`: node netns -> the flows its ingress program translated ({} unless the mode
    has one)."""
    runtime = of(record.state)
    if not runtime or not runtime.nat_flows:
        return {}
    return {n.netns: runtime.nat_flows(record, n.name) for n in record.state.nodes}


def teardown(record) -> list[str]:
    """What every mode's runtime left in the record's ledger, removed (`lab down`); -> errors."""
    errors: list[str] = []
    for kind in proxiers.PROXIERS.values():
        runtime = _runtime(kind)
        if runtime:
            errors += runtime.teardown(record)
    return errors
