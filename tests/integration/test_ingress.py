"""Ingress on a real lab (ingt: topologies/ingress.yaml renamed, ~10 s): the rendered nginx.conf
passes `nginx -t`; from the internet host, by name, each host and path reaches the right Service,
TLS verified with the lab's CA and the client in X-Forwarded-For; lab check's ingress row passes;
a rule added with `lab apply -f` answers within 0.5 s; a backend that loses its endpoints answers 503."""
from __future__ import annotations

import subprocess
import time

import pytest
import yaml

from tests.integration.conftest import ROOT, lab, needs_root

pytestmark = [needs_root, pytest.mark.root]

NAME = "ingt"
CA = f"/run/k8s-netlab/{NAME}/ca.crt"


@pytest.fixture(scope="module")
def ingt(tmp_path_factory):
    doc = yaml.safe_load((ROOT / "topologies" / "ingress.yaml").read_text())
    doc["name"] = NAME
    path = tmp_path_factory.mktemp("ingt") / "ingt.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    lab("up", str(path))
    try:
        yield path.parent
    finally:
        lab("down", NAME, check=False)


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", f"{NAME}-internet", "curl", "-sS", "-m", "2", *args],
                          capture_output=True, text=True)


def test_the_rendered_config_passes_nginx_t(ingt):
    d = f"/run/k8s-netlab/{NAME}/ingress"
    out = subprocess.run(["nginx", "-e", f"{d}/error.log", "-p", f"{d}/", "-c", f"{d}/nginx.conf", "-t"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("url, service", [
    ("https://shop.example/", "shop-"), ("https://shop.example/cart", "shop-"), ("https://shop.example/api", "api-"),
    ("https://shop.example/api/x", "api-"), ("http://api.example/v1", "api-"), ("http://api.example/v1/users", "api-"),
    ("http://api.example/healthz", "api-"),
])
def test_each_host_and_path_reaches_its_service_by_name_with_the_labs_ca(ingt, url, service):
    out = curl("--cacert", CA, "-D", "-", "-o", "/dev/null", url)
    assert out.returncode == 0, out.stderr
    headers = dict(line.split(": ", 1) for line in out.stdout.splitlines()[1:] if ": " in line)
    assert headers["X-Netexec-Hostname"].startswith(service)
    assert headers["X-Netexec-Forwarded-For"] == "172.18.0.5"  # the internet host, not a node


def test_what_no_rule_names_is_nginxs_404_and_http_to_a_tls_host_is_a_308(ingt):
    assert curl("-o", "/dev/null", "-w", "%{http_code}", "http://api.example/nothing").stdout == "404"
    assert curl("-o", "/dev/null", "-w", "%{http_code}", "http://api.example/v1x").stdout == "404"  # Prefix is per element
    redirect = curl("-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "http://shop.example/a")
    assert redirect.stdout == "308 https://shop.example/a"
    assert curl("--cacert", CA, "https://nobody.example/").returncode != 0  # the outside resolver: NXDOMAIN


def test_lab_check_has_a_passing_ingress_row(ingt):
    out = lab("check", "--lab", NAME)
    row = next(line for line in out.stdout.splitlines() if line.startswith("ingress"))
    assert row.split()[1:3] == ["7", "0"], out.stdout


def test_a_rule_applied_answers_within_half_a_second(ingt):
    rule = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "late"}, "spec": {"rules": [
        {"host": "late.example", "http": {"paths": [{"path": "/late", "pathType": "Prefix",
                                                      "backend": {"service": {"name": "api", "port": {"number": 8080}}}}]}}]}}
    f = ingt / "late.yaml"
    f.write_text(yaml.safe_dump(rule))
    t0 = time.perf_counter()
    lab("apply", "--lab", NAME, "-f", str(f))
    applied = time.perf_counter() - t0  # the CLI: Python start-up and the topology load included
    while curl("-o", "/dev/null", "-w", "%{http_code}", "http://late.example/late").stdout != "200":
        assert time.perf_counter() - t0 < applied + 0.5, "no answer 0.5 s after lab apply returned"
    print(f"lab apply -f {applied:.2f}s, first answer {time.perf_counter() - t0:.2f}s")
    lab("delete", "--lab", NAME, "-f", str(f))
    assert curl("-o", "/dev/null", "-w", "%{http_code}", "http://late.example/late").stdout != "200"
