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


def test_a_re_created_pod_gets_a_new_address_not_the_one_just_freed():
    """host-local's round-robin (lastReservedIP): the freed address is the last to come back, so no
    neighbour entry that still holds the deleted pod's MAC black-holes the new pod."""
    before = plan(topo(0, extra_pods=3))
    gone = plan(topo(0, extra_pods=2), previous=before)
    back = plan(topo(0, extra_pods=3), previous=gone)
    assert where(back)["solo2"][0] == where(before)["solo2"][0]
    assert where(back)["solo2"][1] != where(before)["solo2"][1]
    assert len({ip for _, ip in where(back).values()}) == 3
    # the state says where each node's round-robin goes on, and survives the record (JSON)
    import json

    from lab.controlplane.state import ClusterState

    assert ClusterState.from_dict(json.loads(json.dumps(back.to_dict()))).last_pod_ips == back.last_pod_ips
    node = where(back)["solo2"][0]
    assert dict(back.last_pod_ips)[node] == where(back)["solo2"][1]


def test_a_record_from_before_the_round_robin_goes_on_after_the_highest_address():
    from dataclasses import replace

    before = replace(plan(topo(0, extra_pods=3)), last_pod_ips=())
    gone = plan(topo(0, extra_pods=2), previous=before)
    back = plan(topo(0, extra_pods=3), previous=gone)
    assert where(back)["solo2"][1] != where(before)["solo2"][1]


def test_the_round_robin_wraps_around_and_skips_addresses_in_use():
    from ipaddress import IPv4Address, IPv4Network

    from lab.controlplane.ipam import pod_addresses

    cidr = IPv4Network("10.244.0.0/29")  # .2 to .6
    ips = [str(a) for a in pod_addresses("a", cidr, 3, frozenset({IPv4Address("10.244.0.2")}), IPv4Address("10.244.0.5"))]
    assert ips == ["10.244.0.6", "10.244.0.3", "10.244.0.4"]
    assert [str(a) for a in pod_addresses("a", cidr, 2)] == ["10.244.0.2", "10.244.0.3"]
