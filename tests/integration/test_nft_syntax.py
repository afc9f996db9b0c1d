"""The nftables scripts of lab.kube_proxy.nftables against the real `nft` and kernel, in a throw-away
network namespace: they parse (`nft -c`), they load (`nft -f`), a resync replaces the table, and a
partial sync (render_update) applied on top of render(old) leaves exactly what render(new) makes.

Also prints (does not assert) how long `nft -f` takes for 1000 Services x 3 endpoints and for a
one-Service partial sync on top of it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import replace

import pytest

from lab.kube_proxy import nftables
from tests.unit.test_kube_proxy_nftables import SMALL, big_state, changed_services_yaml, one_more, services_yaml

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates a network namespace and loads nftables rules"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="needs the nft command (Debian package nftables)"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs the ip command (Debian package iproute2)"),
    pytest.mark.root,
]


def nft(ns: str, *args: str, script: str | None = None) -> str:
    proc = subprocess.run(["ip", "netns", "exec", ns, "nft", *args], input=script, capture_output=True, text=True)
    assert proc.returncode == 0, f"nft {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}"
    return proc.stdout


def load(ns: str, script: str) -> None:
    nft(ns, "-c", "-f", "-", script=script)
    nft(ns, "-f", "-", script=script)


def table(ns: str, name: str = "kube-proxy") -> dict:
    """The table as the kernel holds it, without handles: {chains: {name: [rules]}, sets: {name: {...}}}."""
    out: dict = {"chains": {}, "rules": {}, "sets": {}}
    for item in json.loads(nft(ns, "-j", "list", "table", "ip", name))["nftables"]:
        (kind, obj), = item.items()
        obj = {k: v for k, v in obj.items() if k != "handle"}
        if kind == "chain":
            out["chains"][obj["name"]] = obj
            out["rules"].setdefault(obj["name"], [])
        elif kind == "rule":
            out["rules"].setdefault(obj["chain"], []).append((obj["expr"], obj.get("comment")))
        elif kind in ("set", "map"):
            obj["elem"] = sorted(json.dumps(e, sort_keys=True) for e in obj.get("elem", []))
            out["sets"][obj["name"]] = obj
    return out


def test_services_render_loads_on_every_node(netns):
    state, slices = services_yaml()
    for node in state.nodes:
        load(netns, nftables.render(state, node.name, slices))
        listed = nft(netns, "list", "table", "ip", "kube-proxy")
        assert node.ip in listed and "10.96.0.100 . tcp . 80 : goto service-" in listed
        assert "backend-headless" not in listed


def test_resync_replaces_the_table(netns):
    state, slices = services_yaml()
    script = nftables.render(state, "worker1", slices)
    load(netns, script)
    first = table(netns)
    load(netns, script)
    assert table(netns) == first
    # a resync after a change leaves nothing of the old table behind
    (_, _), (new, new_slices) = changed_services_yaml()
    load(netns, nftables.render(new, "worker1", new_slices))
    assert not [c for c in table(netns)["chains"] if "default/node-local/" in c]


def test_update_on_top_equals_a_fresh_render(netns):
    (old, old_slices), (new, new_slices) = changed_services_yaml()
    load(netns, nftables.render(old, "worker1", old_slices))
    # a client remembered by sticky's endpoint 10.244.1.2, which stays: a partial sync keeps it
    affinity = next(c for c in table(netns)["sets"] if c.startswith("affinity-") and c.endswith("__10.244.1.2/8080"))
    nft(netns, "add", "element", "ip", "kube-proxy", affinity, "{ 192.0.2.7 }")

    update = nftables.render_update(old, new, "worker1", old_slices, new_slices)
    load(netns, update)
    after = table(netns)
    listed = nft(netns, "list", "table", "ip", "kube-proxy")
    assert "10.96.0.200 . tcp . 80 : goto service-" in listed                          # added
    assert "default/node-local/" not in listed and "10.99.241.197" not in listed       # deleted
    assert "default/sticky/tcp/__10.244.2.2/8080" not in listed                        # endpoint removed
    assert "numgen random mod 2 vmap" in nft(netns, "list", "chain", "ip", "kube-proxy",
                                             next(c for c in after["chains"] if c.startswith("service-") and "sticky" in c))
    assert "192.0.2.7" in json.dumps(after["sets"][affinity])

    load(netns, nftables.render(new, "worker1", new_slices))
    fresh = table(netns)
    after["sets"][affinity]["elem"] = fresh["sets"][affinity]["elem"]   # the one difference: the resync forgot
    assert after == fresh


def test_updates_in_sequence(netns):
    state, slices = services_yaml()
    load(netns, nftables.render(state, "control-plane", slices))
    current = (state, slices)
    for name, ip in (("one", "10.96.0.201"), ("two", "10.96.0.202")):
        nxt = one_more(*current, name=name, ip=ip)
        load(netns, nftables.render_update(current[0], nxt[0], "control-plane", current[1], nxt[1]))
        current = nxt
    load(netns, nftables.render_update(current[0], state, "control-plane", current[1], slices))   # and back
    back = table(netns)
    load(netns, nftables.render(state, "control-plane", slices))
    assert back == table(netns)


def test_update_affinity_timeout(netns):
    state, slices = SMALL["affinity"]()
    longer = replace(state, services=tuple(replace(s, affinity_timeout=120) for s in state.services))
    load(netns, nftables.render(state, "worker1", slices))
    load(netns, nftables.render_update(state, longer, "worker1", slices, slices))
    after = table(netns)
    assert [s["timeout"] for n, s in sorted(after["sets"].items()) if n.startswith("affinity-")] == [120, 120]
    load(netns, nftables.render(longer, "worker1", slices))
    assert table(netns) == after


def test_masq_agent_applies(netns):
    state, slices = services_yaml()
    load(netns, nftables.masq_agent_rules(state))
    load(netns, nftables.masq_agent_rules(state))
    load(netns, nftables.render(state, "worker1", slices))
    listed = nft(netns, "list", "table", "ip", "ip-masq-agent")
    assert "masquerade" in listed and "10.244.0.0/16" in listed


def test_timing_1000_services(netns, capsys):
    state, slices = big_state(1000)
    full = nftables.render(state, "worker1", slices)
    t0 = time.perf_counter()
    nft(netns, "-f", "-", script=full)
    t_full = time.perf_counter() - t0
    t0 = time.perf_counter()
    nft(netns, "-f", "-", script=full)
    t_resync = time.perf_counter() - t0

    new_state, new_slices = one_more(state, slices)
    update = nftables.render_update(state, new_state, "worker1", slices, new_slices)
    t0 = time.perf_counter()
    nft(netns, "-f", "-", script=update)
    t_update = time.perf_counter() - t0
    assert "default/added/" in nft(netns, "list", "map", "ip", "kube-proxy", "service-ips")

    with capsys.disabled():
        print(f"\nnft -f, 1000 services x 3 endpoints ({len(full.splitlines())} lines): "
              f"first load {t_full:.3f}s, resync {t_resync:.3f}s; "
              f"one-service render_update ({len(update.splitlines())} lines): {t_update:.3f}s")
