"""scripts/leakcheck.py knows proxy ebpf's objects: a program or map with the lab's names left after
the suite is a leak unless pinned in a foreign lab's bpffs; so are a bpffs mount and a cgroup of the
suite's labs. Pure: hand-made snapshots."""
from __future__ import annotations

import importlib.util
from pathlib import Path

SPEC = importlib.util.spec_from_file_location("leakcheck", Path(__file__).parents[2] / "scripts" / "leakcheck.py")
leakcheck = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(leakcheck)
RUN = leakcheck.RUN


def snap(**kw) -> dict:
    base = {"netns": set(), "inodes": {}, "links": set(), "etc_netns": set(), "ovs": set(), "labs": set(),
            "procs": {}, "bpf": {}, "bpffs": set(), "cgroups": set()}
    return {**base, **kw}


def test_new_bpf_objects_mounts_and_cgroups_of_the_suite_are_leaks_a_foreign_labs_are_not():
    before = snap(bpf={"prog 1": ("sock4_connect", ())})
    after = snap(bpf={"prog 1": ("sock4_connect", ()), "prog 2": ("tc_nodeport", ()),
                      "map 3": ("lb_nat", (f"{RUN}/mine/bpf/w1/maps/lb_nat",)),
                      "map 4": ("lb_services", (f"{RUN}/theirs/bpf/w1/maps/lb_services",))},
                 bpffs={f"{RUN}/mine/bpf", f"{RUN}/theirs/bpf"},
                 cgroups={"/sys/fs/cgroup/unified/k8s-netlab-mine", "/sys/fs/cgroup/unified/k8s-netlab-theirs"})
    left = leakcheck.leaks(before, after, {"theirs"})
    assert left == [f"BPF map 3 lb_nat pinned at {RUN}/mine/bpf/w1/maps/lb_nat",
                    "BPF prog 2 tc_nodeport (no pin: held by an attachment or a process)",
                    f"bpffs mount {RUN}/mine/bpf", "cgroup /sys/fs/cgroup/unified/k8s-netlab-mine"]
    assert leakcheck.leaks(after, after, set()) == []


def test_only_the_labs_own_names_are_watched():
    assert {"sock4_connect", "tc_nodeport", "lb_services", "lb_nat_rev"} <= leakcheck.BPF_NAMES
    assert all(len(n) <= 15 for n in leakcheck.BPF_NAMES)
