"""No module branches on a kind's name outside the kind's own unit: the pod networks, proxy modes,
built-in CNIs and add-on images of lab/topology/kinds.py are named by the module that registers
the kind, its registry and that names list only; everything else asks the registry. What is left
(a name in another sense: the `iptables` command, cluster.bgp's section, the kernel's route protocol
bgp) is counted per file in ALLOWED, with why; a new one fails here, naming file and line."""
from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

from lab import routing
from lab.cni import kinds as cni_kinds
from lab.controlplane import addons
from lab.kube_proxy import proxiers
from lab.runtime import controllers
from lab.topology.kinds import ADDON_IMAGES, CNIS, NETWORKS, PROXY_MODES

ROOT = Path(__file__).resolve().parents[2]
NAMES = {*NETWORKS, *PROXY_MODES, *CNIS, *ADDON_IMAGES}
FIELDS = ("network", "proxy", "cni")  # a comparison with one of these is a branch on a kind
REGISTRIES = {"lab/topology/kinds.py", "lab/routing/__init__.py", "lab/kube_proxy/proxiers.py", "lab/cni/kinds.py",
              "lab/controlplane/addons.py", "lab/runtime/controllers.py"}


def _file(module: str) -> str:
    return str(Path(importlib.import_module(module).__file__).relative_to(ROOT))


def _defining(value, packages: tuple[str, ...], attr: str) -> str:
    """The module of `packages` whose `attr` is `value`: where a kind is registered from."""
    for pkg in packages:
        for info in pkgutil.iter_modules(importlib.import_module(pkg).__path__):
            module = importlib.import_module(f"{pkg}.{info.name}")
            if getattr(module, attr, None) is value:
                return module.__name__
    raise LookupError(value)


def owners() -> dict[str, set[str]]:
    """name -> the files of its own unit: the module that registers it and its runtime module."""
    out: dict[str, set[str]] = {}
    for name, b in routing.BACKENDS.items():
        out[name] = {_file(_defining(b, ("lab.routing",), "BACKEND"))} | ({_file(b.runtime)} if b.runtime else set())
    for name, p in proxiers.PROXIERS.items():
        out[name] = {_file(_defining(p, ("lab.kube_proxy",), "PROXIER"))} | ({_file(p.runtime)} if p.runtime else set())
    for name, k in cni_kinds.KINDS.items():
        out[name] = {_file(_defining(k, ("lab.cni",), "KIND"))}
    for a in addons.ADDONS:
        ran_by = next(c for c in controllers.CONTROLLERS if c.addon is a)
        out[a.image] = {_file(_defining(a, ("lab.controlplane",), "ADDON")),
                        _file(_defining(ran_by, ("lab.dns", "lab.ingress", "lab.gateway"), "CONTROLLER"))}
    return out


def branches(source: str, own: set[str] = frozenset()) -> list[str]:
    """What in `source` names a kind it does not own: a string constant that is a kind's name, and a
    comparison with a network, proxy or cni field (`state.proxy != ...`, `topo.cluster.cni in ...`)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and node.value in NAMES and node.value not in own:
            found.append(f"line {node.lineno}: {node.value!r}")
        if isinstance(node, ast.Compare):
            parts = [n for part in (node.left, *node.comparators) for n in ast.walk(part)]
            fields = {n.attr for n in parts if isinstance(n, ast.Attribute) and n.attr in FIELDS}
            kinds = {n.value for n in parts if isinstance(n, ast.Constant) and n.value in NAMES}
            # a host's `network` is its segment (public, underlay), not a pod network
            if fields and (fields - {"network"} or kinds) and not (kinds and kinds <= own):
                found.append(f"line {node.lineno}: a comparison with {'/'.join(sorted(fields))}")
    return sorted(found)


def hits() -> dict[str, list[str]]:
    own: dict[str, set[str]] = {}
    for name, files in owners().items():
        for f in files:
            own.setdefault(f, set()).add(name)
    out = {}
    for path in sorted((ROOT / "lab").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        if rel in REGISTRIES:
            continue
        found = branches(path.read_text(), own.get(rel, set()))
        if found:
            out[rel] = found
    return out


# file -> (at most this many, why they stay). A ceiling: a new branch fails; removing one never does.
ALLOWED: dict[str, tuple[int, str]] = {
    "lab/topology/model.py": (2, "the model's defaults: network vxlan, cni bridge"),
    "lab/topology/semantics.py": (8, "cluster.bgp, the model's section (its paths and the rule that only its network reads it); "
                                     "kube-dns in the message about the reserved ClusterIP"),
    "lab/topology/gateway.py": (1, "the GatewayClass `envoy` the lab ships (the gateway add-on's own validation)"),
    "lab/controlplane/gateway_state.py": (1, "the gateway add-on's IMAGE, kept on the light read side for `lab check`"),
    "lab/faults/ops.py": (1, "the iptables command (a FORWARD DROP fault), not the proxy mode"),
    "lab/faults/plans.py": (3, "the iptables command; 'bridge' in a sysctl key (br_netfilter)"),
    "lab/runtime/faults.py": (3, "the iptables command"),
    "lab/runtime/lifecycle.py": (1, "the bridge command (`bridge -batch`: VXLAN's FDB), not the CNI"),
    "lab/routing/fabric_runtime.py": (1, "an OVS bridge (ovs-vsctl's table), not the CNI"),
    "lab/graph/dot.py": (1, "the graph's link kind for a routing session (bgp's Drawing draws them)"),
    "lab/graph/mermaid.py": (2, "the same link kind"),
    "lab/views.py": (2, "the kernel's route protocol bgp (`ip route`'s proto), not the network"),
    "lab/trace/observe.py": (1, "tcpdump -T vxlan: decode VXLAN to read the probe inside it"),
}

# Modules of one kind imported from outside its package: file -> the kind modules it may import, and why.
def test_the_check_sees_a_branch_on_a_kind():
    assert branches('if state.proxy == "ebpf":\n    pass\n') == ["line 1: 'ebpf'", "line 1: a comparison with proxy"]
    assert branches("if topo.cluster.cni in KINDS: pass\n") == ["line 1: a comparison with cni"]
    assert branches('x = [c for c in pod.containers if c.image == "kube-dns"]\n') == ["line 1: 'kube-dns'"]
    assert branches('if h.network == "public": pass\n') == [], "a host's segment is not a pod network"
    assert branches('if state.network == "vpc": pass\n', own={"vpc"}) == [], "a kind may name itself"


def test_every_kind_has_its_own_unit():
    found = owners()
    assert set(found) == NAMES
    assert found["vpc"] == {"lab/routing/vpc.py"}
    assert found["bgp"] == {"lab/routing/bgp.py", "lab/routing/frr.py"}
    assert found["kube-dns"] == {"lab/controlplane/kube_dns.py", "lab/dns/runtime.py"}


def test_no_module_names_a_kind_outside_its_own_unit_beyond_the_counted_ones():
    over = {f: found for f, found in hits().items() if len(found) > ALLOWED.get(f, (0, ""))[0]}
    assert over == {}, "ask the kind's registry instead (or, for a name in another sense, count it in ALLOWED with why)"


def test_the_counted_ones_are_still_there():
    """ALLOWED names files that exist, each with a reason, and counts no more than is there: an
    allowance a change made unneeded goes with it (or a new branch would hide under it)."""
    assert all((ROOT / f).is_file() and why for f, (_, why) in ALLOWED.items())
    found = hits()
    assert {f: n for f, (n, _) in ALLOWED.items() if len(found.get(f, ())) < n} == {}


def kind_modules() -> dict[str, str]:
    """module -> its package, for every kind's own module and runtime (routing, kube_proxy, cni)."""
    out = {}
    for name, files in owners().items():
        if name in ADDON_IMAGES:
            continue
        for f in files:
            module = f[:-3].replace("/", ".")
            out[module] = module.rsplit(".", 1)[0]
    return out


def foreign_imports(sources: dict[str, str] | None = None) -> dict[str, set[str]]:
    """file -> the kind modules of another package it imports (of lab/'s files, or of `sources`:
    path -> text)."""
    if sources is None:
        sources = {str(p.relative_to(ROOT)): p.read_text() for p in sorted((ROOT / "lab").rglob("*.py"))}
    kinds, out = kind_modules(), {}
    for rel, text in sources.items():
        imported = set()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
        mine = rel[:-3].replace("/", ".").rsplit(".", 1)[0]
        foreign = {m for m in imported if m in kinds and kinds[m] != mine}
        if foreign:
            out[rel] = foreign
    return out


def test_the_check_sees_an_import_of_another_packages_kind():
    assert foreign_imports({"lab/faults/x.py": "from lab.routing import bgp\n"}) == {"lab/faults/x.py": {"lab.routing.bgp"}}
    assert foreign_imports({"lab/routing/y.py": "from lab.routing import bgp\n"}) == {}, "its own package may"


def test_no_module_imports_one_kind_from_outside_its_package():
    assert foreign_imports() == {}, \
        "ask the kind's registry (lab.routing.of, proxiers.of, cni kinds.of, routing.runtimes) instead"


if __name__ == "__main__":
    for f, h in hits().items():
        print(f, len(h), h)
