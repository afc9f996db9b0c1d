"""Rules that relate fields to each other, which pydantic's per-field validation cannot express.

Each rule mirrors what a real cluster (or the lab's address plan) would reject later and less
clearly: overlapping ranges, too-small subnets, duplicate names, dangling references. Every problem
becomes a Diagnostic located through `locate`, so it points at the user's file and line.
"""
from __future__ import annotations

import difflib
import re
from ipaddress import ip_address
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator
from typing import Optional

from lab.errors import Diagnostic
from lab.topology.constants import kube_dns_ip, kubernetes_service_ip
from lab.topology.ipfamily import (
    MAX_SERVICE_CIDR_BITS, MIN_SERVICE_CIDR_BITS, SERVICE_CIDR, families_of, family_of, service_families,
)
from lab.topology.kinds import (
    IPV6_NETWORKS, IPV6_PROXY_MODES, NETWORKS, builtin_cni, carries_ipv6, cni_needed, mtu_overhead, network,
    section_owner,
    serves_ipv6,
)
from lab.topology.model import (
    DNS_SUBDOMAIN, EXTERNAL_TYPES, WORKLOADS, Deployment, IgnoredObject, Namespace, NetworkPolicy, Pod, PodSpec, Service,
    StatefulSet, Topology,
)
from lab.topology import gateway, ingress
from lab.topology.refs import SYNTAX, Ref, parse_ref
from lab.topology.source import DocPath, dotted

from lab.topology.hostports import HostPort, clash
from lab.topology.images import BUILTIN_IMAGES, describe, missing_program, stand_ins

# Namespaces that exist in every cluster without a Namespace manifest.
BUILTIN_NAMESPACES = ("default", "kube-system")

Locate = Callable[[DocPath], tuple[str, Optional[int]]]

_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_RULE = "at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"


def check(topology: Topology, locate: Locate, skipped: Collection[int] = ()) -> list[Diagnostic]:
    """Every semantic problem in a validated topology.

    `skipped` lists the original indexes of manifests that failed validation and were left out:
    the paths of the rest are mapped back to them, and lookups of manifests by name are not made
    (the object looked for may be one of the skipped ones).
    """
    ctx = _Context(topology, locate, skipped)
    for rule in (_address_plan, _public, _bgp, _machines, _manifests, _pod_specs, _probes, _dns, _services, _load_balancer,
                 ingress.check, gateway.check, _policies, _labels, _checks):
        rule(ctx)
    return ctx.diagnostics


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice (same letters in another case first), or ''."""
    choices = list(choices)
    close = [c for c in choices if c.casefold() == word.casefold()] or difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Context:
    def __init__(self, topology: Topology, locate: Locate, skipped: Collection[int]):
        self.topology = topology
        self.locate = locate
        self.partial = bool(skipped)
        kept = [i for i in range(len(topology.manifests) + len(skipped)) if i not in skipped]
        self.manifests = [(("manifests", i), m) for i, m in zip(kept, topology.manifests)
                          if not isinstance(m, IgnoredObject)]
        self.diagnostics: list[Diagnostic] = []

    def error(self, path: DocPath, message: str, hint: Optional[str] = None) -> None:
        file, line = self.locate(path)
        self.diagnostics.append(Diagnostic(file, line, dotted(path), message, hint))

    def warn(self, path: DocPath, message: str, hint: Optional[str] = None) -> None:
        file, line = self.locate(path)
        self.diagnostics.append(Diagnostic(file, line, dotted(path), message, hint, "warning"))

    def unique(self, items: Iterable[tuple[Hashable, DocPath]], what: Callable[[Hashable], str],
               hint: str) -> None:
        """Report every item whose key was seen before, at the repeat, naming the first one."""
        first: dict[Hashable, DocPath] = {}
        for key, path in items:
            if key in first:
                self.error(path, f"{what(key)} is defined twice (first at {self.where(first[key], path)})", hint)
            else:
                first[key] = path

    def where(self, path: DocPath, seen_from: DocPath) -> str:
        """'line 5', or 'other.yaml:5' when `path` is in another file than `seen_from`."""
        file, line = self.locate(path)
        return f"line {line}" if file == self.locate(seen_from)[0] else f"{file}:{line}"

    def pod_specs(self) -> Iterator[tuple[DocPath, PodSpec]]:
        for path, spec, _, _ in self.pods():
            yield path, spec

    def pods(self) -> Iterator[tuple[DocPath, PodSpec, str, dict[str, str]]]:
        """Every pod spec with its namespace and its pods' labels."""
        for path, m in self.manifests:
            ns = getattr(m.metadata, "namespace", None) or "default"
            if isinstance(m, Pod):
                yield path + ("spec",), m.spec, ns, m.metadata.labels
            elif isinstance(m, WORKLOADS):
                yield path + ("spec", "template", "spec"), m.spec.template.spec, ns, m.spec.template.metadata.labels


def _public(ctx: _Context) -> None:
    """A public segment needs its NAT gateway (one, on the underlay) and the other way round."""
    t = ctx.topology
    gateways = [i for i, h in enumerate(t.hosts) if h.natGateway]
    public = [i for i, h in enumerate(t.hosts) if h.network == "public"]
    for i in gateways[1:]:
        ctx.error(("hosts", i, "natGateway"), "a second NAT gateway: the nodes have one default route",
                  f"keep natGateway on host '{t.hosts[gateways[0]].name}' only")
    for i in [*gateways, *public]:
        if t.public is None:
            ctx.error(("hosts", i), f"host '{t.hosts[i].name}' is on the public segment, and the topology has none",
                      "add `public: {subnet: 203.0.113.0/24}` (the segment behind the NAT gateway)")
    for i in gateways:
        if t.hosts[i].network == "public":
            ctx.error(("hosts", i, "network"), "the NAT gateway sits on the underlay and the public segment",
                      "remove network: public from it (it gets both)")
        why = network(t.cluster.network).nat_gateway
        if why:
            others = [name for name, n in NETWORKS.items() if not n.nat_gateway]
            ctx.error(("hosts", i, "natGateway"), f"with network: {t.cluster.network} {why}",
                      f"use {', '.join(others[:-1])} or {others[-1]} with a NAT gateway")
    if t.public is not None and not gateways:
        ctx.error(("public",), "a public segment needs a NAT gateway between it and the underlay",
                  "add a host with natGateway: true, e.g. {name: nat, natGateway: true}")
    if t.public is not None:
        for path in (("cluster", "podCIDR"), ("cluster", "serviceCIDR"), ("underlay", "subnet")):
            for other in _networks(getattr(getattr(t, path[0]), path[1])):
                if t.public.subnet.overlaps(other):
                    ctx.error(("public", "subnet"), f"public.subnet {t.public.subnet} overlaps {dotted(path)} {other}",
                              "the public segment is the outside world: give it addresses of its own (203.0.113.0/24)")


def _networks(value) -> tuple:
    """A field that holds one network or (dual-stack) a tuple of them, as a tuple."""
    return tuple(value) if isinstance(value, tuple) else (value,)


def _address_plan(ctx: _Context) -> None:
    """Pod, service and underlay ranges must be disjoint and big enough for the machines."""
    t = ctx.topology
    ranges = [("cluster", "podCIDR"), ("cluster", "serviceCIDR"), ("underlay", "subnet"), ("underlay", "subnetIPv6")]
    values = {path: _networks(getattr(getattr(t, path[0]), path[1])) for path in ranges}
    for i, a in enumerate(ranges):
        for b in ranges[i + 1:]:
            for x, y in ((x, y) for x in values[a] for y in values[b] if x.version == y.version and x.overlaps(y)):
                if t.cluster.unsafe.allowOverlap:  # built wrong on purpose (an exercise): said, not refused
                    ctx.warn(b, f"{dotted(b)} {y} overlaps {dotted(a)} {x} (allowed by "
                                "cluster.unsafe.allowOverlap): traffic for the shared addresses will go to the wrong place")
                    continue
                ctx.error(b, f"{dotted(b)} {y} overlaps {dotted(a)} {x}",
                          "pod, service and underlay addresses must not overlap; the defaults are "
                          "podCIDR 10.244.0.0/16, serviceCIDR 10.96.0.0/12, underlay subnet 172.18.0.0/24 "
                          "(IPv6: podCIDR fd00:10:244::/56, serviceCIDR fd00:10:96::/112, underlay fd00:172:18::/64)")

    nodes = len(t.nodes)
    for pod in t.cluster.podCIDR:
        _pod_range_room(ctx, pod, nodes)
    _families(ctx)
    _service_cidrs(ctx)

    subnet, hosts = t.underlay.subnet, sum(1 for h in t.hosts if h.network == "underlay" and not h.natGateway)
    room = max(subnet.num_addresses - 3, 0)  # network, broadcast, and the first address (gateway)
    if room < nodes + hosts:
        prefix = next(p for p in range(30, -1, -1) if 2 ** (32 - p) - 3 >= nodes + hosts)
        ctx.error(("underlay", "subnet"),
                  f"underlay subnet {subnet} has room for {_count(room, 'machine')}, "
                  f"the topology has {_count(nodes, 'node')} and {_count(hosts, 'host')}",
                  f"use a larger subnet, e.g. {subnet.supernet(new_prefix=prefix)}; the network, "
                  "broadcast and first address (reserved for the gateway) are not given to machines")

    mtu, overhead = t.cluster.mtu, mtu_overhead(t.cluster.network, 6 in t.cluster.families)
    if mtu is not None and overhead and mtu > t.underlay.mtu - overhead:
        ctx.error(("cluster", "mtu"),
                  f"pod MTU {mtu} does not fit the {t.cluster.network} overlay: underlay MTU {t.underlay.mtu} - {overhead} "
                  f"bytes of {t.cluster.network} headers = {t.underlay.mtu - overhead}",
                  f"use mtu {t.underlay.mtu - overhead} or less, or leave it out (the default fits); larger pod "
                  "packets would need fragmentation, which breaks TCP when ICMP frag-needed is dropped")
    elif mtu is not None and mtu > t.underlay.mtu:
        ctx.error(("cluster", "mtu"), f"pod MTU {mtu} is larger than the underlay MTU {t.underlay.mtu}",
                  f"use mtu {t.underlay.mtu} or less, or leave it out")


def _service_cidrs(ctx: _Context) -> None:
    """kube-apiserver's limit on --service-cluster-ip-range (at most 20 host bits; one range per
    family is the model's check), and the lab's: room for the kubernetes and kube-dns addresses,
    and the pods' families in the same order (the first range of each is the primary family)."""
    t, path = ctx.topology, ("cluster", "serviceCIDR")
    cidrs = t.cluster.serviceCIDR
    for net in cidrs:
        bits = net.max_prefixlen - net.prefixlen
        if bits > MAX_SERVICE_CIDR_BITS:
            ctx.error(path, f"serviceCIDR {net} is too large; for {net.max_prefixlen}-bit addresses, the mask must be "
                            f">= {net.max_prefixlen - MAX_SERVICE_CIDR_BITS} (kube-apiserver's limit)",
                      f"use a smaller range, e.g. {SERVICE_CIDR[family_of(net)]}")
        elif bits < MIN_SERVICE_CIDR_BITS:
            ctx.error(path, f"serviceCIDR {net} is too small: it holds {net.num_addresses} addresses, and the "
                            "kubernetes Service (the first) and kube-dns (the tenth) need at least 16",
                      f"use a /{net.max_prefixlen - MIN_SERVICE_CIDR_BITS} or larger, e.g. {SERVICE_CIDR[family_of(net)]}")
    pods = families_of(t.cluster.podCIDR)
    services = tuple(family_of(n) for n in cidrs)
    if pods and services != pods and len(set(services)) == len(services):
        order = "the same families in another order" if set(services) == set(pods) else "other families"
        ctx.error(path, f"serviceCIDR is {' and '.join(services)} but podCIDR is {' and '.join(pods)}: {order}",
                  "the first range of each decides the cluster's primary family: give podCIDR and serviceCIDR the same "
                  f"families in the same order, e.g. serviceCIDR: {','.join(SERVICE_CIDR[f] for f in pods)}")


def _pod_range_room(ctx: _Context, pod, nodes: int) -> None:
    """One node subnet per node, of the family's mask (nodeCIDRMaskSize, or ...IPv6)."""
    field = "nodeCIDRMaskSize" if pod.version == 4 else "nodeCIDRMaskSizeIPv6"
    mask, width = ctx.topology.cluster.node_mask(pod.version), pod.max_prefixlen
    if pod.prefixlen > mask:
        ctx.error(("cluster", "podCIDR"),
                  f"podCIDR {pod} is smaller than one node's pod subnet ({field} {mask})",
                  f"use a podCIDR of /{mask} or larger, or a {field} of at least {pod.prefixlen}")
    elif 2 ** (mask - pod.prefixlen) < nodes:
        room, bits = 2 ** (mask - pod.prefixlen), (nodes - 1).bit_length()
        larger = [f"podCIDR {pod.supernet(new_prefix=mask - bits)}"] if bits <= mask else []
        larger += [f"{field} {pod.prefixlen + bits}"] if pod.prefixlen + bits <= width - 2 else []
        ctx.error(("cluster", "podCIDR"),
                  f"podCIDR {pod} with {field} {mask} has room for {_count(room, 'node')}, "
                  f"the topology has {nodes}",
                  f"use a larger podCIDR or a larger {field}, e.g. " + " or ".join(larger))
    elif pod.version == 6 and mask - pod.prefixlen > 16:  # kube-controller-manager's own limit
        ctx.error(("cluster", "nodeCIDRMaskSizeIPv6"),
                  f"nodeCIDRMaskSizeIPv6 {mask} is more than 16 bits longer than podCIDR {pod}",
                  f"kube-controller-manager refuses that; use a podCIDR of /{mask - 16} or longer (kind: "
                  "fd00:10:244::/56 with /64 per node)")


def _families(ctx: _Context) -> None:
    """What cannot carry IPv6 says so, instead of failing at `lab up`."""
    t = ctx.topology
    if 6 not in t.cluster.families:
        return
    what = "an IPv6-only" if t.cluster.families == (6,) else "a dual-stack"
    if not carries_ipv6(t.cluster.network):
        ctx.error(("cluster", "network"), f"network {t.cluster.network} cannot carry IPv6 pods ({what} podCIDR "
                  f"{', '.join(str(c) for c in t.cluster.podCIDR)})",
                  f"use one of {', '.join(IPV6_NETWORKS)} for IPv6, or an IPv4 podCIDR only with "
                  f"{t.cluster.network}")
    if not builtin_cni(t.cluster.cni):
        ctx.error(("cluster", "cni"), f"a CNI plugin of one's own ({t.cluster.cni}) gets one IPv4 range from the lab: "
                  f"it cannot be {what} cluster's", "use cni: bridge or ptp for IPv6, or an IPv4 podCIDR only")
    if not serves_ipv6(t.cluster.proxy):
        ctx.error(("cluster", "proxy"), f"proxy {t.cluster.proxy} hooks IPv4 sockets only (connect4, sendmsg4): it "
                  f"cannot serve {what} cluster", f"use proxy: {' or '.join(IPV6_PROXY_MODES)}")
    v4, v6 = t.underlay.subnet, t.underlay.subnetIPv6
    if v6.prefixlen > 128 - (32 - v4.prefixlen):
        ctx.error(("underlay", "subnetIPv6"), f"underlay subnetIPv6 {v6} is smaller than the IPv4 subnet {v4}: each "
                  "machine's IPv6 address is the IPv6 prefix with its IPv4 host part",
                  f"use a /{128 - (32 - v4.prefixlen)} or larger, e.g. the default fd00:172:18::/64")
    if t.public is not None:
        ctx.error(("public",), f"the public segment and its NAT gateway are IPv4 only: not for {what} cluster",
                  "remove public: and the natGateway host, or use an IPv4 podCIDR only")


def _bgp(ctx: _Context) -> None:
    t = ctx.topology
    machines = [n.name for n in t.nodes] + [h.name for h in t.hosts]
    for i, rr in enumerate(t.cluster.bgp.routeReflectors):
        if rr not in machines:
            ctx.error(("cluster", "bgp", "routeReflectors", i), f"route reflector '{rr}' is neither a node nor a host",
                      f"name one of: {', '.join(machines)}" + did_you_mean(rr, machines))
    kind = network(t.cluster.network)
    if kind.switch and t.underlay.switch != kind.switch:
        ctx.error(("cluster", "network"), f"network {t.cluster.network} needs {kind.needs}",
                  f"set underlay: {{switch: {kind.switch}}}")
    if need := cni_needed(t.cluster.network, t.cluster.cni):
        ctx.error(("cluster", "cni"), f"network {t.cluster.network} {kind.cni_why}, cni {t.cluster.cni} does not",
                  f"set cluster.cni: {need}")
    tor = t.cluster.bgp.topOfRack
    if tor and tor not in [h.name for h in t.hosts]:
        ctx.error(("cluster", "bgp", "topOfRack"), f"top-of-rack router '{tor}' is not a plain host",
                  "name one of the topology's hosts" + did_you_mean(tor, [h.name for h in t.hosts]))
    if tor and t.cluster.bgp.routeReflectors:
        ctx.error(("cluster", "bgp", "topOfRack"), "topOfRack (eBGP) and routeReflectors (iBGP) exclude each other",
                  "keep one of them")
    owner = section_owner("bgp")
    if (t.cluster.bgp.routeReflectors or tor) and network(t.cluster.network).section != "bgp":
        ctx.error(("cluster", "bgp"), f"cluster.bgp only applies to network: {owner}",
                  f"set network: {owner}, or remove cluster.bgp")


def _machines(ctx: _Context) -> None:
    """Node and host names become hostnames and network namespaces: they must be unique."""
    t = ctx.topology
    ctx.unique(((n.name, ("nodes", i, "name")) for i, n in enumerate(t.nodes)),
               lambda name: f"node '{name}'", "rename one of the nodes")
    ctx.unique(((h.name, ("hosts", i, "name")) for i, h in enumerate(t.hosts)),
               lambda name: f"host '{name}'", "rename one of the hosts")
    nodes: dict[str, DocPath] = {}
    for i, n in enumerate(t.nodes):
        nodes.setdefault(n.name, ("nodes", i, "name"))
    for i, h in enumerate(t.hosts):
        if h.name in nodes:
            path = ("hosts", i, "name")
            ctx.error(path, f"host '{h.name}' has the same name as a node (at {ctx.where(nodes[h.name], path)})",
                      "nodes and hosts share one set of names; rename the host")


def _manifests(ctx: _Context) -> None:
    """Unique object names per kind and namespace, existing namespaces, matching selectors."""
    namespaces = [(m.metadata.name, path + ("metadata", "name")) for path, m in ctx.manifests
                  if isinstance(m, Namespace)]
    ctx.unique(namespaces, lambda name: f"Namespace '{name}'", "remove one of the Namespace manifests")
    for kind in (Pod, *WORKLOADS, Service, NetworkPolicy):
        ctx.unique((((m.metadata.namespace or "default", m.metadata.name), path + ("metadata", "name"))
                    for path, m in ctx.manifests if isinstance(m, kind)),
                   lambda key, kind=kind: f"{kind.__name__} '{key[1]}' in namespace '{key[0]}'",
                   f"{kind.__name__} names must be unique within a namespace; rename one")

    known = set(BUILTIN_NAMESPACES) | {name for name, _ in namespaces}
    for path, m in ctx.manifests:
        if isinstance(m, Namespace):
            continue
        ns = m.metadata.namespace or "default"
        if ns not in known and not ctx.partial:
            ctx.error(path + ("metadata", "namespace"),
                      f"namespace '{ns}' does not exist (Kubernetes: namespaces \"{ns}\" not found)",
                      f"add a Namespace manifest: {{apiVersion: v1, kind: Namespace, metadata: {{name: {ns}}}}}"
                      + did_you_mean(ns, known))
        if isinstance(m, WORKLOADS):
            _selector(ctx, path + ("spec",), m)
        if isinstance(m, StatefulSet) and m.spec.serviceName:
            _governing_service(ctx, path + ("spec", "serviceName"), ns, m.spec.serviceName)


def _governing_service(ctx: _Context, path: DocPath, namespace: str, name: str) -> None:
    """A StatefulSet's pods get DNS names (<pod>.<serviceName>...) only from a headless Service."""
    svc = next((m for _, m in ctx.manifests if isinstance(m, Service) and m.metadata.name == name
                and (m.metadata.namespace or "default") == namespace), None)
    if svc is None and not ctx.partial:
        ctx.warn(path, f"serviceName '{name}': there is no Service '{name}' in namespace '{namespace}', so the "
                       "pods get no DNS names of their own", f"add a headless Service '{name}' (clusterIP: None) "
                                                             "selecting the pods")
    elif svc is not None and svc.spec.clusterIP != "None":
        ctx.warn(path, f"serviceName '{name}' is not a headless Service, so the pods get no DNS names of their own",
                 f"set clusterIP: None on Service '{name}' (and expose the pods with another Service)")


def _selector(ctx: _Context, spec: DocPath, workload) -> None:
    selector = workload.spec.selector.matchLabels
    template = workload.spec.template.metadata.labels
    if not selector:
        ctx.error(spec + ("selector", "matchLabels"), "selector.matchLabels must not be empty "
                  f"(Kubernetes: empty selector is invalid for {workload.kind.lower()})",
                  "select the template's pods by a label, e.g. selector: {matchLabels: {app: web}} "
                  "and template: {metadata: {labels: {app: web}}}")
    for key, value in selector.items():
        if template.get(key) != value:
            found = f"has {key}={template[key]}" if key in template else f"has no label '{key}'"
            ctx.error(spec + ("selector", "matchLabels", key),
                      f"selector does not match template labels: selector wants {key}={value}, the template {found}",
                      f"add '{key}: {value}' to spec.template.metadata.labels")


def _pod_specs(ctx: _Context) -> None:
    """Per pod: unique containers and ports (one network namespace), known node, runnable images."""
    nodes = list(dict.fromkeys(n.name for n in ctx.topology.nodes))
    for spec_path, spec in ctx.pod_specs():
        containers = [(spec_path + ("containers", j), c) for j, c in enumerate(spec.containers)]
        ports = [(path + ("ports", k), p) for path, c in containers for k, p in enumerate(c.ports)]
        ctx.unique(((c.name, path + ("name",)) for path, c in containers),
                   lambda name: f"container '{name}'", "container names must be unique within a pod")
        ctx.unique(((p.name, path + ("name",)) for path, p in ports if p.name),
                   lambda name: f"port name '{name}'", "port names must be unique within a pod")
        ctx.unique((((p.containerPort, p.protocol), path + ("containerPort",)) for path, p in ports),
                   lambda key: f"containerPort {key[0]}/{key[1]}",
                   "the containers of a pod share one network namespace: each port can be used once")
        if spec.nodeName is not None and spec.nodeName not in nodes:
            ctx.error(spec_path + ("nodeName",), f"nodeName '{spec.nodeName}' is not a node of this topology",
                      f"nodes: {', '.join(nodes)}" + did_you_mean(spec.nodeName, nodes))
        for path, p in ports:
            if p.hostPort and spec.hostNetwork and p.hostPort != p.containerPort:
                ctx.error(path + ("hostPort",), f"hostPort {p.hostPort} differs from containerPort {p.containerPort} in a "
                          "hostNetwork pod (Kubernetes: must match containerPort)", "a hostNetwork pod uses the node's "
                          "ports directly: drop hostPort or make it equal")
    _host_port_clashes(ctx)
    services = [m for _, m in ctx.manifests if isinstance(m, Service)]
    for spec_path, spec, ns, labels in ctx.pods():
        served = stand_ins(spec, ns, labels, services)
        for j, c in enumerate(spec.containers):
            path = spec_path + ("containers", j)
            if c.image == "netexec" and c.command:
                ctx.error(path + ("command",), "a netexec container takes no command",
                          "remove `command:`; netexec serves the container's containerPorts by itself")
            elif c.image == "netexec" and not c.ports:
                ctx.error(path + ("image",), "a netexec container needs a port to serve",
                          "add ports: [{containerPort: 8080}], or use image: pause for a pod that only needs to exist")
            elif j in served:
                missing = missing_program(c)
                what = f"image '{c.image}' is not built in" + (
                    f" and its command '{missing}' is not a program on this machine" if missing else "")
                if served[j]:
                    ctx.warn(path + ("image",), f"{what}: it runs as netexec serving {describe(served[j])}",
                             "netexec answers HTTP with 200 on any path, gRPC health checks with SERVING, and echoes "
                             f"raw TCP and UDP; built-in images: {', '.join(BUILTIN_IMAGES)}; "
                             "or give the container a `command:` to run a host program")
                else:
                    ctx.warn(path + ("image",), f"{what} and has no port to serve (no containerPort, no Service "
                             "selecting it): it runs as pause",
                             "declare its containerPorts, or give the container a `command:` to run a host program")


def _host_port_clashes(ctx: _Context) -> None:
    """Pods pinned to one node (nodeName) that ask for the same hostPort: the scheduler would not put
    the second there, so the lab refuses it here, with both places."""
    taken: dict[str, list[tuple[HostPort, DocPath]]] = {}
    for spec_path, spec in ctx.pod_specs():
        if spec.nodeName is None:
            continue  # the scheduler places it where its hostPorts are free (or says none is)
        for j, c in enumerate(spec.containers):
            for k, p in enumerate(c.ports):
                if not p.hostPort:
                    continue
                mine, path = (p.hostPort, p.protocol, str(p.hostIP or "")), spec_path + ("containers", j, "ports", k, "hostPort")
                first = next((at for q, at in taken.get(spec.nodeName, []) if clash(mine, q)), None)
                if first is not None:
                    ctx.error(path, f"hostPort {p.hostPort}/{p.protocol} on node {spec.nodeName} is already taken "
                              f"(at {ctx.where(first, path)}): the node has one port {p.hostPort}, as a Docker host "
                              f"has one -p {p.hostPort}", "pick another hostPort or node; or give each pod its own IP's "
                              "port and reach them through a Service (what IP-per-pod is for)")
                taken.setdefault(spec.nodeName, []).append((mine, path))


def _labels(ctx: _Context) -> None:
    """Label keys and values as Kubernetes validates them, wherever labels are written."""
    places: list[tuple[DocPath, dict[str, str]]] = [
        (("nodes", i, "labels"), n.labels) for i, n in enumerate(ctx.topology.nodes)]
    for path, m in ctx.manifests:
        places.append((path + ("metadata", "labels"), m.metadata.labels))
        if isinstance(m, WORKLOADS):
            places.append((path + ("spec", "template", "metadata", "labels"), m.spec.template.metadata.labels))
            places.append((path + ("spec", "selector", "matchLabels"), m.spec.selector.matchLabels))
    for path, labels in places:
        for key, value in labels.items():
            problem = _label_key_problem(key)
            if problem:
                ctx.error(path + (key,), f"label key '{key}' is invalid: {problem}",
                          "label keys are [prefix/]name, e.g. app or example.com/tier")
            if len(value) > 63 or (value and not _LABEL_NAME.fullmatch(value)):
                ctx.error(path + (key,), f"label value '{value}' of '{key}' is invalid",
                          f"label values are empty or {_LABEL_RULE}")


def _probes(ctx: _Context) -> None:
    """A readinessProbe has exactly one handler, and a named port must be one of its container's."""
    for spec_path, spec in ctx.pod_specs():
        for j, c in enumerate(spec.containers):
            probe, path = c.readinessProbe, spec_path + ("containers", j, "readinessProbe")
            if probe is None:
                continue
            handlers = [h for h in ("httpGet", "tcpSocket", "grpc", "exec") if getattr(probe, h) is not None]
            if len(handlers) != 1:
                ctx.error(path, f"a probe needs exactly one handler, found {len(handlers)}"
                          + (f" ({', '.join(handlers)})" if handlers else ""),
                          "use one of httpGet: {path: /healthz, port: 8080}, tcpSocket: {port: 8080}, "
                          "exec: {command: [cat, /tmp/ready]}")
                continue
            port = getattr(getattr(probe, handlers[0]), "port", None)
            names = [p.name for p in c.ports if p.name]
            if isinstance(port, str) and port not in names:
                ctx.error(path + (handlers[0], "port"), f"port '{port}' is not a named port of container '{c.name}'",
                          f"name one of its ports ({', '.join(names) or 'it has none'}) or give a number"
                          + did_you_mean(port, names))


def _dns(ctx: _Context) -> None:
    """dnsPolicy as the API validates it, and what this lab can honour."""
    for spec_path, spec in ctx.pod_specs():
        if spec.dnsPolicy == "None" and not (spec.dnsConfig and spec.dnsConfig.nameservers):
            ctx.error(spec_path + ("dnsPolicy",), "dnsPolicy None needs dnsConfig.nameservers",
                      "add dnsConfig: {nameservers: [10.96.0.10]} or use dnsPolicy ClusterFirst")
        for path, value, limit, what in ((("dnsConfig", "nameservers"), spec.dnsConfig and spec.dnsConfig.nameservers, 3,
                                          "nameservers"),
                                         (("dnsConfig", "searches"), spec.dnsConfig and spec.dnsConfig.searches, 32,
                                          "search domains")):
            if value and len(value) > limit:
                ctx.error(spec_path + path, f"at most {limit} {what} (Kubernetes' limit), found {len(value)}",
                          f"keep {limit} or fewer")
        if (spec.hostname or spec.subdomain) and not ctx.topology.cluster.dns.enabled:
            ctx.error(spec_path + ("hostname" if spec.hostname else "subdomain",),
                      "hostname/subdomain only mean something with cluster DNS",
                      "set cluster.dns.enabled: true, or remove them")


def _services(ctx: _Context) -> None:
    """ClusterIPs inside the service CIDR of their family and unique, IP families as the API server
    defaults and checks them, NodePorts unique, port names as the API wants."""
    cidrs = {family_of(c): c for c in ctx.topology.cluster.serviceCIDR}
    reserved = {ip: who for c in cidrs.values()
                for ip, who in ((kubernetes_service_ip(c), "the `kubernetes` Service"), (kube_dns_ip(c), "kube-dns"))}
    ips: list[tuple[str, DocPath]] = []
    node_ports: list[tuple[tuple[str, int], DocPath]] = []
    for path, m in ctx.manifests:
        if not isinstance(m, Service):
            continue
        spec, sp = m.spec, path + ("spec",)
        who = f"Service {m.metadata.namespace or 'default'}/{m.metadata.name}"
        resolved, problems = service_families(
            type=spec.type, cluster_ip=spec.clusterIP, cluster_ips=spec.clusterIPs, ip_families=spec.ipFamilies,
            policy=spec.ipFamilyPolicy, has_selector=bool(spec.selector), cluster=tuple(cidrs))
        for where, what, hint in problems:
            ctx.error(sp + where, f"{who}: {what}", hint)
        if spec.type == "ExternalName":
            if not spec.externalName:
                ctx.error(sp + ("type",), "a Service of type ExternalName needs externalName",
                          "add externalName: the DNS name this Service is an alias for")
            if not ctx.topology.cluster.dns.enabled:
                ctx.error(sp + ("type",), "an ExternalName Service is a DNS record: it needs cluster DNS",
                          "set cluster.dns.enabled: true")
            continue
        if spec.externalName:
            ctx.error(sp + ("externalName",), "externalName is only for type ExternalName",
                      "set type: ExternalName, or remove externalName")
        if not spec.ports:
            ctx.error(sp + ("ports",), f"{who} needs at least one port", "add ports: [{port: 80}]")
        field = "clusterIPs" if spec.clusterIPs else "clusterIP"
        for i, requested in enumerate(() if problems else resolved.requested):
            if requested in ("", "None"):
                continue
            where = sp + ((field, i) if field == "clusterIPs" else (field,))
            ip, cidr = ip_address(requested), cidrs[resolved.families[i]]
            if ip not in cidr or ip in (cidr.network_address, cidr.broadcast_address):
                ctx.error(where, f"clusterIP '{requested}' is not a usable address of serviceCIDR {cidr}",
                          "give an address inside cluster.serviceCIDR, \"None\" for a headless Service, or leave it out")
            elif ip in reserved:
                ctx.error(where, f"clusterIP {ip} is reserved for {reserved[ip]}",
                          "pick another address, or leave clusterIP out to have one allocated")
            else:
                ips.append((str(ip), where))
        for i, ip in enumerate(spec.externalIPs):
            if family_of(ip) not in (() if problems else resolved.families):
                ctx.warn(sp + ("externalIPs", i), f"externalIP {ip} is {family_of(ip)} and {who} is "
                                                  f"{' and '.join(resolved.families) or 'of no family'}: "
                                                  "kube-proxy serves it with no rules (as upstream)",
                         f"add {family_of(ip)} to ipFamilies (ipFamilyPolicy: PreferDualStack), or remove it")
        if spec.clusterIP == "None" and spec.type in EXTERNAL_TYPES:
            ctx.error(sp + ("clusterIP",), f"a headless Service (clusterIP: None) cannot be of type {spec.type}",
                      "use type ClusterIP, or drop clusterIP: None")
        if spec.type not in EXTERNAL_TYPES and spec.externalTrafficPolicy != "Cluster":
            ctx.error(sp + ("externalTrafficPolicy",),
                      "externalTrafficPolicy applies to NodePort and LoadBalancer Services only",
                      "set type: NodePort, or remove externalTrafficPolicy")
        if spec.sessionAffinityConfig is not None and spec.sessionAffinity != "ClientIP":
            ctx.error(sp + ("sessionAffinityConfig",), "sessionAffinityConfig needs sessionAffinity: ClientIP",
                      "add sessionAffinity: ClientIP, or remove sessionAffinityConfig")
        ports = [(sp + ("ports", k), p) for k, p in enumerate(spec.ports)]
        if len(ports) > 1:
            for pp, p in ports:
                if not p.name:
                    ctx.error(pp, f"{who} has {len(ports)} ports: each needs a name",
                              "add name: to every port, e.g. name: http")
        ctx.unique(((p.name, pp + ("name",)) for pp, p in ports if p.name),
                   lambda name: f"port name '{name}'", "port names must be unique within a Service")
        ctx.unique((((p.port, p.protocol), pp + ("port",)) for pp, p in ports),
                   lambda key: f"port {key[0]}/{key[1]}", "a port and protocol may appear once per Service")
        for pp, p in ports:
            if p.nodePort is not None:
                if spec.type not in EXTERNAL_TYPES:
                    ctx.error(pp + ("nodePort",), "nodePort is only for types NodePort and LoadBalancer",
                              "set type: NodePort, or remove nodePort")
                else:
                    node_ports.append(((p.protocol, p.nodePort), pp + ("nodePort",)))
    ctx.unique(ips, lambda ip: f"clusterIP {ip}", "every Service needs its own ClusterIP")
    ctx.unique(node_ports, lambda key: f"nodePort {key[1]}/{key[0]}",
               "every NodePort may belong to one Service only; change one or leave it out to have one allocated")


def _load_balancer(ctx: _Context) -> None:
    """Pools inside the underlay subnet, clear of the machines' addresses; the Service fields that
    only a LoadBalancer has, and loadBalancerIP inside a pool (MetalLB refuses the others)."""
    t, lb = ctx.topology, ctx.topology.cluster.loadBalancer
    subnet = t.underlay.subnet
    # the underlay's network, gateway (.1), nodes and hosts (ipam.underlay_addresses), broadcast
    machines = {subnet.network_address + i for i in range(2 + len(t.nodes) + len(t.hosts))} | {subnet.broadcast_address}
    for i, pool in enumerate(lb.addresses if lb else ()):
        path = ("cluster", "loadBalancer", "addresses", i)
        if not pool.subnet_of(subnet):
            ctx.error(path, f"load-balancer pool {pool} is not inside the underlay subnet {subnet}",
                      "MetalLB's L2 mode answers ARP on the nodes' own network: pick addresses of "
                      f"{subnet} that no machine uses, e.g. {_tail_pool(subnet)}")
        elif clash := sorted(ip for ip in machines if ip in pool):
            ctx.error(path, f"load-balancer pool {pool} holds {clash[0]}, which the underlay's network, gateway, "
                            "a node, a host or the broadcast address uses",
                      f"the machines take {subnet.network_address + 1}-{subnet.network_address + len(machines) - 1}; "
                      f"use addresses after them, e.g. {_tail_pool(subnet)}")
    ctx.unique(((p, ("cluster", "loadBalancer", "addresses", i)) for i, p in enumerate(lb.addresses if lb else ())),
               lambda p: f"load-balancer pool {p}", "list each pool once")
    wanted: list[tuple[str, DocPath]] = []
    for path, m in ctx.manifests:
        if not isinstance(m, Service):
            continue
        spec, sp = m.spec, path + ("spec",)
        lb_only = {"loadBalancerIP": spec.loadBalancerIP, "loadBalancerSourceRanges": spec.loadBalancerSourceRanges,
                   "loadBalancerClass": spec.loadBalancerClass,
                   "allocateLoadBalancerNodePorts": not spec.allocateLoadBalancerNodePorts}
        for name, value in lb_only.items():
            if value and spec.type != "LoadBalancer":
                ctx.error(sp + (name,), f"{name} is only for type LoadBalancer", f"set type: LoadBalancer, or remove {name}")
        if spec.type == "ExternalName" and spec.externalIPs:
            ctx.error(sp + ("externalIPs",), "an ExternalName Service has no externalIPs", "remove externalIPs")
        if spec.type != "LoadBalancer" or spec.loadBalancerClass:
            continue
        if lb is None and (spec.loadBalancerIP or spec.loadBalancerSourceRanges):
            ctx.warn(sp, "the topology has no cluster.loadBalancer: this Service stays <pending> (a NodePort "
                         "Service) and its loadBalancer fields have no effect",
                     "add cluster.loadBalancer: {mode: l2, addresses: [...]} to give it an address")
        elif lb is not None and spec.loadBalancerIP:
            if not any(spec.loadBalancerIP in p for p in lb.addresses):
                ctx.error(sp + ("loadBalancerIP",), f"loadBalancerIP {spec.loadBalancerIP} is in no load-balancer pool "
                                                    f"({', '.join(map(str, lb.addresses))})",
                          "ask for an address of cluster.loadBalancer.addresses, or leave loadBalancerIP out")
            wanted.append((str(spec.loadBalancerIP), sp + ("loadBalancerIP",)))
    ctx.unique(wanted, lambda ip: f"loadBalancerIP {ip}", "two Services cannot share one load-balancer address")


def _tail_pool(subnet) -> str:
    """A /28 near the end of the subnet, clear of the broadcast address (the machines take its beginning)."""
    return f"{subnet.broadcast_address - 31}/28" if subnet.prefixlen <= 27 else f"{subnet.broadcast_address - 1}/32"


def _policies(ctx: _Context) -> None:
    """What the API server validates in a NetworkPolicy, and SCTP (the lab's probes speak TCP and UDP)."""
    for path, m in ctx.manifests:
        if not isinstance(m, NetworkPolicy):
            continue
        sp = path + ("spec",)
        for direction, field, rules in (("ingress", "from", m.spec.ingress), ("egress", "to", m.spec.egress)):
            for i, rule in enumerate(rules):
                rp = sp + (direction, i)
                for j, peer in enumerate(rule.from_ if direction == "ingress" else rule.to):
                    pp = rp + (field, j)
                    if peer.ipBlock and (peer.podSelector or peer.namespaceSelector):
                        ctx.error(pp, "a peer is either an ipBlock or selectors, not both",
                                  "split it into two peers of the same rule (they are ORed)")
                    elif not (peer.ipBlock or peer.podSelector or peer.namespaceSelector):
                        ctx.error(pp, "an empty peer selects nothing the API accepts",
                                  "give podSelector: {}, namespaceSelector: {} or an ipBlock")
                    if peer.ipBlock:
                        for k, ex in enumerate(peer.ipBlock.except_):
                            if ex.version != peer.ipBlock.cidr.version or not ex.subnet_of(peer.ipBlock.cidr):
                                ctx.error(pp + ("ipBlock", "except", k), f"except {ex} is not inside cidr {peer.ipBlock.cidr}",
                                          "list only ranges inside the cidr")
                for k, port in enumerate(rule.ports):
                    pt = rp + ("ports", k)
                    if port.protocol == "SCTP":
                        ctx.error(pt + ("protocol",), "SCTP is not supported in this lab (its probes speak TCP and UDP)",
                                  "use TCP or UDP")
                    if port.endPort is not None and not isinstance(port.port, int):
                        ctx.error(pt + ("endPort",), "endPort needs a numeric port", "give port: a number, or drop endPort")
                    elif port.endPort is not None and port.endPort < port.port:
                        ctx.error(pt + ("endPort",), f"endPort {port.endPort} is below port {port.port}",
                                  "endPort must be at least port")


def _label_key_problem(key: str) -> Optional[str]:
    prefix, slash, name = key.rpartition("/")
    if slash and (len(prefix) > 253 or not re.fullmatch(DNS_SUBDOMAIN, prefix)):
        return (f"the prefix '{prefix}' must be a DNS subdomain (lowercase letters, digits, '-' and '.', "
                "at most 253 characters)")
    if len(name) > 63 or not _LABEL_NAME.fullmatch(name):
        return f"the name '{name}' must be {_LABEL_RULE}"
    return None


def _checks(ctx: _Context) -> None:
    """`from` and `to` must parse and name objects of this topology."""
    t = ctx.topology
    known: dict[str, set[str]] = {
        "node": {f"node/{n.name}" for n in t.nodes},
        "host": {f"host/{h.name}" for h in t.hosts},
        "pod": {str(Ref(m.metadata.namespace or "default", "pod", m.metadata.name))
                for _, m in ctx.manifests if isinstance(m, Pod)},
        "deploy": {str(Ref(m.metadata.namespace or "default", "deploy", m.metadata.name))
                   for _, m in ctx.manifests if isinstance(m, Deployment)},
        "svc": {str(Ref(m.metadata.namespace or "default", "svc", m.metadata.name))
                for _, m in ctx.manifests if isinstance(m, Service)},
    }
    for i, spec in enumerate(t.checks):
        for field, text in (("from", spec.from_), ("to", spec.to)):
            path = ("checks", i, field)
            try:
                ref = parse_ref(text)
            except ValueError as e:
                ctx.error(path, str(e), None if SYNTAX in str(e) else f"write endpoints as {SYNTAX}")
                continue
            target = str(Ref(ref.namespace, ref.kind, ref.name))
            if target in known[ref.kind] or (ctx.partial and ref.kind in ("pod", "deploy", "svc")):
                continue
            where = f" in namespace '{ref.namespace}'" if ref.kind in ("pod", "deploy", "svc") else ""
            names = sorted(known[ref.kind])
            noun = {"deploy": "deployment", "svc": "service"}.get(ref.kind, ref.kind)
            ctx.error(path, f"'{text}': there is no {noun} '{ref.name}'{where}",
                      (f"known: {', '.join(names)}" if names else f"the topology has no {noun}s")
                      + did_you_mean(target, names))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
