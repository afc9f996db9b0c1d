"""kube-proxy's modes as kinds: one `Proxier` per mode (lab.kube_proxy.proxier), so no module
outside lab/kube_proxy names a proxy mode. The same model (lab.kube_proxy.model) feeds every one.

Adding a proxy mode is one module with its PROXIER, one line in `_registry` below and its name in
lab/topology/kinds.py PROXY_MODES (the model's allowed names; checked against this registry at import)."""
from __future__ import annotations

from lab.controlplane.state import ClusterState
from lab.kube_proxy.proxier import Proxier
from lab.topology.kinds import PROXY_MODES, check_registry


def _registry() -> dict[str, Proxier]:
    from lab.kube_proxy import ebpf, iptables, nftables

    kinds = {p.name: p for p in (iptables.PROXIER, nftables.PROXIER, ebpf.PROXIER)}
    check_registry("proxy modes (lab/kube_proxy)", kinds, PROXY_MODES)
    return kinds


PROXIERS = _registry()


def of(state: ClusterState) -> Proxier:
    try:
        return PROXIERS[state.proxy]
    except KeyError:
        raise ValueError(f"proxy {state.proxy!r} is not supported; supported: {', '.join(PROXIERS)}") from None
