"""The Kubernetes DNS specification as dnsmasq data (pure).

A hosts file (A and AAAA records, and PTR in in-addr.arpa and ip6.arpa; dnsmasq re-reads its hosts
directory by itself when it changes, so records follow Services and endpoints without a restart) and a config file (SRV and CNAME
records, which dnsmasq reads only at start). `local=/<domain>/` makes every other name in the
cluster domain NXDOMAIN instead of being forwarded.

Dual-stack as the DNS specification and CoreDNS have it: a Service has an A or AAAA record per
ClusterIP (clusterIPs, each family), a headless Service one per ready endpoint of each of its
EndpointSlices (addressType IPv4 and IPv6), and a pod one per address (the IPv6 one dashed:
fd00-10-244--2.<namespace>.pod.<domain>). A query for a family a name has no address of gets
NODATA.
"""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_address
from typing import Sequence

from lab.controlplane.endpoints import ready
from lab.controlplane.state import ClusterState, EndpointSliceState, HostState, PodState
from lab.topology.constants import kube_dns_ip


@dataclass(frozen=True)
class Records:
    hosts: tuple[tuple[str, str], ...]          # (ip, name): A or AAAA, and PTR for the first name of an ip
    srv: tuple[tuple[str, str, int], ...]       # (name, target, port)
    cname: tuple[tuple[str, str], ...]          # (alias, target)


NODE_LOCAL_IP = "169.254.20.10"  # NodeLocal DNSCache's link-local address, on every node
# No pid file: every dnsmasq on the machine shares the default one (/run/dnsmasq.pid), and of two
# starting at the same moment one loses the unlink-then-O_EXCL race and exits ("failed to open
# pidfile ... File exists") -- a node cache or a restarted kube-dns gone at random. The lab finds
# its dnsmasq by namespace and record, never by pid file.
NO_PID_FILE = "pid-file="


def dns_ip(state: ClusterState) -> str:
    """kube-dns's ClusterIP: the tenth address of the service CIDR (10.96.0.10)."""
    return str(kube_dns_ip(state.service_cidr))


def cluster_dns(state: ClusterState) -> str:
    """What the kubelet's --cluster-dns points pods at: the node's cache if there is one."""
    return NODE_LOCAL_IP if state.dns_node_cache else dns_ip(state)


def node_cache_config(state: ClusterState, log: str) -> str:
    """NodeLocal DNSCache as a dnsmasq on the node: answers on 169.254.20.10, caches, and asks
    kube-dns (through its ClusterIP, as node-local-dns asks its kube-dns-upstream Service)."""
    lines = ["# NodeLocal DNSCache: a caching resolver on this node", "keep-in-foreground", NO_PID_FILE, "no-resolv",
             "no-hosts", "port=53", f"listen-address={NODE_LOCAL_IP}", "bind-interfaces", "cache-size=1000",
             f"server={dns_ip(state)}", "log-queries", f"log-facility={log}"]
    return "\n".join(lines) + "\n"


def pod_a_name(pod: PodState, domain: str, ip: str = "") -> str:
    """a-b-c-d.<namespace>.pod.<domain> (for an IPv6 address: its colons dashed)."""
    return f"{_dashed(ip or pod.ip)}.{pod.namespace}.pod.{domain}"


def _dashed(address: str) -> str:
    """CoreDNS's endpointHostname of an address: dots, or an IPv6 address's colons, become dashes."""
    return address.replace(".", "-").replace(":", "-")


def records(state: ClusterState, slices: Sequence[EndpointSliceState]) -> Records:
    d = state.dns_domain
    # A records, in the order that makes dnsmasq's PTR (the first name of an address) what the DNS
    # spec says: a ClusterIP's Service, a headless endpoint's own name, then pod records; the
    # headless Service's name (shared by all its endpoints) never comes first.
    services_a, endpoints_a, pods_a, headless_a = [], [], [], []
    srv: list[tuple[str, str, int]] = []
    cname: list[tuple[str, str]] = []
    pods = {p.key: p for p in state.pods}
    for svc in state.services:
        fqdn = f"{svc.name}.{svc.namespace}.svc.{d}"
        if svc.type == "ExternalName":
            cname.append((fqdn, svc.external_name))
            continue
        if svc.cluster_ip:
            services_a += [(ip, fqdn) for ip in svc.cluster_ips or (svc.cluster_ip,)]
            srv += [(f"_{p.name}._{p.protocol.lower()}.{fqdn}", fqdn, p.port) for p in svc.ports if p.name]
            continue
        # headless: one A record per ready endpoint, and names for the pods behind it
        for sl in slices:
            if (sl.namespace, sl.service) != (svc.namespace, svc.name):
                continue
            for e in ready(sl.endpoints):
                target = f"{_endpoint_label(pods.get(e.pod), svc.name, e.address)}.{fqdn}"
                headless_a.append((e.address, fqdn))
                endpoints_a.append((e.address, target))
                srv += [(f"_{p.name}._{p.protocol.lower()}.{fqdn}", target, p.port) for p in sl.ports if p.name]
    pods_a = [(ip, pod_a_name(p, d, ip)) for p in state.pods if not p.host_network for ip in p.pod_ips]
    hosts = services_a + endpoints_a + pods_a + headless_a
    return Records(tuple(dict.fromkeys(hosts)), tuple(dict.fromkeys(srv)), tuple(cname))


def _endpoint_label(pod, service: str, address: str) -> str:
    """A pod behind a headless Service is <hostname> when its subdomain names the Service,
    else its dashed IP (as the DNS spec allows)."""
    if pod is not None and pod.hostname and pod.subdomain == service:
        return pod.hostname
    return _dashed(address)


def hosts_file(recs: Records) -> str:
    """/etc/hosts format; dnsmasq answers PTR with the first name listed for an address, so the
    pod and Service names come before the secondary ones."""
    by_ip: dict[str, list[str]] = {}
    for ip, name in recs.hosts:
        by_ip.setdefault(ip, []).append(name)
    order = sorted(by_ip.items(), key=lambda kv: (ip_address(kv[0]).version, ip_address(kv[0])))
    return "".join(f"{ip} {' '.join(names)}\n" for ip, names in order)


def upstream_host(state: ClusterState) -> HostState | None:
    """Who plays the outside world's DNS: the first plain host the nodes reach directly."""
    return next(iter(state.underlay_hosts()), None) if state.dns_domain else None


def upstream(state: ClusterState) -> str | None:
    """The nodes' upstream resolver's address."""
    host = upstream_host(state)
    return host.ip if host else None


def dnsmasq_config(state: ClusterState, recs: Records, hosts_dir: str, log: str) -> str:
    up = upstream(state)
    lines = [
        "# kube-dns for the lab: dnsmasq with the Kubernetes DNS records (lab/dns/records.py)",
        "keep-in-foreground", NO_PID_FILE, "no-resolv", "no-hosts", "no-poll", "port=53", "cache-size=0",
        f"local=/{state.dns_domain}/", f"hostsdir={hosts_dir}", "log-queries=extra", f"log-facility={log}",
        *([f"server={up}"] if up else []),  # everything outside the cluster domain, as CoreDNS forwards
        *(f"srv-host={name},{target},{port},0,100" for name, target, port in recs.srv),
        *(f"cname={alias},{target}" for alias, target in recs.cname),
    ]
    return "\n".join(lines) + "\n"


UPSTREAM_HOSTS = ("dns", "upstream-hosts")  # under the lab's run directory: names others publish (Ingress, Gateway hosts)


def upstream_config(state: ClusterState, log: str, hosts_dir: str = "") -> str:
    """The outside world's DNS (on the first plain host): the machines of the underlay by name, the
    names published in hosts_dir (re-read by dnsmasq when they change: Ingress hosts, as a real DNS
    points them at the cluster's entry), and NXDOMAIN for every other name (`local=/#/`), as the
    internet answers a name nobody has; without it dnsmasq would refuse, and glibc would ask again."""
    machines = [*state.nodes, *state.hosts]
    lines = ["# the lab's upstream resolver: underlay machines by name", "keep-in-foreground", NO_PID_FILE, "no-resolv",
             "no-hosts", "local=/#/", "port=53", "log-queries", f"log-facility={log}",
             *(f"host-record={m.name},{m.ip}" + (f",{m.ip6}" if m.ip6 else "") for m in machines),
             *([f"hostsdir={hosts_dir}"] if hosts_dir else [])]
    return "\n".join(lines) + "\n"


def resolv_conf(state: ClusterState, pod: PodState) -> str | None:
    """What the kubelet writes into the pod. dnsPolicy Default gets the node's (the upstream
    resolver), None when the lab has none."""
    d = state.dns_domain
    policy = pod.dns_policy
    if policy == "ClusterFirst" and pod.host_network:
        policy = "Default"  # hostNetwork pods need ClusterFirstWithHostNet for cluster DNS
    if policy == "ClusterFirstWithHostNet":
        policy = "ClusterFirst"
    if policy == "ClusterFirst" and not d:
        policy = "Default"  # no cluster DNS: the kubelet falls back to the node's resolver
    nameservers, searches, options = [], [], []
    if policy == "ClusterFirst":
        nameservers = [cluster_dns(state)]
        searches = [f"{pod.namespace}.svc.{d}", f"svc.{d}", d]
        options = [("ndots", "5")]
    elif policy == "Default" and upstream(state):
        nameservers = [upstream(state)]  # the node's resolv.conf
    elif policy == "Default" and not (pod.dns_nameservers or pod.dns_searches or pod.dns_options):
        return None
    nameservers += [n for n in pod.dns_nameservers if n not in nameservers]
    searches += [s for s in pod.dns_searches if s not in searches]
    merged = dict(options)
    merged.update(dict(pod.dns_options))
    out = [f"nameserver {n}" for n in nameservers[:3]]
    if searches:
        out.append("search " + " ".join(searches[:32]))
    if merged:
        out.append("options " + " ".join(k if v is None else f"{k}:{v}" for k, v in merged.items()))
    return "\n".join(out) + "\n"
