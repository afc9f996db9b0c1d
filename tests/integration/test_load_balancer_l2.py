"""LoadBalancer Services with real addresses (topologies/loadbalancer.yaml as lab lbt, ~40 s): from
the internet host `curl http://<EXTERNAL-IP>/` reaches a backend; with externalTrafficPolicy Local
the backend sees the host's address; a host outside loadBalancerSourceRanges gets no answer;
`lab node stop` of the speaker moves the address to another node within a few seconds, and `lab
node start` brings it back; lab check's loadbalancer row passes."""
from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import lab, needs_root

pytestmark = [needs_root, pytest.mark.root]

ROOT = Path(__file__).resolve().parents[2]
NAME = "lbt"


def curl(host: str, url: str, timeout: str = "2") -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", f"{NAME}-{host}", "curl", "-s", "--connect-timeout", "0.5", "-m", timeout,
                           url], capture_output=True, text=True)


def speakers() -> dict[str, str]:
    return json.loads(Path(f"/run/k8s-netlab/{NAME}/record.json").read_text())["sections"]["loadbalancer"]["speakers"]


def until(predicate, limit: float) -> float:
    t0 = time.monotonic()
    while not predicate():
        assert time.monotonic() - t0 < limit, f"not within {limit} s"
        time.sleep(0.05)
    return time.monotonic() - t0


def test_load_balancer_l2(tmp_path: Path):
    doc = yaml.safe_load((ROOT / "topologies" / "loadbalancer.yaml").read_text())
    doc["name"] = NAME
    path = tmp_path / "lbt.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    lab("up", str(path))
    try:
        svc = lab("get", "svc", "--lab", NAME).stdout
        assert re.search(r"web\s+LoadBalancer\s+\S+\s+172\.18\.0\.240\s+80:3\d{4}/TCP", svc), svc
        assert re.search(r"web-internal\s+LoadBalancer\s+\S+\s+172\.18\.0\.250\s", svc), svc
        obj = json.loads(lab("get", "svc", "web-local", "-o", "json", "--lab", NAME).stdout)
        obj = next(o for o in obj.get("items", [obj]) if o["metadata"]["name"] == "web-local")
        local_ip = obj["status"]["loadBalancer"]["ingress"][0]["ip"]
        assert curl("internet", "http://172.18.0.240/hostname").stdout.startswith("web-")
        assert curl("internet", f"http://{local_ip}/clientip").stdout.startswith("172.18.0.5:")   # ETP Local
        assert curl("internet", "http://172.18.0.250/hostname").stdout.startswith("web-")        # in the range
        assert curl("office", "http://172.18.0.250/hostname", "1").returncode != 0               # outside it
        checked = lab("check", "--lab", NAME, check=False)
        assert checked.returncode == 0, checked.stdout[-3000:]
        assert re.search(r"loadbalancer\s+[1-9]\d*\s+0\s+ok", checked.stdout)

        node = speakers()["172.18.0.240"]
        lab("node", "stop", node, "--lab", NAME)
        took = until(lambda: speakers().get("172.18.0.240") not in (None, node), 5)
        took += until(lambda: curl("internet", "http://172.18.0.240/hostname", "1").stdout.startswith("web-"), 5)
        print(f"failover to {speakers()['172.18.0.240']} answered after {took:.2f} s")
        lab("node", "start", node, "--lab", NAME)
        until(lambda: speakers().get("172.18.0.240") == node, 5)
        until(lambda: curl("internet", "http://172.18.0.240/hostname", "1").stdout.startswith("web-"), 5)
    finally:
        lab("down", NAME, check=False)
