"""The controllers, run once: Topology in, ClusterState out. Pure: no processes, no kernel."""
from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Optional

from lab.controlplane import addons, envvars, gateway, ingress, ipam, loadbalancer, naming, services
from lab.controlplane.scheduler import schedule
from lab.controlplane.state import (
    CheckState, ClusterState, ContainerState, HostState, NodeState, PeerState, PodState, PolicyPortState, PolicyState,
    PortState, ReadinessState, RuleState, SelectorState, ServicePortState, ServiceState,
)
from lab import routing
from lab.errors import LabError
from lab.topology import images, ipfamily
from lab.topology.ipfamily import family_of
from lab.topology.hostports import host_ports
from lab.topology.model import (
    EXTERNAL_TYPES, WORKLOADS, Container, DaemonSet, Deployment, Namespace, NetworkPolicy, Pod, PodSpec, Service,
    SessionAffinityConfig, StatefulSet, Topology,
)


@dataclass(frozen=True)
class _PodIntent:
    namespace: str
    name: str
    labels: dict
    spec: PodSpec
    owner: Optional[str]
    addon: bool = False  # installed by the lab (lab.controlplane.addons), not written by the user


def _readiness(c: Container) -> Optional[ReadinessState]:
    probe = c.readinessProbe
    if probe is None:
        return None
    timing = dict(initial_delay=probe.initialDelaySeconds, period=probe.periodSeconds, timeout=probe.timeoutSeconds,
                  success_threshold=probe.successThreshold, failure_threshold=probe.failureThreshold)
    if probe.exec is not None:
        grpc = images.grpc_health_probe(c)
        if grpc is not None:  # the image's grpc_health_probe, played by the stand-in's gRPC health service
            return ReadinessState(kind="grpc", port=grpc[0], service=grpc[1], **timing)
        return ReadinessState(kind="exec", command=tuple(probe.exec.command), **timing)
    handler = probe.httpGet or probe.tcpSocket or probe.grpc
    port = handler.port
    if isinstance(port, str):  # a named port of this container (semantics checked it exists)
        port = next(p.containerPort for p in c.ports if p.name == port)
    if probe.httpGet is not None:
        return ReadinessState(kind="http", port=port, path=probe.httpGet.path, **timing)
    if probe.grpc is not None:
        return ReadinessState(kind="grpc", port=port, service=probe.grpc.service or "", **timing)
    return ReadinessState(kind="tcp", port=port, **timing)


def _container(c: Container, served: Optional[images.Served] = None) -> ContainerState:
    """served: the ports of a container whose image is not built in (lab.topology.images): it
    runs as netexec serving them, or as pause when there are none."""
    argv = tuple((c.command or []) + (c.args or [])) if c.image not in ("netexec", "pause") else tuple(c.args or ())
    mapped = {(p.containerPort, p.protocol): (p.hostPort or 0, str(p.hostIP or "")) for p in c.ports}
    ports = tuple(PortState(p.containerPort, p.protocol, p.name, *mapped[(p.containerPort, p.protocol)]) for p in c.ports)
    image, stand_in_for = c.image, ""
    if served is not None:
        stand_in_for = c.image
        image, argv = ("netexec" if served else "pause"), ()
        ports = tuple(PortState(port, protocol, name, *mapped.get((port, protocol), (0, ""))) for port, protocol, name in served)
    return ContainerState(
        name=c.name,
        image=image,
        argv=argv,
        ports=ports,
        env=tuple((e.name, e.value) for e in c.env),
        readiness=_readiness(c),
        stand_in_for=stand_in_for,
    )


def _containers(intent: _PodIntent, services: list[Service]) -> tuple[ContainerState, ...]:
    served = {} if intent.addon else images.stand_ins(intent.spec, intent.namespace, intent.labels, services)
    return tuple(_container(c, served.get(j)) for j, c in enumerate(intent.spec.containers))


def _services(topo: Topology, previous: Optional[ClusterState]) -> tuple[ServiceState, ...]:
    svcs = [(m.metadata.namespace or "default", m) for m in [*topo.manifests, *_addons(topo)] if isinstance(m, Service)]
    svcs_ip = [(ns, m) for ns, m in svcs if m.spec.type != "ExternalName"]
    before = previous.services if previous else ()
    cidrs = {family_of(c): c for c in topo.cluster.serviceCIDR}
    fams = {f"{ns}/{m.metadata.name}": _families(m, tuple(cidrs)) for ns, m in svcs}
    with_ip = {f"{ns}/{m.metadata.name}" for ns, m in svcs_ip}
    ips: dict[str, dict[str, Optional[str]]] = {}   # family -> Service -> its ClusterIP of that family
    for family, cidr in cidrs.items():   # the API server's allocator per family (--service-cluster-ip-range)
        wanted = [(key, "None" if f.requested == ("None",) else f.requested[f.families.index(family)] or None)
                  for key, f in fams.items() if family in f.families and key in with_ip]
        ips[family] = services.cluster_ips(cidr, wanted, previous={s.key: s.cluster_ip_of(family) for s in before})
    ports = services.node_ports(
        ((f"{ns}/{m.metadata.name}:{p.name or ''}", p.protocol, p.nodePort)
         for ns, m in svcs if m.spec.type in EXTERNAL_TYPES for p in m.spec.ports
         if p.nodePort or m.spec.allocateLoadBalancerNodePorts or m.spec.type == "NodePort"),
        previous={f"{s.key}:{p.name}": p.node_port for s in before for p in s.ports if p.node_port},
    )
    pools = topo.cluster.loadBalancer.addresses if topo.cluster.loadBalancer else ()
    lb_ips = loadbalancer.allocate(pools, ((f"{ns}/{m.metadata.name}", m.spec.loadBalancerIP and str(m.spec.loadBalancerIP))
                                           for ns, m in svcs if m.spec.type == "LoadBalancer"
                                           and loadbalancer.ours(m.spec.loadBalancerClass)),
                                   previous={s.key: s.load_balancer_ip for s in before if s.load_balancer_ip})
    out = []
    for ns, m in svcs:
        key, spec = f"{ns}/{m.metadata.name}", m.spec
        cluster_ips = tuple(ip for ip in (ips.get(f, {}).get(key) for f in fams[key].families) if ip)
        out.append(ServiceState(
            namespace=ns, name=m.metadata.name, type=spec.type, cluster_ip=cluster_ips[0] if cluster_ips else None,
            cluster_ips=cluster_ips, ip_families=fams[key].families, ip_family_policy=fams[key].policy,
            external_name=spec.externalName or "",
            proxied=not any(label in m.metadata.labels for label in services.PROXY_SKIP_LABELS),
            ports=tuple(ServicePortState(
                name=p.name or "", protocol=p.protocol, port=p.port,
                target_port=str(p.targetPort if p.targetPort is not None else p.port),
                node_port=ports.get(f"{key}:{p.name or ''}"),
            ) for p in spec.ports),
            selector=tuple(sorted(spec.selector.items())) if spec.selector else None,  # {} selects nothing
            session_affinity=spec.sessionAffinity,
            affinity_timeout=(spec.sessionAffinityConfig or SessionAffinityConfig()).clientIP.timeoutSeconds,
            external_traffic_policy=spec.externalTrafficPolicy, internal_traffic_policy=spec.internalTrafficPolicy,
            publish_not_ready=spec.publishNotReadyAddresses,
            external_ips=tuple(str(ip) for ip in spec.externalIPs), load_balancer_ip=lb_ips.get(key, ""),
            source_ranges=tuple(str(r) for r in spec.loadBalancerSourceRanges) if key in lb_ips else (),
        ))
    return tuple(out)


def _families(m: Service, cluster: tuple[str, ...]) -> ipfamily.ServiceFamilies:
    """Its IP family fields defaulted as the API server does (the topology's validation reported
    the problems: none are left here)."""
    spec = m.spec
    resolved, problems = ipfamily.service_families(
        type=spec.type, cluster_ip=spec.clusterIP, cluster_ips=spec.clusterIPs, ip_families=spec.ipFamilies,
        policy=spec.ipFamilyPolicy, has_selector=bool(spec.selector), cluster=cluster)
    if problems:
        raise LabError(f"Service {m.metadata.namespace or 'default'}/{m.metadata.name}: {problems[0][1]}")
    return resolved


def _own_resolver(spec: PodSpec, topo: Topology) -> bool:
    """A hostNetwork pod with dnsPolicy ClusterFirstWithHostNet needs its own resolv.conf in its
    node's network namespace: it gets a second name for that namespace (see host.netns.alias)."""
    return spec.hostNetwork and spec.dnsPolicy == "ClusterFirstWithHostNet" and topo.cluster.dns.enabled


def _selector(sel) -> SelectorState:
    return SelectorState(tuple(sorted(sel.matchLabels.items())),
                         tuple((e.key, e.operator, tuple(e.values)) for e in sel.matchExpressions))


def _policies(topo: Topology) -> tuple[PolicyState, ...]:
    """NetworkPolicies as written; policyTypes defaulted as the API server does (Ingress, plus
    Egress when the policy has egress rules)."""
    out = []
    for m in topo.manifests:
        if not isinstance(m, NetworkPolicy):
            continue
        spec = m.spec
        types = tuple(spec.policyTypes) if spec.policyTypes is not None else \
            ("Ingress",) + (("Egress",) if spec.egress else ())

        def rule(r, peers):
            return RuleState(
                tuple(PeerState(_selector(p.podSelector) if p.podSelector is not None else None,
                                _selector(p.namespaceSelector) if p.namespaceSelector is not None else None,
                                str(p.ipBlock.cidr) if p.ipBlock else "",
                                tuple(str(x) for x in p.ipBlock.except_) if p.ipBlock else ()) for p in peers),
                tuple(PolicyPortState(x.protocol, str(x.port) if x.port is not None else "", x.endPort or 0)
                      for x in r.ports))
        out.append(PolicyState(m.metadata.namespace or "default", m.metadata.name, _selector(spec.podSelector), types,
                               tuple(rule(r, r.from_) for r in spec.ingress), tuple(rule(r, r.to) for r in spec.egress)))
    return tuple(out)


def _namespace_labels(topo: Topology, namespaces: tuple[str, ...]) -> tuple:
    """Every namespace's labels, with the kubernetes.io/metadata.name label the API server adds."""
    declared = {m.metadata.name: m.metadata.labels for m in topo.manifests if isinstance(m, Namespace)}
    return tuple((ns, tuple(sorted({**declared.get(ns, {}), "kubernetes.io/metadata.name": ns}.items())))
                 for ns in namespaces)


def _dns_config(spec: PodSpec) -> dict:
    c = spec.dnsConfig
    if c is None:
        return {}
    return {"dns_nameservers": tuple(c.nameservers), "dns_searches": tuple(c.searches),
            "dns_options": tuple((o.name, o.value) for o in c.options)}


def _addons(topo: Topology) -> list:
    """What the lab installs by itself: every registered add-on's objects (lab.controlplane.addons)."""
    return addons.objects(topo)


def _intents(topo: Topology) -> list[_PodIntent]:
    """Pods as the API server would hold them once the workload controllers have run."""
    out = []
    addons = _addons(topo)
    for m in [*topo.manifests, *addons]:
        ns = getattr(m.metadata, "namespace", None) or "default"
        addon = any(m is a for a in addons)
        if isinstance(m, Pod):
            out.append(_PodIntent(ns, m.metadata.name, dict(m.metadata.labels), m.spec, None, addon))
        elif isinstance(m, WORKLOADS):
            owner = f"{m.kind}/{m.metadata.name}"
            out += [_PodIntent(ns, name, labels, spec, owner, addon) for name, labels, spec in _replicas(topo, ns, m)]
    return out


def _replicas(topo: Topology, ns: str, m) -> list[tuple[str, dict[str, str], PodSpec]]:
    """(name, labels, spec) of each pod a workload controller makes, named as it names them."""
    name, spec, labels = m.metadata.name, m.spec.template.spec, dict(m.spec.template.metadata.labels)
    if isinstance(m, Deployment):
        template = m.spec.template.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        labels["pod-template-hash"] = naming.pod_template_hash(template)
        return [(n, labels, spec) for n in naming.deployment_pod_names(topo.name, ns, name, template, m.spec.replicas)]
    if isinstance(m, StatefulSet):  # stable names, each its own hostname under the governing Service
        first = m.spec.ordinals.start
        return [(f"{name}-{i}", {**labels, "statefulset.kubernetes.io/pod-name": f"{name}-{i}",
                                 "apps.kubernetes.io/pod-index": str(i)},
                 spec.model_copy(update={"hostname": f"{name}-{i}", "subdomain": m.spec.serviceName}))
                for i in range(first, first + m.spec.replicas)]
    if isinstance(m, DaemonSet):  # one pod per node, pinned to it
        nodes = [n.name for n in topo.nodes]
        return [(n, labels, spec.model_copy(update={"nodeName": node}))
                for n, node in zip(naming.replica_names(topo.name, ns, name, name, len(nodes)), nodes)]
    return [(n, labels, spec) for n in naming.replica_names(topo.name, ns, name, name, m.spec.replicas)]


def _hosts(topo: Topology, underlay: list) -> tuple[HostState, ...]:
    """Underlay hosts take the addresses after the nodes'; the NAT gateway takes the underlay's
    first address (the nodes' default route already points there) and the public segment's first;
    public hosts the public segment's next ones."""
    lab, mine, public = topo.name, iter(underlay), iter(ipam.underlay_addresses(topo.public.subnet, len(topo.hosts))
                                                        if topo.public else ())
    out = []
    for h in sorted(topo.hosts, key=lambda h: not h.natGateway):  # the gateway first: public .1
        if h.natGateway:
            out.append(HostState(h.name, str(ipam.underlay_gateway(topo.underlay.subnet)), naming.node_netns(lab, h.name),
                                 public_ip=str(ipam.underlay_gateway(topo.public.subnet))))
        elif h.network == "public":
            out.append(HostState(h.name, str(next(public)), naming.node_netns(lab, h.name), network="public"))
        else:
            out.append(HostState(h.name, str(next(mine)), naming.node_netns(lab, h.name)))
    order = [h.name for h in topo.hosts]
    return tuple(sorted(out, key=lambda h: order.index(h.name)))


def _last_pod_ips(previous: Optional[ClusterState]) -> dict[tuple[str, int], object]:
    """Where each node's round-robin goes on, per family: the recorded last address, or (a record
    from before it was kept) the highest pod address on the node."""
    if previous is None:
        return {}
    highest: dict[tuple[str, int], object] = {}
    for p in previous.pods:
        if not p.host_network:
            for ip in map(ip_address, p.pod_ips):
                key = (p.node, ip.version)
                highest[key] = max(highest.get(key, ip), ip)
    recorded = {(node, ip_address(ip).version): ip_address(ip) for node, ip in previous.last_pod_ips}
    return {**highest, **recorded}


def _node_ranges(topo: Topology, kind) -> list[tuple[IPv4Network | IPv6Network, ...]]:
    """Each node's pod subnets in the cluster's family order: the kind cuts the primary range (vpc
    cuts it from the underlay), nodeipam's allocator a dual-stack cluster's second one."""
    count = len(topo.nodes)
    primary = kind.pod_ranges(topo, count)
    second = [ipam.node_pod_cidrs(c, topo.cluster.node_mask(c.version), count) for c in topo.cluster.podCIDR[1:]]
    return [(p, *(s[i] for s in second)) for i, p in enumerate(primary)]


def _ip6(topo: Topology, ip: str) -> str:
    """A machine's IPv6 underlay address, when the cluster has an IPv6 family."""
    if 6 not in topo.cluster.families:
        return ""
    return str(ipam.underlay_ipv6(topo.underlay.subnet, topo.underlay.subnetIPv6, ip))


def plan(topo: Topology, source: str = "", previous: Optional[ClusterState] = None) -> ClusterState:
    """previous: the running lab's state (`lab apply`): pods that still exist keep their node and
    IP, as running pods do in a cluster; only new pods are scheduled and given addresses."""
    lab = topo.name
    node_names = [n.name for n in topo.nodes]
    kind = routing.of(topo.cluster.network)
    ranges = _node_ranges(topo, kind)
    dual = len(topo.cluster.families) > 1
    on_underlay = [h for h in topo.hosts if h.network == "underlay" and not h.natGateway]
    addrs = ipam.underlay_addresses(topo.underlay.subnet, len(topo.nodes) + len(on_underlay))

    nodes = tuple(
        NodeState(
            name=n.name, role=n.role, ip=str(addrs[i]), pod_cidr=str(ranges[i][0]),
            gateway=str(ipam.gateway(ranges[i][0])), netns=naming.node_netns(lab, n.name),
            vtep_mac=naming.vtep_mac(str(addrs[i])), labels=tuple(sorted(n.labels.items())),
            pod_cidrs=tuple(str(r) for r in ranges[i]) if dual else (), ip6=_ip6(topo, str(addrs[i])),
        )
        for i, n in enumerate(topo.nodes)
    )
    hosts = tuple(replace(h, ip6=_ip6(topo, h.ip)) if h.network == "underlay" and not h.public_ip else h
                  for h in _hosts(topo, addrs[len(nodes):]))

    intents = _intents(topo)
    wanted = {(i.namespace, i.name): i for i in intents}
    kept = {(p.namespace, p.name): p for p in (previous.pods if previous else ())
            if (p.namespace, p.name) in wanted and not wanted[(p.namespace, p.name)].spec.hostNetwork
            and not p.host_network and p.node in node_names}
    # The add-ons are placed after the user's pods, so turning DNS on moves none of them.
    user = [i for i in intents if not i.addon]
    placement = schedule(node_names, [kept[(i.namespace, i.name)].node if (i.namespace, i.name) in kept
                                      else i.spec.nodeName for i in user],
                         [host_ports(i.spec) for i in user], [f"{i.namespace}/{i.name}" for i in user])
    placement += [i.spec.nodeName for i in intents if i.addon]
    intents = user + [i for i in intents if i.addon]
    by_node = {n.name: [] for n in nodes}
    for intent, node in zip(intents, placement):
        if not intent.spec.hostNetwork and (intent.namespace, intent.name) not in kept:
            by_node[node].append(intent)
    pods_on = {n.name: len(by_node[n.name]) + sum(p.node == n.name for p in kept.values()) for n in nodes}
    problems = kind.check(topo, pods_on)
    if problems:
        raise LabError("\n".join(f"{source or topo.name}: {p}" for p in problems))
    pod_ips = {k: p.pod_ips for k, p in kept.items()}
    lasts = _last_pod_ips(previous)
    for i, n in enumerate(nodes):
        given_by_family = []
        for cidr in ranges[i]:
            taken = frozenset(ip_address(ip) for p in kept.values() if p.node == n.name for ip in p.pod_ips
                              if ip_address(ip).version == cidr.version)
            given = ipam.pod_addresses(n.name, cidr, len(by_node[n.name]), taken, lasts.get((n.name, cidr.version)))
            if given:
                lasts[(n.name, cidr.version)] = given[-1]
            given_by_family.append(given)
        for j, intent in enumerate(by_node[n.name]):
            pod_ips[(intent.namespace, intent.name)] = tuple(str(g[j]) for g in given_by_family)

    node_by_name = {n.name: n for n in nodes}
    user_services = [m for m in topo.manifests if isinstance(m, Service)]
    service_states = _services(topo, previous)
    pods = tuple(
        PodState(
            namespace=i.namespace, name=i.name, node=node,
            ip=_host_ips(topo, node_by_name[node])[0] if i.spec.hostNetwork else pod_ips[(i.namespace, i.name)][0],
            ips=(_host_ips(topo, node_by_name[node]) if i.spec.hostNetwork else pod_ips[(i.namespace, i.name)])
            if dual else (),
            netns=node_by_name[node].netns if i.spec.hostNetwork and not _own_resolver(i.spec, topo)
            else naming.pod_netns(lab, i.namespace, i.name),
            host_network=i.spec.hostNetwork, labels=tuple(sorted(i.labels.items())),
            containers=_containers(i, user_services), owner=i.owner,
            hostname=i.spec.hostname or "", subdomain=i.spec.subdomain or "", dns_policy=i.spec.dnsPolicy,
            **_dns_config(i.spec),
            service_env=envvars.for_pod(i.namespace, service_states, i.spec.enableServiceLinks),
        )
        for i, node in zip(intents, placement)
    )
    pods = _started_env(pods, previous)
    _check_unique_netns(nodes, hosts, pods)

    declared = [m.metadata.name for m in topo.manifests if isinstance(m, Namespace)]
    namespaces = tuple(dict.fromkeys(["default", "kube-system", *addons.namespaces(topo), *declared]))
    checks = tuple(
        CheckState(name=c.name or f"{c.from_} -> {c.to} ({c.protocol}) {c.expect}", src=c.from_, dst=c.to,
                   protocol=c.protocol, expect=c.expect)
        for c in topo.checks
    )
    namespace_labels = _namespace_labels(topo, namespaces)
    http_routes = gateway.routes(topo, service_states, {ns: dict(labels) for ns, labels in namespace_labels})
    return ClusterState(
        lab=lab, pod_cidr=kind.cluster_pod_cidr(topo), service_cidr=str(topo.cluster.serviceCIDR[0]),
        secondary_service_cidr=str(topo.cluster.serviceCIDR[1]) if len(topo.cluster.serviceCIDR) > 1 else "",
        node_mask=topo.cluster.nodeCIDRMaskSize, network=topo.cluster.network, cni=topo.cluster.cni,
        mtu=topo.pod_mtu(), underlay_subnet=str(topo.underlay.subnet), underlay_mtu=topo.underlay.mtu,
        switch=topo.underlay.switch, switch_name=naming.switch_name(lab), nodes=nodes, hosts=hosts,
        pods=pods, namespaces=namespaces, checks=checks, source=source, proxy=topo.cluster.proxy,
        dns_domain=topo.cluster.dns.domain if topo.cluster.dns.enabled else "",
        dns_node_cache=topo.cluster.dns.enabled and topo.cluster.dns.nodeLocalCache,
        namespace_labels=namespace_labels, policies=_policies(topo),
        bgp_as=topo.cluster.bgp.asNumber, route_reflectors=tuple(topo.cluster.bgp.routeReflectors),
        top_of_rack=topo.cluster.bgp.topOfRack or "",
        services=service_states, ingresses=ingress.states(topo), gateway_classes=gateway.gateway_classes(topo),
        gateways=gateway.gateways(topo, service_states, pods, nodes, http_routes), http_routes=http_routes,
        public_subnet=str(topo.public.subnet) if topo.public else "",
        last_pod_ips=tuple((n.name, str(lasts[(n.name, f)])) for n in nodes for f in topo.cluster.families
                           if (n.name, f) in lasts),
        pod_cidrs=(kind.cluster_pod_cidr(topo), *(str(c) for c in topo.cluster.podCIDR[1:])) if dual else (),
        underlay_subnet6=str(topo.underlay.subnetIPv6) if 6 in topo.cluster.families else "",
    )


def _host_ips(topo: Topology, node: NodeState) -> tuple[str, ...]:
    """A hostNetwork pod's status.podIPs: its node's addresses of the cluster's families, in order."""
    return tuple(node.address_of(f) for f in topo.cluster.families)


def _started_env(pods: tuple[PodState, ...], previous: Optional[ClusterState]) -> tuple[PodState, ...]:
    """The kubelet sets a container's Service variables when it starts: a running pod that stays
    as it is keeps the ones it started with (a Service created later does not restart it)."""
    if previous is None:
        return pods
    before = {p.key: p for p in previous.pods}

    def bare(p: PodState) -> PodState:
        return replace(p, labels=(), service_env=())

    return tuple(replace(p, service_env=before[p.key].service_env)
                 if p.key in before and bare(before[p.key]) == bare(p) else p for p in pods)


NAME_MAX = 255  # /run/netns/<name> is a file name


def _check_unique_netns(nodes, hosts, pods) -> None:
    """Namespace names are global on the machine: a pod and a node must not map to the same one,
    and each must be a legal file name."""
    seen: dict[str, str] = {}
    own = {n.name: n.netns for n in nodes}  # hostNetwork pods use it, unless they have an alias
    for what, netns in [*((f"node {n.name}", n.netns) for n in nodes), *((f"host {h.name}", h.netns) for h in hosts),
                        *((f"pod {p.key}", p.netns) for p in pods if not p.host_network or p.netns != own[p.node])]:
        if len(netns) > NAME_MAX:
            raise LabError(f"{what}: its network namespace name {netns[:40]}... is {len(netns)} characters, "
                           f"Linux allows {NAME_MAX}; shorten the lab, namespace or pod name")
        if netns in seen:
            raise LabError(f"{what} and {seen[netns]} would share the network namespace name {netns}; rename one of them")
        seen[netns] = what
