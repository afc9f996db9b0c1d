"""lab.controlplane.naming: link names, VTEP MACs, pod-template-hash, ReplicaSet suffixes, netns names."""
from __future__ import annotations

import re

import pytest

from lab.controlplane import naming

SAFE = "bcdfghjklmnpqrstvwxz2456789"
IFNAMSIZ = 16  # the kernel's limit, including the NUL: 15 visible characters


# --- the alphabet ---

def test_alphabet_is_apimachinerys_safe_alphabet():
    assert naming._SAFE == SAFE
    assert len(set(naming._SAFE)) == len(naming._SAFE) == 27


def test_alphabet_has_no_vowels_and_no_look_alikes():
    assert not set(naming._SAFE) & set("aeiouAEIOU")
    assert not set(naming._SAFE) & set("013y")  # 0/o, 1/l, 3/e, y: left out on purpose
    assert naming._SAFE == naming._SAFE.lower()


# --- underlay switch name ---

@pytest.mark.parametrize("lab", ["a", "vxlan", "host-gw", "x" * 24, "0123456789-abcdefghijklm"])
def test_switch_name_fits_a_link_name(lab):
    name = naming.switch_name(lab)
    assert len(name) <= IFNAMSIZ - 1
    assert re.fullmatch(r"kn[0-9a-f]{6}", name)
    assert naming.switch_name(lab) == name


def test_switch_name_differs_per_lab():
    labs = ["a", "b", "vxlan", "host-gw", "vxlan2", "lab-" + "x" * 20, "lab-" + "x" * 19 + "y"]
    names = [naming.switch_name(lab) for lab in labs]
    assert len(set(names)) == len(labs)


def test_switch_name_value():
    # sha1("vxlan") starts with 0b362f...: pinned so a change of scheme is a deliberate one
    assert naming.switch_name("vxlan") == "kn0b362f"


# --- VTEP MAC ---

@pytest.mark.parametrize("ip, mac", [
    ("172.18.0.2", "0e:6e:ac:12:00:02"),
    ("10.255.1.254", "0e:6e:0a:ff:01:fe"),
    ("0.0.0.0", "0e:6e:00:00:00:00"),
    ("255.255.255.255", "0e:6e:ff:ff:ff:ff"),
])
def test_vtep_mac_derives_from_node_ip(ip, mac):
    assert naming.vtep_mac(ip) == mac


def test_vtep_mac_format_is_locally_administered_unicast():
    mac = naming.vtep_mac("192.168.7.9")
    assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", mac)
    first = int(mac.split(":")[0], 16)
    assert first & 0x01 == 0  # unicast
    assert first & 0x02 == 0x02  # locally administered


def test_vtep_mac_is_injective_on_ips():
    ips = [f"172.18.{a}.{b}" for a in range(4) for b in range(256)]
    assert len({naming.vtep_mac(ip) for ip in ips}) == len(ips)


# --- pod-template-hash ---

@pytest.mark.parametrize("data, want", [
    (b"", 0x811C9DC5),
    (b"a", 0xE40C292C),
    (b"foobar", 0xBF9CF968),
])
def test_fnv32a_known_vectors(data, want):
    assert naming._fnv32a(data) == want


def _decode(h: str) -> int:
    """The safe encoding of a decimal string maps each digit to one letter; undo it."""
    back = {SAFE[ord(d) % len(SAFE)]: d for d in "0123456789"}
    assert len(back) == 10
    return int("".join(back[c] for c in h))


def test_pod_template_hash_is_safe_encoded_decimal_fnv32a():
    t = {"spec": {"containers": [{"name": "web", "image": "netexec"}]}, "metadata": {"labels": {"app": "x"}}}
    h = naming.pod_template_hash(t)
    assert set(h) <= set(SAFE)
    assert _decode(h) == naming._fnv32a(b'{"metadata": {"labels": {"app": "x"}}, '
                                         b'"spec": {"containers": [{"image": "netexec", "name": "web"}]}}')


def test_pod_template_hash_ignores_key_order():
    a = {"metadata": {"labels": {"app": "web", "tier": "front"}}, "spec": {"hostNetwork": False, "nodeName": None}}
    b = {"spec": {"nodeName": None, "hostNetwork": False}, "metadata": {"labels": {"tier": "front", "app": "web"}}}
    assert naming.pod_template_hash(a) == naming.pod_template_hash(b)


def test_pod_template_hash_changes_with_content():
    base = {"spec": {"containers": [{"name": "web", "ports": [8080]}]}}
    other = {"spec": {"containers": [{"name": "web", "ports": [8081]}]}}
    order = {"spec": {"containers": [{"name": "web", "ports": [8080, 9090]}]}}
    swapped = {"spec": {"containers": [{"name": "web", "ports": [9090, 8080]}]}}
    hashes = {naming.pod_template_hash(t) for t in (base, other, order, swapped)}
    assert len(hashes) == 4  # list order is meaningful, dict order is not


def test_pod_template_hash_stable_value():
    assert naming.pod_template_hash({}) == naming.pod_template_hash({})
    assert _decode(naming.pod_template_hash({})) == naming._fnv32a(b"{}")


# --- ReplicaSet suffixes and Deployment pod names ---

def test_replica_suffix_shape_and_determinism():
    s = naming.replica_suffix("lab", "default", "web", "0", "0")
    assert re.fullmatch(f"[{SAFE}]{{5}}", s)
    assert s == naming.replica_suffix("lab", "default", "web", "0", "0")
    assert s != naming.replica_suffix("lab", "default", "web", "1", "0")
    assert s != naming.replica_suffix("other", "default", "web", "0", "0")


def test_deployment_pod_names():
    t = {"spec": {"containers": [{"name": "web"}]}}
    names = naming.deployment_pod_names("lab", "default", "web", t, 100)
    h = naming.pod_template_hash(t)
    assert len(names) == len(set(names)) == 100
    assert all(re.fullmatch(f"web-{h}-[{SAFE}]{{5}}", n) for n in names)
    assert names == naming.deployment_pod_names("lab", "default", "web", t, 100)
    assert naming.deployment_pod_names("lab", "default", "web", t, 0) == []


def test_deployment_pod_names_re_derive_a_colliding_suffix(monkeypatch):
    real = naming.replica_suffix

    def colliding(*parts):  # every first attempt yields the same suffix
        return "bbbbb" if parts[-1] == "0" else real(*parts)

    monkeypatch.setattr(naming, "replica_suffix", colliding)
    names = naming.deployment_pod_names("lab", "default", "web", {}, 4)
    h = naming.pod_template_hash({})
    assert names[0] == f"web-{h}-bbbbb"
    assert len(set(names)) == 4
    assert names[1:] == [f"web-{h}-{real('lab', 'default', 'web', str(i), '1')}" for i in (1, 2, 3)]


# --- netns names ---

def test_netns_names():
    assert naming.node_netns("vxlan", "worker1") == "vxlan-worker1"
    assert naming.pod_netns("vxlan", "default", "web") == "vxlan-default-web"
    assert naming.pod_netns("vxlan", "team-a", "web") != naming.pod_netns("vxlan", "team-b", "web")


def test_every_switch_gets_a_datapath_id_even_when_its_name_has_no_digit():
    """Mininet derives a dpid from the digits of a switch's name: 'ex01' hashes to knedcdaa, none."""
    assert naming.switch_name("ex01") == "knedcdaa"
    ids = {naming.dpid(naming.switch_name(lab)) for lab in ("ex01", "bugs", "scratch")}
    assert len(ids) == 3 and all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
