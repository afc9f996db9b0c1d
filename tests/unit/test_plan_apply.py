"""plan(topology, previous=running state): what `lab apply` relies on — running pods keep their
node and IP; only new pods are scheduled and addressed."""
from __future__ import annotations

from lab.controlplane.plan import plan
from lab.topology.model import Topology


def topo(replicas: int, extra_pods: int = 0) -> Topology:
    manifests = [{
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "netexec", "ports": [{"containerPort": 80}]}]}}},
    }] + [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"solo{i}"},
           "spec": {"containers": [{"name": "c", "image": "pause"}]}} for i in range(extra_pods)]
    return Topology.model_validate({"name": "t", "cluster": {"dns": {"enabled": False}},
                                    "nodes": [{"name": "a"}, {"name": "b"}], "manifests": manifests})


def where(state):
    return {p.name: (p.node, p.ip) for p in state.pods}


def test_scaling_up_keeps_running_pods_and_fills_free_addresses():
    before = plan(topo(3, extra_pods=2))
    after = plan(topo(6, extra_pods=2), previous=before)
    old, new = where(before), where(after)
    assert all(new[name] == spot for name, spot in old.items())  # nobody moved or got renumbered
    ips = [ip for _, ip in new.values()]
    assert len(set(ips)) == len(ips)
    added = set(new) - set(old)
    assert len(added) == 3 and {new[n][0] for n in added} <= {"a", "b"}


def test_scaling_down_frees_addresses_for_later_pods():
    before = plan(topo(4))
    smaller = plan(topo(1), previous=before)
    assert where(smaller).items() <= where(before).items()
    again = plan(topo(4), previous=smaller)
    survivors = where(smaller)
    assert all(where(again)[n] == s for n, s in survivors.items())
    assert len({ip for _, ip in where(again).values()}) == 4


def test_a_removed_pod_frees_its_address():
    before = plan(topo(0, extra_pods=3))
    after = plan(topo(0, extra_pods=2), previous=before)
    assert set(where(after)) == {"solo0", "solo1"} and where(after).items() <= where(before).items()


def test_without_previous_the_plan_is_the_fresh_one():
    t = topo(3, extra_pods=1)
    assert plan(t) == plan(t, previous=None)
    assert plan(t, previous=plan(t)) == plan(t)  # applying the same file changes nothing
