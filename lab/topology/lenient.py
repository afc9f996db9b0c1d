"""What a real API server accepts but the lab has no use for: read, set aside, and warned about.

Real applications' manifests carry many fields and kinds with no network meaning (resources,
securityContext, volumes, ServiceAccounts, ConfigMaps...). Before validation their data is
cleaned here: such fields are removed and such kinds marked ignored, each with a warning at its
path; `null` where the API server reads "not set" is dropped. Fields that would change the network
in a way the lab cannot reproduce are removed with an error that says what to do instead, so the
model's "unknown field" error (with its 'did you mean') is kept for real typos.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Optional

from lab.topology.source import DocPath

_NO_NETWORK = "it has no network meaning in the lab"

# kind -> why it can be ignored
IGNORED_KINDS = {
    **{kind: "access control, not traffic" for kind in (
        "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")},
    **{kind: "configuration and storage the lab's stand-in programs do not read" for kind in (
        "ConfigMap", "PersistentVolumeClaim", "PersistentVolume", "StorageClass")},
    **{kind: "capacity and scheduling policy, not traffic" for kind in (
        "PodDisruptionBudget", "HorizontalPodAutoscaler", "VerticalPodAutoscaler", "LimitRange",
        "ResourceQuota", "PriorityClass")},
    "Kustomization": "a kustomize build file, not an object",
}

# kinds that would change the network and the lab does not model: what to write instead
UNSUPPORTED_KIND_HINTS = {
    "ReplicationController": "write it as a ReplicaSet (apps/v1) or a Deployment with the same template",
    "Job": "write it as a Pod with the job's container",
    "CronJob": "write it as a Pod with the job's container",
    "GRPCRoute": "the lab's Gateway serves HTTPRoutes only: write it as an HTTPRoute",
    "TLSRoute": "the lab's Gateway serves HTTPRoutes only: terminate TLS on an HTTPS listener",
    "TCPRoute": "the lab's Gateway serves HTTPRoutes only: expose the backend with a LoadBalancer Service",
    "UDPRoute": "the lab's Gateway serves HTTPRoutes only: expose the backend with a LoadBalancer Service",
    "Endpoints": "the lab computes endpoints from each Service's selector: give the Service a selector",
    "EndpointSlice": "the lab computes endpoints from each Service's selector: give the Service a selector",
}

_METADATA = ("annotations", "uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
             "deletionGracePeriodSeconds", "managedFields", "selfLink", "ownerReferences", "finalizers")
_CONTAINER = ("resources", "resizePolicy", "restartPolicy", "securityContext", "imagePullPolicy", "volumeMounts",
              "volumeDevices", "livenessProbe", "startupProbe", "lifecycle", "terminationMessagePath",
              "terminationMessagePolicy", "workingDir", "stdin", "stdinOnce", "tty", "envFrom")
_POD_SPEC = ("serviceAccountName", "serviceAccount", "automountServiceAccountToken", "volumes", "restartPolicy",
             "terminationGracePeriodSeconds", "activeDeadlineSeconds", "initContainers", "ephemeralContainers",
             "nodeSelector", "affinity", "tolerations", "topologySpreadConstraints", "schedulerName",
             "securityContext", "imagePullSecrets", "priorityClassName", "priority", "preemptionPolicy",
             "runtimeClassName", "overhead", "readinessGates", "hostPID", "hostIPC", "shareProcessNamespace",
             "setHostnameAsFQDN", "os", "hostUsers", "schedulingGates", "resourceClaims")
# per workload kind: its spec fields about roll-outs, storage and scaling, none about traffic
_WORKLOAD_SPEC = {
    "Deployment": ("strategy", "revisionHistoryLimit", "minReadySeconds", "progressDeadlineSeconds", "paused"),
    "ReplicaSet": ("minReadySeconds",),
    "StatefulSet": ("volumeClaimTemplates", "podManagementPolicy", "updateStrategy", "revisionHistoryLimit",
                    "minReadySeconds", "persistentVolumeClaimRetentionPolicy"),
    "DaemonSet": ("updateStrategy", "revisionHistoryLimit", "minReadySeconds"),
}
_SERVICE_SPEC = ("trafficDistribution",)
_SERVICE_LOAD_BALANCER = ("healthCheckNodePort",)
_SERVICE_PORT = ("appProtocol",)
_PROBE = ("terminationGracePeriodSeconds",)
_HTTP_GET = ("httpHeaders", "host")

# the model (as named in the JSON Schema) -> the fields relax() removes from it, for `lab schema`
IGNORED_FIELDS = {
    "ObjectMeta": _METADATA, "TemplateMeta": _METADATA, "Container": _CONTAINER, "PodSpec": _POD_SPEC,
    "DeploymentSpec": _WORKLOAD_SPEC["Deployment"], "StatefulSetSpec": _WORKLOAD_SPEC["StatefulSet"],
    "DaemonSetSpec": _WORKLOAD_SPEC["DaemonSet"], "ServiceSpec": _SERVICE_SPEC + _SERVICE_LOAD_BALANCER,
    "ServicePort": _SERVICE_PORT, "Probe": _PROBE, "HTTPGetAction": _HTTP_GET,
}
_POD_SPEC_ERRORS = {
    "hostAliases": ("hostAliases (extra /etc/hosts entries) are not supported",
                    "remove them; give the names a Service (or an ExternalName Service) with cluster DNS on"),
}

_WHY = {
    "metadata": "metadata field '{}' is ignored: " + _NO_NETWORK,
    "container": "container field '{}' is ignored: " + _NO_NETWORK,
    "pod": "pod spec field '{}' is ignored: " + _NO_NETWORK,
    "workload": "{} field '{}' is ignored: the lab creates every replica at once, never rolls out and has no storage",
    "service": "Service field '{}' is ignored: the lab's kube-proxy has no topology-aware routing",
    "service-port": "Service port field '{}' is ignored: " + _NO_NETWORK,
    "load-balancer": "Service field '{}' is ignored: the lab's load balancer announces an address only from nodes "
                     "with a ready endpoint (externalTrafficPolicy Local), so it needs no health check",
}
_HINTS = {
    "nodeSelector": "pods are spread over the nodes by the lab's scheduler; pin one with nodeName",
    "affinity": "pods are spread over the nodes by the lab's scheduler; pin one with nodeName",
    "tolerations": "pods are spread over the nodes by the lab's scheduler; pin one with nodeName",
    "topologySpreadConstraints": "pods are spread over the nodes by the lab's scheduler; pin one with nodeName",
}


@dataclass(frozen=True)
class Finding:
    path: DocPath
    message: str
    hint: Optional[str] = None
    warning: bool = True


def relax(manifests: Any) -> tuple[Any, list[Finding]]:
    """manifests (raw data) with ignored fields removed and `null`s dropped, and what was done.
    Anything of an unexpected shape is left for validation to report."""
    if not isinstance(manifests, list):
        return manifests, []
    findings: list[Finding] = []
    out = []
    for i, m in enumerate(manifests):
        m = _drop_nulls(m)
        if isinstance(m, dict):
            _manifest(m, ("manifests", i), findings)
        out.append(m)
    return out, findings


def _drop_nulls(value: Any) -> Any:
    """The API server reads `key: null` as "key not set"."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _strip(data: Any, path: DocPath, fields: tuple[str, ...], why: str, findings: list[Finding], *context: str) -> None:
    if not isinstance(data, dict):
        return
    for name in fields:
        if name in data:
            del data[name]
            findings.append(Finding(path + (name,), _WHY[why].format(*context, name), _HINTS.get(name)))


# Secrets: only the kubernetes.io/tls ones an Ingress names are read (lab.controlplane.ingress)
TLS_SECRET = "kubernetes.io/tls"
# annotations with a meaning the lab honours, kept by relax()
KEPT_ANNOTATIONS = {"IngressClass": ("ingressclass.kubernetes.io/is-default-class",)}


def _manifest(m: dict, path: DocPath, findings: list[Finding]) -> None:
    kind = m.get("kind")
    if not isinstance(kind, str):  # validation says what a kind must be
        return
    if kind in IGNORED_KINDS:
        findings.append(Finding(path + ("kind",), f"kind {kind} is ignored: {IGNORED_KINDS[kind]}"))
        return
    if kind == "Secret" and m.get("type") != TLS_SECRET:
        findings.append(Finding(path + ("kind",), "kind Secret is ignored: configuration and storage the lab's "
                                "stand-in programs do not read (only kubernetes.io/tls Secrets, for Ingress TLS)"))
    meta = m.get("metadata")
    kept = {}
    if isinstance(meta, dict) and isinstance(meta.get("annotations"), dict):
        annotations = meta["annotations"]
        kept = {k: annotations.pop(k) for k in KEPT_ANNOTATIONS.get(kind, ()) if k in annotations}
        if not annotations:
            del meta["annotations"]
    if "status" in m:
        del m["status"]
        findings.append(Finding(path + ("status",), "status is ignored: the lab computes its own"))
    _strip(meta, path + ("metadata",), _METADATA, "metadata", findings)
    if kept:
        meta["annotations"] = kept
    spec, sp = m.get("spec"), path + ("spec",)
    if kind == "Namespace" and "spec" in m:
        del m["spec"]
        findings.append(Finding(sp, "Namespace spec (finalizers) is ignored: " + _NO_NETWORK))
    if not isinstance(spec, dict):
        return
    if kind == "Pod":
        _pod_spec(spec, sp, findings)
    elif kind in _WORKLOAD_SPEC:
        _strip(spec, sp, _WORKLOAD_SPEC[kind], "workload", findings, kind)
        template = spec.get("template")
        if isinstance(template, dict):
            _strip(template.get("metadata"), sp + ("template", "metadata"), _METADATA, "metadata", findings)
            _pod_spec(template.get("spec"), sp + ("template", "spec"), findings)
    elif kind == "NetworkPolicy":
        for direction, peers in (("ingress", "from"), ("egress", "to")):
            for r, rule in _items(spec.get(direction)):
                for q, peer in _items(rule.get(peers)):
                    _ip_block(peer.get("ipBlock"), sp + (direction, r, peers, q, "ipBlock"), findings)
    elif kind == "Service":
        _networks(spec, "loadBalancerSourceRanges", sp, findings)
        _strip(spec, sp, _SERVICE_SPEC, "service", findings)
        _strip(spec, sp, _SERVICE_LOAD_BALANCER, "load-balancer", findings)
        for k, port in _items(spec.get("ports")):
            _strip(port, sp + ("ports", k), _SERVICE_PORT, "service-port", findings)


def _ip_block(block: Any, path: DocPath, findings: list[Finding]) -> None:
    if not isinstance(block, dict):
        return
    if isinstance(block.get("cidr"), str):
        block["cidr"] = _network(block["cidr"], path + ("cidr",), findings)
    _networks(block, "except", path, findings)


def _networks(data: dict, key: str, path: DocPath, findings: list[Finding]) -> None:
    if isinstance(data.get(key), list):
        data[key] = [_network(v, path + (key, i), findings) if isinstance(v, str) else v for i, v in enumerate(data[key])]


def _network(value: str, path: DocPath, findings: list[Finding]) -> str:
    """A CIDR with host bits set (10.0.0.1/24) is taken as its network, with the warning the API
    server sends back (kubectl prints it); anything else is left as it is, for validation."""
    try:
        network = ipaddress.ip_network(value, strict=False)
        address = ipaddress.ip_address(value.partition("/")[0])
    except ValueError:
        return value
    if address == network.network_address:
        return value
    one = f"{address}/{network.max_prefixlen}"
    findings.append(Finding(path, f'CIDR value "{value}" is ambiguous in this context (should be "{network}" or '
                                  f'"{one}"?); the lab uses "{network}", as the API server does',
                            f"write {network} (or {one} for the one address)"))
    return str(network)


def _items(value: Any):
    return [(k, v) for k, v in enumerate(value) if isinstance(v, dict)] if isinstance(value, list) else []


def _pod_spec(spec: Any, path: DocPath, findings: list[Finding]) -> None:
    if not isinstance(spec, dict):
        return
    _strip(spec, path, _POD_SPEC, "pod", findings)
    for name, (message, hint) in _POD_SPEC_ERRORS.items():
        if name in spec:
            del spec[name]
            findings.append(Finding(path + (name,), message, hint, warning=False))
    for j, c in _items(spec.get("containers")):
        cp = path + ("containers", j)
        _strip(c, cp, _CONTAINER, "container", findings)
        for k, env in _items(c.get("env")):
            if "valueFrom" in env:
                del env["valueFrom"]
                findings.append(Finding(cp + ("env", k, "valueFrom"),
                                        "env valueFrom (Secrets, ConfigMaps, the downward API) is not resolved: "
                                        "the variable is set to ''"))
        probe = c.get("readinessProbe")
        if isinstance(probe, dict):
            _strip(probe, cp + ("readinessProbe",), _PROBE, "container", findings)
            http = probe.get("httpGet")
            if isinstance(http, dict):
                for name in _HTTP_GET:
                    if name in http:
                        del http[name]
                        findings.append(Finding(cp + ("readinessProbe", "httpGet", name),
                                                f"readinessProbe httpGet.{name} is ignored: the stand-in servers "
                                                "answer any request"))
                if http.get("scheme", "HTTP") == "HTTP":
                    http.pop("scheme", None)
