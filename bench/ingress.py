"""Time from applying a new Ingress rule to its first answer from outside (target <= 0.5 s), beside
the raw baseline in the same run: the same location written into nginx.conf by hand and
`nginx -s reload`. The lab is the benchmark's own (ingbench: topologies/ingress.yaml renamed).

Each round adds a rule with a new path (host new.example, Service shop); the clock runs from the
apply's start until curl, from the internet host by name, gets HTTP 200 from a shop pod. `lab
apply` is measured in process (lab.runtime.apply.apply, as `lab scenario` calls it) and from the CLI
(a Python start-up and the topology load included).

    sudo .venv/bin/python bench/ingress.py [--rounds N]
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from common import LAB, ROOT, OwnLab, median, renamed, table

from lab.host import record
from lab.runtime import apply as applying

NAME = "ingbench"
RULE = """apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: bench-{i}}}
spec:
  rules:
    - host: new.example
      http: {{paths: [{{path: /{path}, pathType: Prefix, backend: {{service: {{name: shop, port: {{number: 80}}}}}}}}]}}
"""


def first_answer(url: str, t0: float, limit: float = 5.0) -> float:
    """Seconds from t0 until curl from the internet host gets 200 for url."""
    while time.perf_counter() - t0 < limit:
        code = subprocess.run(["ip", "netns", "exec", f"{NAME}-internet", "curl", "-s", "-o", "/dev/null", "-w",
                               "%{http_code}", "--max-time", "1", url], capture_output=True, text=True).stdout
        if code == "200":
            return time.perf_counter() - t0
    raise SystemExit(f"{url}: no answer within {limit}s")


def raw_round(i: int) -> float:
    """A location added to nginx.conf by hand and `nginx -s reload`: what the controller cannot beat."""
    d = record.RUN_ROOT / NAME / "ingress"
    conf = d / "nginx.conf"
    text = conf.read_text()
    marker = "        server_name new.example;\n"
    edited = text.replace(marker, marker + f"        location = /raw{i} {{ proxy_pass http://default-shop-80; }}\n")
    nginx = ["nginx", "-e", str(d / "error.log"), "-p", f"{d}/", "-c", str(conf)]
    t0 = time.perf_counter()
    conf.write_text(edited)
    subprocess.run([*nginx, "-s", "reload"], check=True)
    took = first_answer("http://new.example/raw%d" % i, t0)
    conf.write_text(text)
    subprocess.run([*nginx, "-s", "reload"], check=True)
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    with OwnLab(renamed(str(ROOT / "topologies" / "ingress.yaml"), NAME, str(tmp))):
        # the host new.example first appears here, outside the timed rounds
        (tmp / "first.yaml").write_text(RULE.format(i=0, path="warm"))
        applying.apply(str(tmp / "first.yaml"), objects=True, lab=NAME)
        first_answer("http://new.example/warm", time.perf_counter())
        inproc, cli, raw, applied = [], [], [], []
        for i in range(1, a.rounds + 1):
            f = tmp / f"rule-{i}.yaml"
            f.write_text(RULE.format(i=i, path=f"p{i}"))
            t0 = time.perf_counter()
            applying.apply(str(f), objects=True, lab=NAME)
            applied.append(time.perf_counter() - t0)
            inproc.append(first_answer(f"http://new.example/p{i}", t0))
            f.write_text(RULE.format(i=100 + i, path=f"c{i}"))
            t0 = time.perf_counter()
            subprocess.run([*LAB, "apply", "--lab", NAME, "-f", str(f)], check=True, capture_output=True)
            cli.append(first_answer(f"http://new.example/c{i}", t0))
            raw.append(raw_round(i))
    print(f"{a.rounds} rounds, lab {NAME} (3 nodes, vxlan, ingress-nginx with nginx {_version()})")
    print(table([
        ("apply (in process) -> first answer", median(inproc), "<= 0.5 s", median(inproc) <= 0.5),
        ("  of which apply() itself", median(applied), ""),
        ("lab apply -f (CLI) -> first answer", median(cli), "(Python start-up and topology load included)"),
        ("raw: edit nginx.conf + nginx -s reload -> answer", median(raw), "baseline"),
    ]))


def _version() -> str:
    out = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr
    return out.strip().split("/")[-1]


if __name__ == "__main__":
    main()
