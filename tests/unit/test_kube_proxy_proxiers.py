"""kube-proxy's modes as kinds (lab.kube_proxy.proxiers): the registry is the topology model's
names, each mode's setup and sync go through its Proxier, and no module outside lab/kube_proxy and
the topology model branches on a mode's name."""
from __future__ import annotations

import ast
from dataclasses import replace

import pytest

from lab.host import using
from lab.host.fake import FakeHost
from lab.kube_proxy import proxiers, runtimes, sync
from lab.topology.kinds import PROXY_MODES
from tests.unit.golden import ROOT, shipped_state

STATES = {mode: shipped_state("ebpf", proxy=mode) for mode in PROXY_MODES}


def test_the_registered_modes_are_exactly_the_topology_models_names():
    assert list(proxiers.PROXIERS) == list(PROXY_MODES)
    with pytest.raises(ValueError, match="proxy 'ipvs' is not supported; supported: iptables, nftables, ebpf"):
        proxiers.of(replace(STATES["iptables"], proxy="ipvs"))


def test_what_the_probes_and_trace_ask_of_each_mode():
    kinds = {mode: proxiers.of(state) for mode, state in STATES.items()}
    assert [m for m, k in kinds.items() if k.localhost_nodeports] == ["iptables"]
    assert [m for m, k in kinds.items() if k.socket_lb] == ["ebpf"]
    assert [m for m, k in kinds.items() if runtimes.of(STATES[m])] == ["ebpf"]
    assert runtimes.socket_cgroups(STATES["iptables"]) == {} == runtimes.socket_cgroups(STATES["nftables"])


@pytest.mark.parametrize("mode, argv, sysctls", [
    ("iptables", ("iptables-restore", "--noflush"), [{"net.ipv4.conf.all.route_localnet": "1"}]),
    ("nftables", ("nft", "-f", "-"), []),
    ("ebpf", ("nft", "-f", "-"), []),
])
def test_setup_restores_each_nodes_base_rules_with_the_modes_command(mode, argv, sysctls):
    state = STATES[mode]
    with using(FakeHost()) as fake:
        sync.setup(state)
    restores = [c for c in fake.calls if c.argv and c.argv[:len(argv)] == argv]
    assert sorted(c.netns for c in restores) == sorted(n.netns for n in state.nodes)
    assert all("MASQUERADE" in c.input or "masquerade" in c.input for c in restores)  # ip-masq-agent's NAT
    set_ = [c.settings for c in fake.calls if c.kind == "sysctl"]
    assert set_ == sysctls * len(state.nodes)


# --- no module outside lab/kube_proxy and the topology model names a proxy mode ---

# Files that name `iptables` as the command (a fault's FORWARD DROP), not as kube-proxy's mode.
THE_IPTABLES_COMMAND = {"lab/faults/ops.py", "lab/faults/plans.py", "lab/runtime/faults.py"}


def mode_branches(source: str) -> list[str]:
    """What in `source` names a proxy mode: a string that is a mode's name, and any comparison
    with a `proxy` attribute or name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and node.value in PROXY_MODES:
            found.append(f"line {node.lineno}: {node.value!r}")
        if isinstance(node, ast.Compare):
            names = [n for part in (node.left, *node.comparators) for n in ast.walk(part)]
            if any(isinstance(n, ast.Attribute) and n.attr == "proxy" or isinstance(n, ast.Name) and n.id == "proxy"
                   for n in names):
                found.append(f"line {node.lineno}: a comparison with proxy")
    return sorted(found)


def test_the_check_sees_a_branch_on_a_mode():
    assert mode_branches('if state.proxy == "ebpf":\n    pass\n') == ["line 1: 'ebpf'", "line 1: a comparison with proxy"]
    assert mode_branches("if st.proxy in MODES: pass\n") == ["line 1: a comparison with proxy"]
    assert mode_branches("x = proxiers.of(state).socket_lb\n") == []


def test_no_module_outside_kube_proxy_and_the_topology_model_names_a_proxy_mode():
    hits = {}
    for path in sorted((ROOT / "lab").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        if rel.startswith(("lab/kube_proxy/", "lab/topology/")):
            continue
        found = mode_branches(path.read_text())
        if rel in THE_IPTABLES_COMMAND:  # the command's name may stay; a comparison with proxy may not
            found = [f for f in found if not f.endswith("'iptables'")]
        if found:
            hits[rel] = found
    assert hits == {}
