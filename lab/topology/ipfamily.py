"""IP families of a cluster and of its Services (pure, no pydantic): what the API server decides.

`service_families` defaults and validates a Service's `ipFamilyPolicy`, `ipFamilies` and
`clusterIPs` as the API server does on create, in its order and with its messages:
pkg/registry/core/service/strategy.go (normalizeClusterIPs: clusterIP and clusterIPs[0] kept in
step), pkg/apis/core/validation/validation.go (ValidateServiceClusterIPsRelatedFields) and
pkg/registry/core/service/storage/alloc.go (initIPFamilyFields: the policy defaults to SingleStack,
RequireDualStack for a headless Service without selector; families inferred from the given
clusterIPs, then the cluster's primary family, then the other family for PreferDualStack and
RequireDualStack on a dual-stack cluster). The lab's topology validation reports its errors with
file and line; the control plane uses its result to allocate one ClusterIP per family.
"""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import Any, Optional, Sequence, Union

IPV4, IPV6 = "IPv4", "IPv6"
POLICIES = ("SingleStack", "PreferDualStack", "RequireDualStack")
SERVICE_CIDR = {IPV4: "10.96.0.0/12", IPV6: "fd00:10:96::/112"}  # kubeadm's and kind's defaults
MAX_SERVICE_CIDR_BITS = 20   # kube-apiserver's maxCIDRBits: a larger range is refused ("too large")
MIN_SERVICE_CIDR_BITS = 4    # the lab's kubernetes (first) and kube-dns (tenth) addresses need 16

Network = Union[IPv4Network, IPv6Network]


def family_of(text: Any) -> str:
    """IPv4 or IPv6 for an address or a CIDR (a string or an ipaddress object)."""
    text = str(text)
    return IPV6 if ip_network(text, strict=False).version == 6 else IPV4


def other(family: str) -> str:
    return IPV6 if family == IPV4 else IPV4


def split_cidrs(value: Any) -> list:
    """The kube flags' "a,b" as a list; a list as given; a single value as a list of one."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",")]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def families_of(cidrs: Any) -> tuple[str, ...]:
    """The families of one CIDR or of a list of them (a comma-separated string too), in order;
    () for what is not a CIDR."""
    try:
        return tuple(family_of(c) for c in split_cidrs(cidrs))
    except (ValueError, TypeError):
        return ()


@dataclass(frozen=True)
class ServiceFamilies:
    """A Service's defaulted fields: its policy, families and the ClusterIPs asked for, one per
    family ("" = allocate; ("None",) = headless). Empty for ExternalName."""

    policy: str = ""
    families: tuple[str, ...] = ()
    requested: tuple[str, ...] = ()


Problem = tuple[tuple[Any, ...], str, str]   # (path under spec, what is wrong, how to fix)


def _ip_problems(cluster_ips: Sequence[str], families: Sequence[str]) -> list[Problem]:
    """ValidateServiceClusterIPsRelatedFields' checks of clusterIPs on their own and against ipFamilies."""
    out: list[Problem] = []
    bad = False
    for i, ip in enumerate(cluster_ips):
        if i == 0 and ip == "None":
            if len(cluster_ips) > 1:
                bad = True
                out.append((("clusterIPs",), "'None' must be the first and only value",
                            "a headless Service has clusterIPs: [None] (or only clusterIP: None)"))
            continue
        try:
            ip_address(ip)
        except ValueError:
            bad = True
            out.append((("clusterIPs", i), f"'{ip}' must be a valid IP address", "give an IPv4 or IPv6 address"))
    if len(cluster_ips) > 2:
        out.append((("clusterIPs",), "may only hold up to 2 values", "give one address per family, at most two"))
    if bad:
        return out
    if len(cluster_ips) > 1 and len({family_of(ip) for ip in cluster_ips}) != len(cluster_ips):
        out.append((("clusterIPs",), "may specify no more than one IP for each IP family",
                    "give one IPv4 and one IPv6 address"))
    if cluster_ips[:1] != ["None"]:
        for i, (ip, fam) in enumerate(zip(cluster_ips, families)):
            if family_of(ip) != fam:
                out.append((("clusterIPs", i), f"expected an {fam} value as indicated by `ipFamilies[{i}]`",
                            f"give an {fam} address, or change ipFamilies[{i}]"))
    return out


def service_families(*, type: str, cluster_ip: Optional[str], cluster_ips: Sequence[str],
                     ip_families: Sequence[str], policy: Optional[str], has_selector: bool,
                     cluster: Sequence[str]) -> tuple[ServiceFamilies, list[Problem]]:
    """The API server's defaulting and validation of a new Service's IP family fields (see the
    module's docstring). cluster: the families of the service CIDRs, primary first."""
    families, cluster = list(ip_families), list(cluster)
    if type == "ExternalName":
        set_ = [(name, v) for name, v in (("ipFamilies", families), ("ipFamilyPolicy", policy),
                                          ("clusterIPs", list(cluster_ips))) if v]
        return ServiceFamilies(), [((name,), "may not be set when `type` is 'ExternalName'", f"remove {name}")
                                   for name, _ in set_]
    ips = list(cluster_ips)
    if cluster_ip and not ips:            # normalizeClusterIPs: either field may be written alone
        ips = [cluster_ip]
    elif ips and not cluster_ip:
        cluster_ip = ips[0]
    problems: list[Problem] = []
    if ips and ips[0] != cluster_ip:
        problems.append((("clusterIPs",), "first value must match `clusterIP`",
                         "write the same address in clusterIP and clusterIPs[0], or only one of them"))
    for i, fam in enumerate(families):
        if fam in families[:i]:
            problems.append((("ipFamilies", i), f"Duplicate value: \"{fam}\"", "list each family once"))
    headless, selectorless = ips[:1] == ["None"], not has_selector
    if policy is None:
        policy = "RequireDualStack" if headless and selectorless else "SingleStack"
    problems += _ip_problems(ips, families)
    if problems:
        return ServiceFamilies(policy), problems
    if policy == "SingleStack":
        for name, n in (("cluster IPs", len(ips)), ("IP families", len(families))):
            if n == 2:
                problems.append((("ipFamilyPolicy",), f"must be 'RequireDualStack' or 'PreferDualStack' when "
                                                      f"multiple {name} are specified",
                                 "set ipFamilyPolicy: PreferDualStack or RequireDualStack, or keep one value"))
    for i, ip in enumerate(ips):
        if ip == "None":
            break
        if i >= len(families):
            if family_of(ip) not in cluster:
                problems.append((("clusterIPs", i), f"{family_of(ip)} is not configured on this cluster",
                                 f"give an address of cluster.serviceCIDR ({_ranges(cluster)})"))
            else:
                families.append(family_of(ip))
    if problems:
        return ServiceFamilies(policy), problems
    if headless and selectorless:        # families this cluster lacks are allowed here (upstream too)
        families = families or cluster[:1]
        if len(families) < 2 and policy != "SingleStack":
            families.append(other(families[0]))
        return ServiceFamilies(policy, tuple(families), ("None",)), []
    if policy == "RequireDualStack" and len(cluster) < 2:
        problems.append((("ipFamilyPolicy",), "this cluster is not configured for dual-stack services",
                         "give cluster.serviceCIDR two ranges (e.g. 10.96.0.0/12,fd00:10:96::/112), or use "
                         "PreferDualStack or SingleStack"))
    for i, fam in enumerate(families):
        if fam not in cluster:
            problems.append((("ipFamilies", i), f"{fam} not configured on this cluster",
                             f"this cluster's Services are {_ranges(cluster)}: ask for those"))
    if problems:
        return ServiceFamilies(policy), problems
    families = families or cluster[:1]
    if policy != "SingleStack" and len(families) == 1 and len(cluster) == 2:
        families.append(other(families[0]))
    requested = ("None",) if headless else tuple(ips[i] if i < len(ips) else "" for i in range(len(families)))
    return ServiceFamilies(policy, tuple(families), requested), []


def _ranges(cluster: Sequence[str]) -> str:
    return " and ".join(cluster) + (" only" if len(cluster) == 1 else "")
