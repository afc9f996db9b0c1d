"""NetworkPolicy in a real lab: for each of the upstream suite's well-known cases, the observed
truth table of the x/y/z layout equals the one computed from the policies, policies come and go
without rebuilding the lab (and a flow allowed just before a policy never makes a cell look
allowed after it), and a microservice app, whose pods each serve their own ports, gets a truth
table with its not-served cells."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import TOPOLOGIES, lab, needs_root

pytestmark = [needs_root, pytest.mark.root]
CASES = sorted(p.name for p in (TOPOLOGIES / "netpol-cases").glob("*.yaml"))
MICROSERVICES = TOPOLOGIES / "netpol-cases" / "microservices"


@pytest.fixture(scope="module")
def xyz():
    lab("up", str(TOPOLOGIES / "netpol.yaml"))
    try:
        yield
    finally:
        lab("down", "netpol", check=False)


def matrix(name: str = "netpol", *args: str) -> tuple[int, str]:
    proc = lab("netpol", "matrix", "--lab", name, *args, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def grids(out: str) -> dict[str, dict[str, dict[str, str]]]:
    """'80/TCP' -> source -> destination -> mark, parsed from the table."""
    found: dict[str, dict[str, dict[str, str]]] = {}
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.endswith(":") and "/" in line and line[:-1].split("/")[0].isdigit():
            columns, rows = lines[i + 1].split(), {}
            for row in lines[i + 2:]:
                if not row.strip():
                    break
                src, *marks = row.split()
                assert len(marks) == len(columns), row
                rows[src] = dict(zip(columns, marks))
            found[line[:-1]] = rows
    assert found, out
    return found


def marks(out: str) -> set[str]:
    return {m for grid in grids(out).values() for row in grid.values() for m in row.values()}


def test_without_policies_everything_is_allowed(xyz):
    code, out = matrix()
    # 9 pods and the kube-dns pod (cluster DNS is on by default) as sources, the 9 pods as destinations
    assert code == 0 and "360 cells, observed = expected" in out and marks(out) == {"."}, out


@pytest.mark.parametrize("case", CASES)
def test_well_known_case(xyz, case):
    path = TOPOLOGIES / "netpol-cases" / case
    lab("apply", "-f", str(path), "--lab", "netpol")
    try:
        code, out = matrix()
        assert code == 0, out
        assert "X" in marks(out)  # the case does deny something: observed = expected is not trivial
        # and the whole harness knows: pairs the policies deny are expected to get no reply
        check = lab("check", "--lab", "netpol", check=False)
        assert check.returncode == 0, check.stdout[-3000:]
    finally:
        lab("delete", "-f", str(path), "--lab", "netpol")
    code, out = matrix()
    assert code == 0 and marks(out) == {"."}, out  # and removing it opens everything again


def test_the_harness_expects_what_the_policies_deny(xyz):
    path = TOPOLOGIES / "netpol-cases" / "default-deny-ingress.yaml"
    lab("apply", "-f", str(path), "--lab", "netpol")
    try:
        out = lab("check", "--lab", "netpol", "--json", "/dev/stdout").stdout
        assert "denied by NetworkPolicy" in out
    finally:
        lab("delete", "-f", str(path), "--lab", "netpol")


def test_policies_add_up_and_follow_relabelling(xyz, tmp_path):
    deny = TOPOLOGIES / "netpol-cases" / "default-deny-ingress.yaml"
    allow = TOPOLOGIES / "netpol-cases" / "allow-from-namespace.yaml"
    lab("apply", "-f", str(deny), "--lab", "netpol")
    lab("apply", "-f", str(allow), "--lab", "netpol")
    try:
        code, out = matrix()
        assert code == 0, out
        # relabel namespace z as ns=y: z's pods are now allowed into x too
        relabel = tmp_path / "z.yaml"
        relabel.write_text("{apiVersion: v1, kind: Namespace, metadata: {name: z, labels: {ns: y}}}\n")
        lab("apply", "-f", str(relabel), "--lab", "netpol")
        code, out = matrix()
        assert code == 0, out
        row = grids(out)["80/TCP"]["z/a"]
        assert [row[d] for d in ("x/a", "x/b", "x/c")] == [".", ".", "."]  # z/a -> x allowed now
    finally:
        lab("delete", "-f", str(allow), "--lab", "netpol")
        lab("delete", "-f", str(deny), "--lab", "netpol")
        back = tmp_path / "z-back.yaml"
        back.write_text("{apiVersion: v1, kind: Namespace, metadata: {name: z, labels: {ns: z}}}\n")
        lab("apply", "-f", str(back), "--lab", "netpol")


def test_policy_rules_are_in_the_nodes(xyz):
    path = TOPOLOGIES / "netpol-cases" / "default-deny-ingress.yaml"
    lab("apply", "-f", str(path), "--lab", "netpol")
    try:
        import subprocess
        rules = subprocess.run(["ip", "netns", "exec", "netpol-worker1", "iptables-save", "-t", "filter"],
                               capture_output=True, text=True, check=True).stdout
        assert "-A FORWARD" in rules and "LAB-NETPOL" in rules
        record = json.loads(Path("/run/k8s-netlab/netpol/record.json").read_text())
        assert any(record["sections"]["policy"]["chains"].values())
    finally:
        lab("delete", "-f", str(path), "--lab", "netpol")


def test_policies_apply_to_the_backend_behind_a_service(xyz, tmp_path):
    """Service traffic is DNATed before it is filtered: the backend's ingress policy decides."""
    objects = tmp_path / "svc.yaml"
    objects.write_text("""
- {apiVersion: v1, kind: Service, metadata: {name: web, namespace: x},
   spec: {clusterIP: 10.96.0.80, selector: {pod: a}, ports: [{port: 80, targetPort: 80}]}}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: only-y, namespace: x}
  spec:
    podSelector: {matchLabels: {pod: a}}
    ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]
""")
    lab("apply", "-f", str(objects), "--lab", "netpol")
    try:
        def curl(ns: str) -> int:
            return lab("exec", "b", "-n", ns, "--lab", "netpol", "--", "curl", "-s", "-m", "1",
                       "http://10.96.0.80/hostname", check=False).returncode
        assert curl("y") == 0      # allowed by the backend's policy
        assert curl("z") != 0      # dropped at the backend, after kube-proxy's DNAT
    finally:
        lab("delete", "-f", str(objects), "--lab", "netpol")


def test_a_flow_allowed_just_before_a_policy_does_not_make_its_cell_look_allowed(xyz):
    """The conntrack case: UDP cells are probed (and answered) while allowed, then a policy that
    denies them is applied; the matrix right after must see them denied — its probes use fresh
    source ports, never a tuple conntrack still tracks as established. A few times in a row."""
    deny = TOPOLOGIES / "netpol-cases" / "default-deny-ingress.yaml"
    cells = [("y/b", "x/a"), ("y/c", "x/a"), ("z/c", "x/b")]   # across nodes, and within control-plane
    for _ in range(3):
        code, out = matrix("netpol", "--protocols", "UDP")
        assert code == 0, out
        assert all(grids(out)["80/UDP"][s][d] == "." for s, d in cells), out
        lab("apply", "-f", str(deny), "--lab", "netpol")
        try:
            proc = lab("netpol", "matrix", "--lab", "netpol", "--protocols", "UDP", "-o", "json", check=False)
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
            data = json.loads(proc.stdout)
            assert data["differences"] == 0 and data["probed"] == 10 * 9 * 2    # the kube-dns pod is a source too
            by_cell = {(c["src"], c["dst"], c["port"]): c for c in data["cells"]}
            for s, d in cells:
                c = by_cell[(s, d, 80)]
                assert (c["expected"], c["observed"]) == ("denied", "denied"), c
                assert c["error"].startswith("timeout"), c
        finally:
            lab("delete", "-f", str(deny), "--lab", "netpol")


@pytest.fixture(scope="module")
def microservices():
    lab("up", str(MICROSERVICES / "topology.yaml"))
    try:
        yield "netpol-ms"
    finally:
        lab("down", "netpol-ms", check=False)


def short(key: str) -> str:
    ns, name = key.split("/")
    return f"{ns}/{name.split('-')[0]}"


def test_a_microservice_app_is_probed_on_each_pod_s_own_ports(microservices):
    code, out = matrix(microservices)
    assert code == 0, out
    assert "40 cells, observed = expected (80 not served, '-')" in out     # 7 pods and kube-dns send
    g = grids(out)
    assert sorted(g) == ["8080/TCP", "8125/UDP", "9000/TCP"]
    assert {short(s) for s in g["8080/TCP"]} == {"ops/idle", "ops/statsd", "shop/backend", "shop/client",
                                                 "shop/frontend",          # pause and command: pods send
                                                 "kube-system/kube"}       # the kube-dns add-on's pod
    assert marks(out) == {".", "-"}
    for grid, serving in (("8080/TCP", "shop/frontend"), ("9000/TCP", "shop/backend"), ("8125/UDP", "ops/statsd")):
        for row in g[grid].values():
            assert all((mark == ".") == (short(dst) == serving) for dst, mark in row.items()), (grid, row)


def test_a_microservice_app_under_its_policies(microservices):
    policies = MICROSERVICES / "policies.yaml"
    lab("apply", "-f", str(policies), "--lab", microservices)
    try:
        for _ in range(2):
            code, out = matrix(microservices)
            assert code == 0, out
            assert "40 cells, observed = expected (80 not served, '-')" in out and marks(out) == {".", "X", "-"}
            g = grids(out)
            client = "shop/client"
            assert {short(d): m for d, m in g["8080/TCP"][client].items()}["shop/frontend"] == "."
            assert {short(d): m for d, m in g["8080/TCP"]["ops/idle"].items()}["shop/frontend"] == "X"
            assert g["8125/UDP"]["ops/idle"]["ops/statsd"] == "X" and g["8125/UDP"][client]["ops/statsd"] == "."
        proc = lab("netpol", "matrix", "--lab", microservices, "-o", "json", check=False)
        assert proc.returncode == 0, proc.stdout[-3000:]
        data = json.loads(proc.stdout)
        assert len(data["cells"]) == 8 * 5 * 3 and data["probed"] == 40 and data["differences"] == 0
        for c in data["cells"]:
            assert (c["observed"] == "not served") == (c["expected"] is None) == (c["attempts"] == 0), c
    finally:
        lab("delete", "-f", str(policies), "--lab", microservices)


def test_nothing_to_probe_is_an_error(microservices):
    code, out = matrix(microservices, "--ports", "80")
    assert code == 2, out
    assert "nothing to probe in lab netpol-ms: no destination serves 80/TCP, 80/UDP" in out
    assert "shop/client" not in out.split("served:")[-1]   # only the pods that serve are listed there
