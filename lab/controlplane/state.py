"""ClusterState: the frozen, deterministic result of planning a topology.

Everything the runtime builds and the harness checks is derived from this value, so the same file
gives the same names and addresses on every run. It round-trips through JSON (the lab's record on
disk), which is how `lab get` and `lab check` see a running lab without re-planning it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from ipaddress import ip_network
from typing import Optional

from lab.controlplane.gateway_state import GatewayClassState, GatewayState, HTTPRouteState, load
from lab.topology.kinds import DEFAULT_PROXY


def _family(address_or_cidr: str) -> int:
    return ip_network(address_or_cidr, strict=False).version


@dataclass(frozen=True)
class PortState:
    port: int
    protocol: str = "TCP"
    name: Optional[str] = None
    host_port: int = 0               # hostPort: the node's port the portmap plugin maps to this one
    host_ip: str = ""


@dataclass(frozen=True)
class ReadinessState:
    """A readinessProbe with its port resolved to a number (named ports name the container's)."""

    kind: str                        # http | tcp | grpc | exec
    port: int = 0
    path: str = "/"
    service: str = ""                # grpc: the service named in the Health/Check request ("" = the server)
    command: tuple[str, ...] = ()
    initial_delay: int = 0
    period: int = 10
    timeout: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3


@dataclass(frozen=True)
class ContainerState:
    name: str
    image: str
    argv: tuple[str, ...] = ()       # command + args for a program image; empty for built-ins
    ports: tuple[PortState, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    readiness: Optional[ReadinessState] = None
    stand_in_for: str = ""           # the manifest's image when the lab runs a stand-in (image: netexec or pause)


@dataclass(frozen=True)
class PodState:
    namespace: str
    name: str
    node: str
    ip: str                          # the pod IP; the node's IP for hostNetwork pods
    netns: str                       # named netns the pod lives in (the node's for hostNetwork)
    host_network: bool = False
    labels: tuple[tuple[str, str], ...] = ()
    containers: tuple[ContainerState, ...] = ()
    owner: Optional[str] = None      # "<Kind>/<name>" for pods a controller made (Deployment/web)
    hostname: str = ""               # spec.hostname (DNS: <hostname>.<subdomain>.<ns>.svc.<domain>)
    subdomain: str = ""
    dns_policy: str = "ClusterFirst"
    dns_nameservers: tuple[str, ...] = ()   # spec.dnsConfig
    dns_searches: tuple[str, ...] = ()
    dns_options: tuple[tuple[str, Optional[str]], ...] = ()
    # the kubelet's Service environment variables, fixed when the pod started (controlplane.envvars);
    # a container's own env wins over them
    service_env: tuple[tuple[str, str], ...] = ()
    # status.podIPs in the cluster's family order (ip is the first); () in a single-stack record
    ips: tuple[str, ...] = ()

    @property
    def pod_ips(self) -> tuple[str, ...]:
        """status.podIPs: every address of the pod, the primary family's first."""
        return self.ips or (self.ip,)

    def ip_of(self, family: int) -> str:
        """The pod's address of one family (4 or 6); "" when it has none."""
        return next((ip for ip in self.pod_ips if _family(ip) == family), "")

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def uts_name(self) -> str:
        """The hostname its programs see (netexec's /hostname): a hostNetwork pod shares its
        node's UTS namespace, so it answers with the node's name, as agnhost does. A pod name
        longer than a hostname may be (64) is cut as the kubelet cuts it: 63 characters, no
        trailing '-' or '.'."""
        return self.node if self.host_network else self.name[:63].rstrip("-.")

    def probe_port(self) -> Optional[int]:
        """The first TCP port served by a netexec container: where the harness knocks."""
        for c in self.containers:
            if c.image == "netexec":
                for p in c.ports:
                    if p.protocol == "TCP":
                        return p.port
        return None


def container_key(pod: PodState, container: ContainerState) -> str:
    """A container's name in the lab's record (its pid, its readiness verdict): namespace/pod/container."""
    return f"{pod.key}/{container.name}"


def pod_key_of(container_key: str) -> str:
    """The pod a container key belongs to (namespace/pod)."""
    return container_key.rsplit("/", 1)[0]


@dataclass(frozen=True)
class NodeState:
    name: str
    role: str
    ip: str                          # underlay address on eth0
    pod_cidr: str                    # e.g. 10.244.1.0/24
    gateway: str                     # first address of pod_cidr: cni0 (bridge) / host veths (ptp)
    netns: str
    vtep_mac: str                    # flannel.1's MAC, derived so peers can be programmed up front
    labels: tuple[tuple[str, str], ...] = ()
    pod_cidrs: tuple[str, ...] = ()  # spec.podCIDRs in family order (pod_cidr is the first); () = (pod_cidr,)
    ip6: str = ""                    # its IPv6 underlay address on eth0 when the cluster has an IPv6 family

    @property
    def cidrs(self) -> tuple[str, ...]:
        """spec.podCIDRs: the node's pod subnets, the primary family's first."""
        return self.pod_cidrs or (self.pod_cidr,)

    def pod_cidr_of(self, family: int) -> str:
        return next((c for c in self.cidrs if _family(c) == family), "")

    def gateway_of(self, family: int) -> str:
        """The first address of the family's pod subnet (cni0's, or the ptp host side's)."""
        cidr = self.pod_cidr_of(family)
        return str(ip_network(cidr).network_address + 1) if cidr else ""

    def address_of(self, family: int) -> str:
        """The node's underlay address of one family."""
        return self.ip if family == 4 else self.ip6


HOST_PORT = 8080   # every plain host answers there like netexec, over TCP and UDP


@dataclass(frozen=True)
class HostState:
    name: str
    ip: str                          # its address on its network
    netns: str
    network: str = "underlay"        # underlay | public (behind the NAT gateway)
    public_ip: str = ""              # the NAT gateway's address on the public segment (what the world sees)
    ip6: str = ""                    # its IPv6 underlay address when the cluster has an IPv6 family

    def address_of(self, family: int) -> str:
        return self.ip if family == 4 else self.ip6


@dataclass(frozen=True)
class ServicePortState:
    name: str                        # "" for the single unnamed port
    protocol: str
    port: int
    target_port: str                 # a number, or the name of a container port
    node_port: Optional[int] = None


@dataclass(frozen=True)
class ServiceState:
    namespace: str
    name: str
    type: str                        # ClusterIP | NodePort | LoadBalancer | ExternalName
    cluster_ip: Optional[str]        # None: headless
    ports: tuple[ServicePortState, ...]
    selector: Optional[tuple[tuple[str, str], ...]] = None  # None: endpoints are not managed
    session_affinity: str = "None"   # None | ClientIP
    affinity_timeout: int = 10800
    external_traffic_policy: str = "Cluster"
    internal_traffic_policy: str = "Cluster"
    publish_not_ready: bool = False
    external_name: str = ""          # type ExternalName: the CNAME target
    external_ips: tuple[str, ...] = ()     # spec.externalIPs: kube-proxy serves them, nothing announces them
    load_balancer_ip: str = ""       # status.loadBalancer.ingress: the pool's address; "" while <pending>
    source_ranges: tuple[str, ...] = ()    # spec.loadBalancerSourceRanges: who may reach load_balancer_ip
    proxied: bool = True             # False: a skip label (services.PROXY_SKIP_LABELS) keeps kube-proxy away
    cluster_ips: tuple[str, ...] = ()      # spec.clusterIPs, one per family in ip_families order; () headless
    ip_families: tuple[str, ...] = ()      # spec.ipFamilies (IPv4, IPv6); () for ExternalName
    ip_family_policy: str = ""             # SingleStack | PreferDualStack | RequireDualStack; "" for ExternalName

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def families(self) -> tuple[str, ...]:
        """Its IP families; a record written before dual-stack has only IPv4 Services."""
        return self.ip_families or (("IPv4",) if self.type != "ExternalName" else ())

    def cluster_ip_of(self, family: str) -> Optional[str]:
        """Its ClusterIP of that family; None if it has none (headless, or not of that family)."""
        ips = ((self.cluster_ip,) if self.cluster_ip else ()) + self.cluster_ips[1:]   # clusterIP is clusterIPs[0]
        return next((ip for ip in ips if (":" in ip) == (family == "IPv6")), None)


@dataclass(frozen=True)
class EndpointState:
    address: str
    node: str
    pod: str                         # namespace/name of the pod behind it
    ready: bool = True
    serving: bool = True
    terminating: bool = False


@dataclass(frozen=True)
class EndpointPortState:
    name: str
    protocol: str
    port: int


@dataclass(frozen=True)
class EndpointSliceState:
    """discovery.k8s.io/v1 EndpointSlice: endpoints that share one port mapping."""

    namespace: str
    name: str
    service: str                     # the Service's name (label kubernetes.io/service-name)
    ports: tuple[EndpointPortState, ...]
    endpoints: tuple[EndpointState, ...]
    address_type: str = "IPv4"       # IPv4 | IPv6: one slice family per Service family


@dataclass(frozen=True)
class SelectorState:
    """A label selector: every matchLabels pair and every expression must hold; empty selects all."""

    match_labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()   # (key, operator, values)


@dataclass(frozen=True)
class PeerState:
    """One `from`/`to` entry: pods (podSelector, namespaceSelector, or both), or an ipBlock."""

    pod_selector: Optional[SelectorState] = None
    namespace_selector: Optional[SelectorState] = None
    cidr: str = ""
    excepts: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicyPortState:
    protocol: str = "TCP"
    port: str = ""        # "" = every port; a number, or a named container port
    end_port: int = 0     # 0 = a single port


@dataclass(frozen=True)
class RuleState:
    peers: tuple[PeerState, ...] = ()        # empty: every source (ingress) / destination (egress)
    ports: tuple[PolicyPortState, ...] = ()  # empty: every port


@dataclass(frozen=True)
class PolicyState:
    namespace: str
    name: str
    pod_selector: SelectorState
    types: tuple[str, ...]                   # "Ingress", "Egress"
    ingress: tuple[RuleState, ...] = ()
    egress: tuple[RuleState, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class IngressPathState:
    """One rule's path (or the defaultBackend: host "", path "/"), its Service in the Ingress's namespace."""

    host: str                        # "" = any host
    path: str
    path_type: str                   # Exact | Prefix (ImplementationSpecific is read as Prefix)
    service: str
    port: str                        # the Service port's number, or its name


@dataclass(frozen=True)
class IngressTLSState:
    hosts: tuple[str, ...]
    secret: str = ""                 # the Secret named; its PEM below when it was given
    cert: str = ""                   # "": the lab's CA issues the certificate (lab.ingress.tls)
    key: str = ""


@dataclass(frozen=True)
class IngressState:
    namespace: str
    name: str
    paths: tuple[IngressPathState, ...] = ()
    default_backend: Optional[IngressPathState] = None
    tls: tuple[IngressTLSState, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class CheckState:
    name: str
    src: str                         # reference text as written, e.g. deploy/frontend
    dst: str
    protocol: str
    expect: str


@dataclass(frozen=True)
class ClusterState:
    lab: str
    pod_cidr: str
    service_cidr: str                # --service-cluster-ip-range[0]: the primary family's
    node_mask: int
    network: str
    cni: str
    mtu: int                         # pod MTU
    underlay_subnet: str
    underlay_mtu: int
    switch: str                      # linux-bridge | ovs
    switch_name: str                 # the underlay switch's link name in the root namespace
    nodes: tuple[NodeState, ...]
    hosts: tuple[HostState, ...] = ()
    pods: tuple[PodState, ...] = ()
    namespaces: tuple[str, ...] = ("default", "kube-system")
    checks: tuple[CheckState, ...] = ()
    source: str = ""                 # the topology file this came from
    proxy: str = DEFAULT_PROXY       # kube-proxy's mode: a name in lab.kube_proxy.proxiers
    services: tuple[ServiceState, ...] = ()
    dns_domain: str = ""             # the cluster domain; "" when the lab has no cluster DNS
    dns_node_cache: bool = False     # NodeLocal DNSCache on every node
    bgp_as: int = 64512              # network: bgp — the cluster's AS
    route_reflectors: tuple[str, ...] = ()  # node or host names; () = full mesh
    top_of_rack: str = ""            # a host: eBGP with one AS per node
    namespace_labels: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()  # incl. kubernetes.io/metadata.name
    policies: tuple[PolicyState, ...] = ()
    ingresses: tuple[IngressState, ...] = ()   # those the lab's ingress-nginx serves
    gateway_classes: tuple[GatewayClassState, ...] = ()  # Gateway API (lab.controlplane.gateway)
    gateways: tuple[GatewayState, ...] = ()
    http_routes: tuple[HTTPRouteState, ...] = ()
    public_subnet: str = ""          # the segment behind the NAT gateway ("" without one)
    last_pod_ips: tuple[tuple[str, str], ...] = ()  # node -> the last pod address handed out there (host-local's
    #                                                 lastReservedIP: the round-robin goes on after it)
    secondary_service_cidr: str = ""  # --service-cluster-ip-range[1]: the other family's ("" single-stack)

    def service_cidrs(self) -> tuple[str, ...]:
        return (self.service_cidr,) + ((self.secondary_service_cidr,) if self.secondary_service_cidr else ())

    def service_families(self) -> tuple[str, ...]:
        """The cluster's Service families, primary first."""
        return tuple("IPv6" if ":" in c else "IPv4" for c in self.service_cidrs())

    def service_cidr_of(self, family: str) -> Optional[str]:
        return dict(zip(self.service_families(), self.service_cidrs())).get(family)
    pod_cidrs: tuple[str, ...] = ()  # --cluster-cidr in family order (pod_cidr is the first); () = (pod_cidr,)
    underlay_subnet6: str = ""       # the underlay's IPv6 subnet when the cluster has an IPv6 family

    @property
    def families(self) -> tuple[int, ...]:
        """The cluster's IP families, the primary first: (4,), (6,), (4, 6) or (6, 4)."""
        return tuple(_family(c) for c in (self.pod_cidrs or (self.pod_cidr,)))

    def pod_cidr_of(self, family: int) -> str:
        """The cluster's pod range of one family; "" when the cluster has none."""
        return next((c for c in (self.pod_cidrs or (self.pod_cidr,)) if _family(c) == family), "")

    def node(self, name: str) -> NodeState:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def underlay_hosts(self) -> tuple[HostState, ...]:
        """The plain hosts that reach the nodes' addresses directly (not those behind the NAT gateway)."""
        return tuple(h for h in self.hosts if h.network == "underlay")

    def nat_gateway(self) -> Optional[HostState]:
        return next((h for h in self.hosts if h.public_ip), None)

    def pods_on(self, node: str) -> tuple[PodState, ...]:
        return tuple(p for p in self.pods if p.node == node)

    def to_dict(self) -> dict:
        return asdict(self)

    def service(self, namespace: str, name: str) -> ServiceState:
        for s in self.services:
            if s.namespace == namespace and s.name == name:
                return s
        raise KeyError(f"{namespace}/{name}")

    @classmethod
    def from_dict(cls, d: dict) -> "ClusterState":
        def pairs(xs):
            return tuple(tuple(x) for x in xs)

        def container(c: dict) -> ContainerState:
            r = c.get("readiness")
            return ContainerState(
                name=c["name"], image=c["image"], argv=tuple(c["argv"]),
                ports=tuple(PortState(**x) for x in c["ports"]), env=pairs(c["env"]),
                readiness=ReadinessState(**{**r, "command": tuple(r["command"])}) if r else None,
                stand_in_for=c.get("stand_in_for", ""),
            )

        def service(s: dict) -> ServiceState:
            return ServiceState(**{**s, "ports": tuple(ServicePortState(**p) for p in s["ports"]),
                                   "external_ips": tuple(s.get("external_ips", ())),
                                   "source_ranges": tuple(s.get("source_ranges", ())),
                                   "cluster_ips": tuple(s.get("cluster_ips", ())),
                                   "ip_families": tuple(s.get("ip_families", ())),
                                   "selector": pairs(s["selector"]) if s["selector"] is not None else None})

        return cls(**{
            **d,
            "nodes": tuple(NodeState(**{**n, "labels": pairs(n["labels"]), "pod_cidrs": tuple(n.get("pod_cidrs", ()))})
                           for n in d["nodes"]),
            "hosts": tuple(HostState(**h) for h in d["hosts"]),
            "pods": tuple(PodState(**{**p, "labels": pairs(p["labels"]),
                                      "containers": tuple(container(c) for c in p["containers"]),
                                      "dns_nameservers": tuple(p.get("dns_nameservers", ())),
                                      "dns_searches": tuple(p.get("dns_searches", ())),
                                      "dns_options": pairs(p.get("dns_options", ())),
                                      "service_env": pairs(p.get("service_env", ())),
                                      "ips": tuple(p.get("ips", ()))})
                          for p in d["pods"]),
            "namespaces": tuple(d["namespaces"]),
            "checks": tuple(CheckState(**c) for c in d["checks"]),
            "services": tuple(service(s) for s in d.get("services", ())),
            "namespace_labels": tuple((ns, pairs(labels)) for ns, labels in d.get("namespace_labels", ())),
            "route_reflectors": tuple(d.get("route_reflectors", ())),
            "policies": tuple(_policy(p) for p in d.get("policies", ())),
            "ingresses": tuple(_ingress(i) for i in d.get("ingresses", ())),
            "last_pod_ips": pairs(d.get("last_pod_ips", ())),
            "pod_cidrs": tuple(d.get("pod_cidrs", ())),
            "gateway_classes": tuple(load(GatewayClassState, x) for x in d.get("gateway_classes", ())),
            "gateways": tuple(load(GatewayState, x) for x in d.get("gateways", ())),
            "http_routes": tuple(load(HTTPRouteState, x) for x in d.get("http_routes", ())),
        })

    def labels_of_namespace(self, namespace: str) -> dict[str, str]:
        return dict(dict(self.namespace_labels).get(namespace, ()))


def _selector(d: Optional[dict]) -> Optional[SelectorState]:
    if d is None:
        return None
    return SelectorState(tuple(tuple(x) for x in d["match_labels"]),
                         tuple((k, op, tuple(v)) for k, op, v in d["expressions"]))


def _policy(d: dict) -> PolicyState:
    def rule(r: dict) -> RuleState:
        return RuleState(
            tuple(PeerState(_selector(p["pod_selector"]), _selector(p["namespace_selector"]), p["cidr"],
                            tuple(p["excepts"])) for p in r["peers"]),
            tuple(PolicyPortState(**x) for x in r["ports"]))
    return PolicyState(d["namespace"], d["name"], _selector(d["pod_selector"]), tuple(d["types"]),
                       tuple(rule(r) for r in d["ingress"]), tuple(rule(r) for r in d["egress"]))


def _ingress(d: dict) -> IngressState:
    default = d.get("default_backend")
    return IngressState(d["namespace"], d["name"], tuple(IngressPathState(**p) for p in d["paths"]),
                        IngressPathState(**default) if default else None,
                        tuple(IngressTLSState(**{**t, "hosts": tuple(t["hosts"])}) for t in d["tls"]))
