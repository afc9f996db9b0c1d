"""Typed, frozen shape of a topology file: what the user may write, and nothing else.

Field names follow Kubernetes (camelCase) so manifests can be pasted from a real cluster. Every
model forbids unknown fields: a typo or an unsupported field is an error, never silently ignored.
Cross-field rules (overlaps, references, uniqueness) live in lab.topology.semantics.
"""
from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import Annotated, Literal, Optional, Union

from pydantic_core import PydanticCustomError
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator
from lab.topology.constants import DNS_LABEL, DNS_SUBDOMAIN
from lab.topology.gatewayapi import KINDS as GATEWAY_KINDS, Gateway, GatewayClass, HTTPRoute, ReferenceGrant
from lab.topology.ipfamily import IPV4, POLICIES, SERVICE_CIDR, families_of
from lab.topology.kinds import CNIS, DEFAULT_PROXY, NETWORKS, PROXY_MODES, mtu_overhead
from lab.topology.lenient import IGNORED_KINDS

# Service types reachable from outside on a NodePort (kube-proxy's ExternallyAccessible); a
# LoadBalancer without a load-balancer implementation is a NodePort with EXTERNAL-IP <pending>.
EXTERNAL_TYPES = ("NodePort", "LoadBalancer")
LabelName = Annotated[str, StringConstraints(pattern=DNS_LABEL, max_length=63)]
SubdomainName = Annotated[str, StringConstraints(pattern=DNS_SUBDOMAIN, max_length=253)]
# Lab names prefix every namespace the lab creates; short enough to keep `ip netns` readable.
LabName = Annotated[str, StringConstraints(pattern=DNS_LABEL, max_length=24)]
Port = Annotated[int, Field(ge=1, le=65535)]
IPFamily = Literal["IPv4", "IPv6"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class DNSSpec(Strict):
    """Cluster DNS: the kube-dns Service (tenth address of serviceCIDR) served by dnsmasq in a pod."""

    enabled: bool = True
    domain: Annotated[str, StringConstraints(pattern=DNS_SUBDOMAIN, max_length=63)] = "cluster.local"
    nodeLocalCache: bool = Field(False, description="NodeLocal DNSCache: a caching resolver on every node at "
                                                     "169.254.20.10, which pods use instead of kube-dns")


class BGPSpec(Strict):
    """network: bgp (like Calico): FRR on every node announces its podCIDR. iBGP full mesh by
    default; with routeReflectors, nodes peer only with those (nodes or plain hosts); with
    topOfRack, every node has an AS of its own and peers over eBGP with that host."""

    asNumber: int = Field(64512, ge=1, le=4294967294)
    routeReflectors: list[SubdomainName] = Field(default_factory=list)
    topOfRack: Optional[SubdomainName] = Field(None, description="a plain host as the rack's router: eBGP, "
                                                                  "one AS per node (asNumber + 1 + its index)")


class UnsafeSpec(Strict):
    """Mistakes the lab refuses unless asked to build them on purpose (for exercises)."""

    allowOverlap: bool = False  # podCIDR, serviceCIDR and the underlay may overlap (a warning, not an error)


def _cni(value: str) -> str:
    """bridge, ptp, or a CNI plugin of one's own: an executable, relative to the topology file
    (./plugins/my-cni) or absolute; the loader resolves it."""
    if value in CNIS or re.fullmatch(r"(\.{1,2})?/\S+", value):
        return value
    raise ValueError("cni is bridge, ptp, or the path of a CNI plugin executable (e.g. ./plugins/my-cni, "
                     "relative to the topology file)")


class VPCSpec(Strict):
    """network: vpc (the AWS VPC CNI model): each node's pod IPs are secondary addresses of its ENIs,
    so a node holds at most enisPerNode x (ipsPerEni - 1) pods (each ENI's primary address is not a
    pod's). The defaults are a t3.medium's limits (3 ENIs, 6 IPv4 addresses each: 15 pod IPs)."""

    enisPerNode: int = Field(3, ge=1, le=15)
    ipsPerEni: int = Field(6, ge=2, le=50)


class LoadBalancerSpec(Strict):
    """The cluster's load-balancer implementation, MetalLB style: LoadBalancer Services get addresses
    from these pools (inside the underlay subnet) and one node answers ARP for each (mode l2)."""

    mode: Literal["l2"] = "l2"
    addresses: Annotated[list[IPv4Network], Field(min_length=1)]


IPNetwork = Union[IPv4Network, IPv6Network]


def _cidr_list(value: object) -> object:
    """One CIDR, a YAML list of them, or comma-separated as the kube flags take them
    (--cluster-cidr=10.244.0.0/16,fd00:10:244::/56): parsed here so a bad one gets one message
    (lab.topology.load words it: error type "ip_networks")."""
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        items = [items]
    out = []
    for item in items:
        if isinstance(item, (IPv4Network, IPv6Network)):
            out.append(item)
            continue
        try:
            out.append(ip_network(str(item)))
        except ValueError:
            try:
                net = ip_network(str(item), strict=False)
            except ValueError:
                hint = ("write an address and a prefix length (0-32 for IPv4, 0-128 for IPv6), e.g. 10.244.0.0/16 "
                        "or fd00:10:244::/56; two CIDRs (one per family) make the cluster dual-stack")
            else:
                hint = f"{item} has bits set after the /{net.prefixlen} prefix: the network is {net}"
            raise PydanticCustomError("ip_networks", "not an IPv4 or IPv6 network: {item}",
                                      {"item": str(item), "hint": hint}) from None
    return tuple(out)


def _dual_stack(value: tuple) -> tuple:
    """Two CIDRs are one per family, as kube-controller-manager requires of --cluster-cidr."""
    if len(value) == 2 and value[0].version == value[1].version:
        raise PydanticCustomError("ip_families", "two CIDRs of one family", {
            "problem": f"two IPv{value[0].version} CIDRs ({value[0]}, {value[1]}): a dual-stack cluster has one of each "
                       "family",
            "hint": "give one IPv4 and one IPv6 CIDR, the primary family first, e.g. [10.244.0.0/16, fd00:10:244::/56] "
                    "(kind's dual-stack defaults); one CIDR makes a single-stack cluster"})
    return value


# cluster.podCIDR: one CIDR (single-stack, IPv4 or IPv6) or two of different families (dual-stack,
# in the first one's family order)
CIDRs = Annotated[tuple[IPNetwork, ...], BeforeValidator(_cidr_list), Field(min_length=1, max_length=2),
                  AfterValidator(_dual_stack)]


class ClusterSpec(Strict):
    """What Kubernetes leaves to the installer: address plan, pod network, CNI plugin."""

    podCIDR: CIDRs = (IPv4Network("10.244.0.0/16"),)
    nodeCIDRMaskSize: int = Field(24, ge=8, le=30)
    nodeCIDRMaskSizeIPv6: int = Field(64, ge=16, le=120, description="each node's IPv6 pod subnet "
                                                                      "(--node-cidr-mask-size-ipv6)")
    # --service-cluster-ip-range: default 10.96.0.0/12, or kind's per family when podCIDR is IPv6 or dual-stack
    serviceCIDR: CIDRs = (IPv4Network(SERVICE_CIDR[IPV4]),)
    network: Literal[tuple(NETWORKS)] = "vxlan"  # type: ignore[valid-type]  # the registered pod networks
    cni: Annotated[str, AfterValidator(_cni)] = "bridge"
    proxy: Literal[PROXY_MODES] = DEFAULT_PROXY  # type: ignore[valid-type]
    bgp: BGPSpec = BGPSpec()
    vpc: VPCSpec = VPCSpec()
    dns: DNSSpec = DNSSpec()
    mtu: Optional[int] = Field(None, ge=576, le=9000, description="pod MTU; default: underlay MTU, minus 50 for vxlan")
    unsafe: UnsafeSpec = UnsafeSpec()
    loadBalancer: Optional[LoadBalancerSpec] = None  # without it, LoadBalancer Services stay <pending>

    @model_validator(mode="before")
    @classmethod
    def _service_cidr_follows_pods(cls, data):
        """Without serviceCIDR, a cluster whose podCIDR is IPv6 or dual-stack gets kind's Service
        ranges in the pods' family order (fd00:10:96::/112 for IPv6)."""
        if isinstance(data, dict) and "serviceCIDR" not in data and "podCIDR" in data:
            families = families_of(data["podCIDR"])
            if families and families != (IPV4,) and len(set(families)) == len(families) <= 2:
                data = {**data, "serviceCIDR": [SERVICE_CIDR[f] for f in families]}
        return data

    @property
    def families(self) -> tuple[int, ...]:
        """The cluster's IP families in order (4,), (6,), (4, 6) or (6, 4): the first is the primary."""
        return tuple(c.version for c in self.podCIDR)

    def node_mask(self, family: int) -> int:
        return self.nodeCIDRMaskSize if family == 4 else self.nodeCIDRMaskSizeIPv6


class UnderlaySpec(Strict):
    """The physical network the nodes sit on."""

    subnet: IPv4Network = IPv4Network("172.18.0.0/24")
    # a cluster with an IPv6 family: every machine also gets <this prefix>::<its IPv4 host part>
    subnetIPv6: IPv6Network = IPv6Network("fd00:172:18::/64")
    switch: Literal["linux-bridge", "ovs"] = "linux-bridge"
    mtu: int = Field(1500, ge=1280, le=9000)


class NodeSpec(Strict):
    name: SubdomainName
    role: Literal["control-plane", "worker"] = "worker"
    labels: dict[str, str] = Field(default_factory=dict)


class HostSpec(Strict):
    """A plain host outside the cluster (an 'internet' or a client): on the underlay, or on the
    public segment behind the NAT gateway."""

    name: SubdomainName
    network: Literal["underlay", "public"] = "underlay"
    natGateway: bool = False  # on the underlay (its first address, the nodes' default route) and the public segment


class PublicSpec(Strict):
    """The 'internet' segment of a private cluster (AWS's picture): its hosts reach the cluster only
    through the NAT gateway, and see the gateway's public address."""

    subnet: IPv4Network = IPv4Network("203.0.113.0/24")  # TEST-NET-3: documentation addresses


class CheckSpec(Strict):
    """One expectation: `from` reaches `to` (allow), gets no answer at any try (deny: a drop, as a
    NetworkPolicy does), or is refused (a reset or an ICMP unreachable: nothing serves the port,
    a REJECT). Endpoints are `[namespace/]kind/name[:port]`, kind one of pod, deploy, node, host."""

    name: Optional[str] = None
    from_: str = Field(alias="from")
    to: str
    protocol: Literal["TCP", "UDP"] = "TCP"
    expect: Literal["allow", "deny", "refused"]


# --- manifests: the subset of real Kubernetes objects the lab understands ---

class ObjectMeta(Strict):
    name: SubdomainName
    namespace: Optional[LabelName] = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class TemplateMeta(Strict):
    name: Optional[SubdomainName] = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class ContainerPort(Strict):
    containerPort: Port
    name: Optional[Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=15)]] = None
    protocol: Literal["TCP", "UDP"] = "TCP"
    hostPort: Optional[Port] = None       # the node's port mapped to this one (the CNI portmap plugin)
    hostIP: Optional[IPv4Address] = None  # only on this node address (default: all)


class EnvVar(Strict):
    name: Annotated[str, StringConstraints(min_length=1)]
    value: str = ""


IntOrString = Union[Port, Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=15)]]


class HTTPGetAction(Strict):
    path: str = "/"
    port: IntOrString


class TCPSocketAction(Strict):
    port: IntOrString


class GRPCAction(Strict):
    port: Port
    service: Optional[str] = None


class ExecAction(Strict):
    command: Annotated[list[str], Field(min_length=1)]


class Probe(Strict):
    """A readinessProbe, run by the lab as the kubelet would: exactly one handler (grpc as a TCP
    connect: the stand-in servers do not speak gRPC)."""

    httpGet: Optional[HTTPGetAction] = None
    tcpSocket: Optional[TCPSocketAction] = None
    grpc: Optional[GRPCAction] = None
    exec: Optional[ExecAction] = None
    initialDelaySeconds: int = Field(0, ge=0)
    periodSeconds: int = Field(10, ge=1)
    timeoutSeconds: int = Field(1, ge=1)
    successThreshold: int = Field(1, ge=1)
    failureThreshold: int = Field(3, ge=1)


class Container(Strict):
    name: LabelName
    image: Annotated[str, StringConstraints(min_length=1)]
    command: Optional[list[str]] = None
    args: Optional[list[str]] = None
    ports: list[ContainerPort] = Field(default_factory=list)
    env: list[EnvVar] = Field(default_factory=list)
    readinessProbe: Optional[Probe] = None


class PodDNSOption(Strict):
    name: Annotated[str, StringConstraints(min_length=1)]
    value: Optional[str] = None


class PodDNSConfig(Strict):
    nameservers: list[str] = Field(default_factory=list)
    searches: list[str] = Field(default_factory=list)
    options: list[PodDNSOption] = Field(default_factory=list)


class PodSpec(Strict):
    containers: Annotated[list[Container], Field(min_length=1)]
    nodeName: Optional[SubdomainName] = None
    hostNetwork: bool = False
    hostname: Optional[LabelName] = None
    subdomain: Optional[LabelName] = None
    dnsPolicy: Literal["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"] = "ClusterFirst"
    dnsConfig: Optional[PodDNSConfig] = None
    enableServiceLinks: bool = True  # the kubelet's Service environment variables


class Pod(Strict):
    apiVersion: Literal["v1"]
    kind: Literal["Pod"]
    metadata: ObjectMeta
    spec: PodSpec


class LabelSelector(Strict):
    matchLabels: dict[str, str] = Field(default_factory=dict)


class PodTemplate(Strict):
    metadata: TemplateMeta = TemplateMeta()
    spec: PodSpec


class DeploymentSpec(Strict):
    replicas: int = Field(1, ge=0, le=1000)
    selector: LabelSelector
    template: PodTemplate


class Deployment(Strict):
    apiVersion: Literal["apps/v1"]
    kind: Literal["Deployment"]
    metadata: ObjectMeta
    spec: DeploymentSpec


class ReplicaSet(Strict):
    apiVersion: Literal["apps/v1"]
    kind: Literal["ReplicaSet"]
    metadata: ObjectMeta
    spec: DeploymentSpec


class StatefulSetOrdinals(Strict):
    start: int = Field(0, ge=0)


class StatefulSetSpec(DeploymentSpec):
    serviceName: Optional[LabelName] = None  # the headless Service that gives each pod a DNS name
    ordinals: StatefulSetOrdinals = StatefulSetOrdinals()


class StatefulSet(Strict):
    """Pods named <name>-0, <name>-1 ..., each with its own hostname and, through serviceName's
    headless Service, its own DNS name: <name>-0.<serviceName>.<namespace>.svc.<domain>."""

    apiVersion: Literal["apps/v1"]
    kind: Literal["StatefulSet"]
    metadata: ObjectMeta
    spec: StatefulSetSpec


class DaemonSetSpec(Strict):
    selector: LabelSelector
    template: PodTemplate


class DaemonSet(Strict):
    """One pod on every node (the lab's control-plane nodes carry no taint)."""

    apiVersion: Literal["apps/v1"]
    kind: Literal["DaemonSet"]
    metadata: ObjectMeta
    spec: DaemonSetSpec


# Controllers that make pods from a template (spec.selector, spec.template)
WORKLOADS = (Deployment, ReplicaSet, StatefulSet, DaemonSet)


class NamespaceMeta(Strict):
    name: LabelName
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Namespace(Strict):
    apiVersion: Literal["v1"]
    kind: Literal["Namespace"]
    metadata: NamespaceMeta


class ServicePort(Strict):
    name: Optional[Annotated[str, StringConstraints(pattern=DNS_LABEL, max_length=63)]] = None
    protocol: Literal["TCP", "UDP"] = "TCP"
    port: Port
    targetPort: Optional[IntOrString] = None  # default: the same as port
    nodePort: Optional[Annotated[int, Field(ge=30000, le=32767)]] = None


class ClientIPConfig(Strict):
    timeoutSeconds: int = Field(10800, ge=1, le=86400)


class SessionAffinityConfig(Strict):
    clientIP: ClientIPConfig = ClientIPConfig()


class ServiceSpec(Strict):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] = "ClusterIP"  # LoadBalancer: as NodePort
    externalName: Optional[Annotated[str, StringConstraints(pattern=DNS_SUBDOMAIN, max_length=253)]] = None
    selector: Optional[dict[str, str]] = None
    clusterIP: Optional[str] = None  # an address in serviceCIDR, "None" (headless), or allocated
    clusterIPs: list[str] = Field(default_factory=list)  # one per family; clusterIPs[0] is clusterIP
    ipFamilies: list[IPFamily] = Field(default_factory=list)  # defaulted as the API server does (lab.topology.ipfamily)
    ipFamilyPolicy: Optional[Literal[POLICIES]] = None  # type: ignore[valid-type]  # default SingleStack
    ports: list[ServicePort] = Field(default_factory=list)  # at least one, except for ExternalName
    sessionAffinity: Literal["None", "ClientIP"] = "None"
    sessionAffinityConfig: Optional[SessionAffinityConfig] = None
    externalTrafficPolicy: Literal["Cluster", "Local"] = "Cluster"
    internalTrafficPolicy: Literal["Cluster", "Local"] = "Cluster"
    publishNotReadyAddresses: bool = False
    # kube-proxy serves them (each with its family's rules); nothing routes them
    externalIPs: list[Union[IPv4Address, IPv6Address]] = Field(default_factory=list)
    loadBalancerIP: Optional[IPv4Address] = None  # asked of the pool (deprecated upstream, still honoured)
    loadBalancerSourceRanges: list[IPv4Network] = Field(default_factory=list)
    loadBalancerClass: Optional[Annotated[str, StringConstraints(min_length=1, max_length=253)]] = None
    allocateLoadBalancerNodePorts: bool = True


class Service(Strict):
    apiVersion: Literal["v1"]
    kind: Literal["Service"]
    metadata: ObjectMeta
    spec: ServiceSpec


class LabelSelectorRequirement(Strict):
    key: Annotated[str, StringConstraints(min_length=1)]
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)


class PolicySelector(Strict):
    """metav1.LabelSelector: matchLabels AND every matchExpression; empty selects everything."""

    matchLabels: dict[str, str] = Field(default_factory=dict)
    matchExpressions: list[LabelSelectorRequirement] = Field(default_factory=list)


def _one_cidr(value: object) -> object:
    """An IPv4 or IPv6 network, with _cidr_list's messages."""
    if isinstance(value, str) and "," in value:
        raise PydanticCustomError("ip_networks", "one network: {item}", {"item": value, "hint": "write one CIDR here"})
    return _cidr_list(value)[0]


AnyNetwork = Annotated[IPNetwork, BeforeValidator(_one_cidr)]


class IPBlock(Strict):
    """cidr and its excepts, of one family (the API server refuses a mix; the rules are per family)."""

    cidr: AnyNetwork
    # "except" is a Python keyword: the YAML field name is kept through the alias
    except_: list[AnyNetwork] = Field(default_factory=list, alias="except")


class NetworkPolicyPeer(Strict):
    podSelector: Optional[PolicySelector] = None
    namespaceSelector: Optional[PolicySelector] = None
    ipBlock: Optional[IPBlock] = None


class NetworkPolicyPort(Strict):
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    port: Optional[IntOrString] = None
    endPort: Optional[Port] = None


class NetworkPolicyIngressRule(Strict):
    from_: list[NetworkPolicyPeer] = Field(default_factory=list, alias="from")
    ports: list[NetworkPolicyPort] = Field(default_factory=list)


class NetworkPolicyEgressRule(Strict):
    to: list[NetworkPolicyPeer] = Field(default_factory=list)
    ports: list[NetworkPolicyPort] = Field(default_factory=list)


class NetworkPolicySpec(Strict):
    podSelector: PolicySelector
    policyTypes: Optional[list[Literal["Ingress", "Egress"]]] = None
    ingress: list[NetworkPolicyIngressRule] = Field(default_factory=list)
    egress: list[NetworkPolicyEgressRule] = Field(default_factory=list)


class NetworkPolicy(Strict):
    apiVersion: Literal["networking.k8s.io/v1"]
    kind: Literal["NetworkPolicy"]
    metadata: ObjectMeta
    spec: NetworkPolicySpec


# --- Ingress: served by the lab's ingress-nginx add-on (lab.controlplane.ingress) ---

IngressHost = Annotated[str, StringConstraints(pattern=r"^(\*\.)?" + DNS_SUBDOMAIN[1:], max_length=253)]


class ServiceBackendPort(Strict):
    number: Optional[Port] = None
    name: Optional[Annotated[str, StringConstraints(pattern=DNS_LABEL, max_length=15)]] = None


class IngressServiceBackend(Strict):
    name: SubdomainName
    port: ServiceBackendPort


class IngressBackend(Strict):
    service: IngressServiceBackend


class HTTPIngressPath(Strict):
    path: Optional[str] = None
    pathType: Literal["Exact", "Prefix", "ImplementationSpecific"]
    backend: IngressBackend


class HTTPIngressRuleValue(Strict):
    paths: Annotated[list[HTTPIngressPath], Field(min_length=1)]


class IngressRule(Strict):
    host: Optional[IngressHost] = None
    http: Optional[HTTPIngressRuleValue] = None


class IngressTLS(Strict):
    hosts: list[IngressHost] = Field(default_factory=list)
    secretName: Optional[SubdomainName] = None


class IngressSpec(Strict):
    ingressClassName: Optional[SubdomainName] = None
    defaultBackend: Optional[IngressBackend] = None
    tls: list[IngressTLS] = Field(default_factory=list)
    rules: list[IngressRule] = Field(default_factory=list)


class Ingress(Strict):
    apiVersion: Literal["networking.k8s.io/v1"]
    kind: Literal["Ingress"]
    metadata: ObjectMeta
    spec: IngressSpec


class IngressClassParameters(Strict):
    apiGroup: Optional[str] = None
    kind: str
    name: str
    namespace: Optional[str] = None
    scope: Optional[Literal["Cluster", "Namespace"]] = None


class IngressClassSpec(Strict):
    controller: Optional[str] = None
    parameters: Optional[IngressClassParameters] = None


class IngressClass(Strict):
    apiVersion: Literal["networking.k8s.io/v1"]
    kind: Literal["IngressClass"]
    metadata: ObjectMeta
    spec: IngressClassSpec = IngressClassSpec()


class Secret(Strict):
    """Only a kubernetes.io/tls Secret an Ingress names is read (tls.crt, tls.key: base64 in data,
    or PEM in stringData); any other is accepted and ignored, with a warning."""

    apiVersion: Literal["v1"]
    kind: Literal["Secret"]
    metadata: ObjectMeta
    type: str = "Opaque"
    data: dict[str, str] = Field(default_factory=dict)
    stringData: dict[str, str] = Field(default_factory=dict)
    immutable: Optional[bool] = None


class IgnoredObject(BaseModel):
    """An object of a kind with no network meaning (ServiceAccount, ConfigMap, ...): accepted as the
    API server would, with a warning, and left out of the loaded topology (lab.topology.load)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    apiVersion: str = ""
    kind: Literal[tuple(IGNORED_KINDS)]  # type: ignore[valid-type]


Manifest = Annotated[Union[Namespace, Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet, Service, NetworkPolicy,
                           Ingress, IngressClass, Secret, GatewayClass, Gateway, HTTPRoute, ReferenceGrant,
                           IgnoredObject],
                     Field(discriminator="kind")]
SUPPORTED_KINDS = {"Namespace": "v1", "Pod": "v1", "Deployment": "apps/v1", "ReplicaSet": "apps/v1",
                   "StatefulSet": "apps/v1", "DaemonSet": "apps/v1", "Service": "v1",
                   "NetworkPolicy": "networking.k8s.io/v1", "Ingress": "networking.k8s.io/v1",
                   "IngressClass": "networking.k8s.io/v1", "Secret": "v1", **GATEWAY_KINDS}


class Topology(Strict):
    name: LabName
    cluster: ClusterSpec = ClusterSpec()
    underlay: UnderlaySpec = UnderlaySpec()
    nodes: Annotated[list[NodeSpec], Field(min_length=1)]
    hosts: list[HostSpec] = Field(default_factory=list)
    public: Optional[PublicSpec] = None
    manifests: list[Manifest] = Field(default_factory=list)
    checks: list[CheckSpec] = Field(default_factory=list)

    def pod_mtu(self) -> int:
        if self.cluster.mtu is not None:
            return self.cluster.mtu
        return self.underlay.mtu - mtu_overhead(self.cluster.network, 6 in self.cluster.families)
