"""NetworkPolicy in a real lab: for each of the upstream suite's well-known cases, the observed
truth table of the x/y/z layout equals the one computed from the policies, and policies come
and go without rebuilding the lab."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import TOPOLOGIES, lab, needs_root

pytestmark = [needs_root, pytest.mark.root]
CASES = sorted(p.name for p in (TOPOLOGIES / "netpol-cases").glob("*.yaml"))


@pytest.fixture(scope="module")
def xyz():
    lab("up", str(TOPOLOGIES / "netpol.yaml"))
    try:
        yield
    finally:
        lab("down", "netpol", check=False)


def matrix() -> tuple[int, str]:
    proc = lab("netpol", "matrix", "--lab", "netpol", check=False)
    return proc.returncode, proc.stdout


def test_without_policies_everything_is_allowed(xyz):
    code, out = matrix()
    assert code == 0 and "324 cells, observed = expected" in out and " X" not in out


@pytest.mark.parametrize("case", CASES)
def test_well_known_case(xyz, case):
    path = TOPOLOGIES / "netpol-cases" / case
    lab("apply", "-f", str(path), "--lab", "netpol")
    try:
        code, out = matrix()
        assert code == 0, out
        assert "X" in out  # the case does deny something: observed = expected is not trivial
        # and the whole harness knows: pairs the policies deny are expected to get no reply
        check = lab("check", "--lab", "netpol", check=False)
        assert check.returncode == 0, check.stdout[-3000:]
    finally:
        lab("delete", "-f", str(path), "--lab", "netpol")
    code, out = matrix()
    assert code == 0 and " X" not in out  # and removing it opens everything again


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
        rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("z/a ")}
        assert rows and "X" not in rows["z/a"][:3]  # z/a -> x/a, x/b, x/c allowed now
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
        assert any(record["netpol"].values())
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
