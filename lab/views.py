"""What `lab get` prints: kubectl's columns and object shapes, computed from the lab's record."""
from __future__ import annotations

import platform
import time
from typing import Callable, Mapping, Optional, Sequence

from lab.controlplane.state import (
    ClusterState, ContainerState, EndpointSliceState, NodeState, PodState, ReadinessState, ServiceState, container_key,
)

Alive = Callable[[str], bool]  # container key "<ns>/<pod>/<container>" -> running?


def age(seconds: float) -> str:
    """kubectl's AGE column (apimachinery's duration.HumanDuration): 90s, 5m30s, 2h15m, 3d4h."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    m, h = s // 60, s // 3600
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if h < 24 * 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if h < 24 * 365 * 2:
        return f"{d}d"
    y = d // 365
    if h < 24 * 365 * 8:
        return f"{y}y{d % 365}d" if d % 365 else f"{y}y"
    return f"{y}y"


def summary(status: dict) -> str:
    """A controller's status in one cell: each key with its value, or how many entries it has."""
    if not status:
        return "<none>"
    return ", ".join(f"{k}: {len(v) if isinstance(v, (dict, list)) else v}" for k, v in status.items())


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    return "\n".join("   ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip()
                     for row in [header, *rows])


def pod_status(pod: PodState, alive: Alive, ready: Optional[Mapping[str, bool]] = None) -> tuple[str, str]:
    """READY counts containers that run and pass their readinessProbe (`ready`: container key ->
    the prober's verdict; a container without a probe is ready while it runs)."""
    ready = ready or {}
    up = {k: alive(k) for k in (container_key(pod, c) for c in pod.containers)}
    status = "Running" if all(up.values()) else "Error"
    return f"{sum(running and ready.get(k, True) for k, running in up.items())}/{len(up)}", status


def pod_rows(state: ClusterState, alive: Alive, created: float, namespace: Optional[str], wide: bool,
             ready: Optional[Mapping[str, bool]] = None):
    header = (["NAMESPACE"] if namespace is None else []) + ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    if wide:
        header += ["IP", "NODE", "NOMINATED NODE", "READINESS GATES", "NETNS"]
    rows = []
    for p in sorted(state.pods, key=lambda p: (p.namespace, p.name)):  # the API server's order
        if namespace is not None and p.namespace != namespace:
            continue
        count, status = pod_status(p, alive, ready)
        row = ([p.namespace] if namespace is None else []) + [p.name, count, status, "0", age(time.time() - created)]
        if wide:
            row += [p.ip, p.node, "<none>", "<none>", p.netns]
        rows.append(row)
    return header, rows


def node_rows(state: ClusterState, created: float, wide: bool, stopped: Sequence[str] = ()):
    header = ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    if wide:
        header += ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME", "POD-CIDR", "NETNS"]
    rows = []
    for n in state.nodes:
        row = [n.name, "NotReady" if n.name in stopped else "Ready", n.role if n.role == "control-plane" else "<none>",
               age(time.time() - created), "k8s-netlab"]
        if wide:
            row += [n.ip, "<none>", "Mininet host", platform.release(), "netns", n.pod_cidr, n.netns]
        rows.append(row)
    return header, rows


def controller(p: PodState) -> Optional[tuple[str, str]]:
    """(kind, name) of what controls a pod: a Deployment's pods belong to its ReplicaSet."""
    if not p.owner:
        return None
    kind, _, name = p.owner.partition("/")
    return ("ReplicaSet", p.name.rsplit("-", 1)[0]) if kind == "Deployment" else (kind, name)


def pod_object(p: PodState, state: ClusterState, alive: Alive, ready: Optional[Mapping[str, bool]] = None) -> dict:
    ready = ready or {}
    _, status = pod_status(p, alive, ready)
    meta = {"name": p.name, "namespace": p.namespace, "labels": dict(p.labels)}
    if p.owner:
        kind, name = controller(p)
        meta["ownerReferences"] = [{"kind": kind, "name": name}]
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": meta,
        "spec": {
            "nodeName": p.node, "hostNetwork": p.host_network,
            "containers": [
                {"name": c.name, "image": c.image, **({"command": list(c.argv)} if c.argv else {}),
                 "ports": [{"containerPort": x.port, "protocol": x.protocol, **({"name": x.name} if x.name else {}),
                            **({"hostPort": x.host_port} if x.host_port else {}), **({"hostIP": x.host_ip} if x.host_ip else {})}
                           for x in c.ports]}
                for c in p.containers
            ],
        },
        "status": {
            "phase": "Running" if status == "Running" else "Failed",
            "hostIP": state.node(p.node).ip, "podIP": p.ip, "podIPs": [{"ip": ip} for ip in p.pod_ips],
            "containerStatuses": [{"name": c.name, "started": alive(container_key(p, c)),
                                   "ready": alive(container_key(p, c)) and ready.get(container_key(p, c), True)}
                                  for c in p.containers],
        },
    }



def probe_failure(detail: str) -> Optional[str]:
    """What the kubelet's Unhealthy event says of a readiness probe's last result (lab.node.prober's
    detail, e.g. "GET /x (port 8080) -> 404"), or None when that result was a success or no probe
    has run yet."""
    what, arrow, result = detail.rpartition(" -> ")
    if detail.startswith("GET "):
        if arrow and result.isdigit():
            path, _, port = what[len("GET "):].rstrip(")").rpartition(" (port ")
            return None if 200 <= int(result) < 400 else \
                f"HTTP probe failed with statuscode: {result} (GET {path} on port {port})"
        return f"HTTP probe failed: {detail}"
    if detail.startswith("tcp "):
        return None if detail.endswith(": connected") else f"TCP probe failed: {detail}"
    if detail.startswith("grpc "):
        return None if arrow and result == "SERVING" else f"gRPC probe failed: {detail}"
    if detail.startswith("exec "):
        return None if arrow and result == "exit 0" else f"command failed: {detail}"
    return None  # "initialDelaySeconds N: not probed yet", or nothing recorded


def _probe_spec(r: ReadinessState) -> str:
    """kubectl's Readiness line: handler, then delay, timeout, period and thresholds."""
    handler = {"http": f"http-get http://:{r.port}{r.path}", "tcp": f"tcp-socket :{r.port}",
               "grpc": f"grpc <pod>:{r.port} {r.service or '<service>'}",
               "exec": f"exec [{' '.join(r.command)}]"}[r.kind]
    return (f"{handler} delay={r.initial_delay}s timeout={r.timeout}s period={r.period}s "
            f"#success={r.success_threshold} #failure={r.failure_threshold}")


def _fields(rows: Sequence[tuple[str, str]], indent: str) -> list[str]:
    width = max(len(k) for k, _ in rows) + 2
    return [f"{indent}{(k + ':' if k else '').ljust(width)}{v}".rstrip() for k, v in rows]


def _image(c: ContainerState) -> str:
    if not c.stand_in_for:
        return c.image
    runs = (f"netexec serving {', '.join(f'{x.port}/{x.protocol}' for x in c.ports)}" if c.image == "netexec"
            else "pause, nothing to serve")
    return f"{c.stand_in_for} (not built in: the lab runs {runs})"


def describe_pod(p: PodState, state: ClusterState, alive: Alive, ready: Mapping[str, bool],
                 probe_detail: Mapping[str, str], created: float, failing: Optional[Mapping[str, list]] = None,
                 now: Optional[float] = None) -> str:
    """`lab describe pod`, in kubectl's shape: the pod, its containers (state, readiness and the
    probe's spec), its conditions and the events the kubelet would have recorded: a Warning
    Unhealthy for each container whose last readiness probe failed, saying what it returned, with
    its age and count as kubectl shows an aggregated event (`8s (x5 over 48s)`)."""
    now, failing = time.time() if now is None else now, failing or {}
    node = state.node(p.node)
    labels = [f"{k}={v}" for k, v in sorted(p.labels)] or ["<none>"]
    count, status = pod_status(p, alive, ready)
    head = [("Name", p.name), ("Namespace", p.namespace), ("Priority", "0"), ("Node", f"{p.node}/{node.ip}"),
            ("Start Time", time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(created))),
            ("Labels", labels[0]), *[("", x) for x in labels[1:]],
            ("Annotations", "<none>"), ("Status", "Running" if status == "Running" else "Failed"), ("IP", p.ip), ("IPs", "")]
    if p.owner:
        head.append(("Controlled By", "/".join(controller(p))))
    out = _fields(head, "")
    at = out.index("IPs:") + 1
    out[at:at] = [f"  IP:  {ip}" for ip in p.pod_ips]
    out.append("Containers:")
    events, all_ready = [], True
    for c in p.containers:
        key = container_key(p, c)
        running = alive(key)
        is_ready = running and ready.get(key, True)
        all_ready = all_ready and is_ready
        ports = [f"{x.port}/{x.protocol}" for x in c.ports]
        rows = [("Image", _image(c))]
        if c.argv:
            rows += [("Command", c.argv[0]), *[("", a) for a in c.argv[1:]]]
        rows += [("Port" if len(ports) < 2 else "Ports", ", ".join(ports) or "<none>"),
                 ("Host Port", ", ".join(f"{x.host_port}/{x.protocol}" for x in c.ports) or "<none>"),
                 ("State", "Running" if running else "Terminated"), ("Ready", str(is_ready)), ("Restart Count", "0")]
        if c.readiness:
            rows.append(("Readiness", _probe_spec(c.readiness)))
        rows.append(("Environment", "" if c.env else "<none>"))
        out.append(f"  {c.name}:")
        out += _fields(rows, "    ")
        out += [f"      {k}:  {v}" for k, v in c.env]
        failed = probe_failure(probe_detail.get(key, "")) if c.readiness and running else None
        if failed:
            events.append(("Warning", "Unhealthy", _event_age(failing.get(key), now), "kubelet",
                           f"Readiness probe failed: {failed}"))
    scheduled = [("Initialized", "True"), ("Ready", str(all_ready)), ("ContainersReady", str(all_ready)),
                 ("PodScheduled", "True")]
    out += ["Conditions:", *("  " + line for line in render_table(["Type", "Status"], scheduled).splitlines())]
    if not events:
        return "\n".join(out + ["Events:  <none>"])
    table = render_table(["Type", "Reason", "Age", "From", "Message"],
                         [["----", "------", "---", "----", "-------"], *events])
    return "\n".join(out + ["Events:", *("  " + line for line in table.splitlines())])


def _event_age(seen: Optional[list], now: float) -> str:
    """kubectl's Age of an event: since it was last seen, and how often over how long."""
    if not seen:
        return "<unknown>"
    first, last, count = seen
    return age(now - last) + (f" (x{count} over {age(last - first)})" if count > 1 else "")


def node_object(n: NodeState) -> dict:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": n.name, "labels": {**dict(n.labels), "kubernetes.io/hostname": n.name,
                                                 **({"node-role.kubernetes.io/control-plane": ""}
                                                    if n.role == "control-plane" else {})}},
        "spec": {"podCIDR": n.pod_cidr, "podCIDRs": list(n.cidrs)},
        "status": {"addresses": [{"type": "InternalIP", "address": n.ip},
                                 *([{"type": "InternalIP", "address": n.ip6}] if n.ip6 else []),
                                 {"type": "Hostname", "address": n.name}]},
    }


def as_list(items: list[dict]) -> dict:
    return {"apiVersion": "v1", "kind": "List", "items": items}


def _ports(svc: ServiceState) -> str:
    return ",".join(f"{p.port}{f':{p.node_port}' if p.node_port else ''}/{p.protocol}" for p in svc.ports) or "<none>"


def service_rows(state: ClusterState, created: float, namespace: Optional[str], wide: bool):
    header = (["NAMESPACE"] if namespace is None else []) + ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE",
                                                             "DATAPLANE"]
    if wide:
        header.append("SELECTOR")
    rows = []
    for s in sorted(state.services, key=lambda s: (s.namespace, s.name)):
        if namespace is not None and s.namespace != namespace:
            continue
        row = ([s.namespace] if namespace is None else []) + [
            s.name, s.type, s.cluster_ip or "None", _external_ip(s), _ports(s), age(time.time() - created),
            dataplane(state, s)[0]]
        if wide:
            row.append(",".join(f"{k}={v}" for k, v in s.selector) if s.selector else "<none>")
        rows.append(row)
    return header, rows


def _external_ip(s: ServiceState) -> str:
    """kubectl's getServiceExternalIP: the load-balancer address, then the externalIPs; a LoadBalancer
    without an address waits for one (<pending>): no pool, or another loadBalancerClass."""
    shown = ([s.load_balancer_ip] if s.load_balancer_ip else []) + list(s.external_ips)
    if shown:
        return ",".join(shown)
    return "<pending>" if s.type == "LoadBalancer" else "<none>"


def _listed(items: Sequence[str], limit: int = 3) -> str:
    """kubectl's listWithMoreString: the first three, then ' + N more...'; '<unset>' if none."""
    text = ",".join(items[:limit])
    return f"{text} + {len(items) - limit} more..." if len(items) > limit else text or "<unset>"


def endpointslice_rows(slices: Sequence[EndpointSliceState], created: float, namespace: Optional[str]):
    """kubectl's columns: PORTS and ENDPOINTS list every port and address, ready or not
    (`-o yaml` shows each endpoint's conditions)."""
    header = (["NAMESPACE"] if namespace is None else []) + ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    rows = []
    for sl in sorted(slices, key=lambda s: (s.namespace, s.name)):
        if namespace is not None and sl.namespace != namespace:
            continue
        rows.append(([sl.namespace] if namespace is None else []) + [
            sl.name, sl.address_type, _listed([str(p.port) for p in sl.ports]), _listed([e.address for e in sl.endpoints]),
            age(time.time() - created)])
    return header, rows


def service_object(s: ServiceState) -> dict:
    spec = {
        "type": s.type, "clusterIP": s.cluster_ip or "None", "clusterIPs": list(s.cluster_ips) or [s.cluster_ip or "None"],
        "ports": [{**({"name": p.name} if p.name else {}), "protocol": p.protocol, "port": p.port,
                   "targetPort": int(p.target_port) if p.target_port.isdigit() else p.target_port,
                   **({"nodePort": p.node_port} if p.node_port else {})} for p in s.ports],
        "sessionAffinity": s.session_affinity, "internalTrafficPolicy": s.internal_traffic_policy,
    }
    if s.type != "ExternalName":   # the API server leaves them unset there
        spec["ipFamilies"], spec["ipFamilyPolicy"] = list(s.families()), s.ip_family_policy or "SingleStack"
    if s.selector is not None:
        spec["selector"] = dict(s.selector)
    if s.session_affinity == "ClientIP":
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": s.affinity_timeout}}
    if s.type in ("NodePort", "LoadBalancer"):
        spec["externalTrafficPolicy"] = s.external_traffic_policy
    if s.publish_not_ready:
        spec["publishNotReadyAddresses"] = True
    if s.external_ips:
        spec["externalIPs"] = list(s.external_ips)
    if s.source_ranges:
        spec["loadBalancerSourceRanges"] = list(s.source_ranges)
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": s.name, "namespace": s.namespace}, "spec": spec}
    if s.type == "LoadBalancer":  # empty until a load-balancer implementation gives it an address
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": s.load_balancer_ip, "ipMode": "VIP"}]}
                         if s.load_balancer_ip else {}}
    return obj


def endpointslice_object(sl: EndpointSliceState) -> dict:
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": sl.address_type,
        "metadata": {"name": sl.name, "namespace": sl.namespace, "labels": {"kubernetes.io/service-name": sl.service}},
        "ports": [{"name": p.name, "protocol": p.protocol, "port": p.port} for p in sl.ports],
        "endpoints": [{"addresses": [e.address], "nodeName": e.node,
                       "targetRef": {"kind": "Pod", "namespace": e.pod.split("/")[0], "name": e.pod.split("/")[1]},
                       "conditions": {"ready": e.ready, "serving": e.serving, "terminating": e.terminating}}
                      for e in sl.endpoints],
    }


def route_rows(state: ClusterState, routes: dict[str, list[dict]]):
    """Each node's routes to pod addresses (`ip -j route` of each node in `routes`) and who put
    them there: kernel (a connected bridge), bgp (learned from a peer), boot (host-gw, vxlan), or a
    CNI's /32 to a pod veth (ptp)."""
    import ipaddress

    pods_nets = [ipaddress.ip_network(state.pod_cidr_of(f)) for f in state.families]
    header = ["NODE", "DESTINATION", "VIA", "DEV", "SOURCE"]
    rows = []
    for node in state.nodes:
        for r in routes.get(node.name, ()):
            dst = r.get("dst", "")
            net = ipaddress.ip_network(dst, strict=False) if dst != "default" else None
            if net is None or not any(net.version == p.version and net.subnet_of(p) for p in pods_nets):
                continue
            source = {"bgp": "bgp", "kernel": "kernel (connected)", "boot": state.network}.get(r.get("protocol", "boot"),
                                                                                            r.get("protocol", ""))
            if r.get("type") == "blackhole":
                source = "blackhole (own podCIDR, announced)"
            elif "/" not in dst and source == state.network:
                source = f"cni {state.cni} (pod veth)"
            rows.append([node.name, dst, r.get("gateway", "-"), r.get("dev", "-"), source])
    return header, rows


# --- the dataplane that serves a Service ---

NOT_PROXIED = {"none/headless": "none: headless, DNS answers with the endpoints",
               "none/dns": "none: ExternalName, DNS answers with a CNAME",
               "none/skipped": "none: a skip label keeps kube-proxy away"}


def dataplane(state: ClusterState, s: ServiceState) -> tuple[str, str]:
    """What serves this Service's addresses on the nodes, as (a short key, a sentence): kube-proxy's
    rules in the cluster's mode, or what the mode's Proxier says it has instead (eBPF programs)."""
    from lab.kube_proxy import proxiers  # noqa: PLC0415 (Services only)

    key = "none/dns" if s.type == "ExternalName" else "none/headless" if not s.cluster_ip else \
        "none/skipped" if not s.proxied else ""
    if key:
        return key, NOT_PROXIED[key]
    kind = proxiers.of(state)
    if kind.dataplane:
        return kind.dataplane(s)
    return f"kube-proxy/{kind.name}", f"kube-proxy's {kind.name} rules in every node's network namespace"


def describe_service(s: ServiceState, state: ClusterState, slices: Sequence[EndpointSliceState],
                     live: Optional[Mapping[str, Mapping[tuple[str, bytes], bytes]]] = None) -> str:
    """`lab describe svc`, in kubectl's shape, and the dataplane serving it; where the mode has maps
    (proxy ebpf), each node's entries (read from the maps: `live`) beside what the model would write."""
    mine = [sl for sl in slices if (sl.namespace, sl.service) == (s.namespace, s.name)]
    eps = [f"{e.address}:{p.port}" for sl in mine for e in sl.endpoints if e.ready for p in sl.ports]
    rows = [("Name", s.name), ("Namespace", s.namespace),
            ("Selector", ",".join(f"{k}={v}" for k, v in s.selector) if s.selector else "<none>"),
            ("Type", s.type), ("IP", s.cluster_ip or "None")]
    if s.load_balancer_ip:
        rows.append(("LoadBalancer Ingress", s.load_balancer_ip))
    if s.external_ips:
        rows.append(("External IPs", ",".join(s.external_ips)))
    for p in s.ports:
        rows += [("Port", f"{p.name or '<unset>'}  {p.port}/{p.protocol}"), ("TargetPort", f"{p.target_port}/{p.protocol}")]
        if p.node_port:
            rows.append(("NodePort", f"{p.name or '<unset>'}  {p.node_port}/{p.protocol}"))
    rows += [("Endpoints", _listed(eps)), ("Session Affinity", s.session_affinity)]
    if s.type in ("NodePort", "LoadBalancer"):
        rows.append(("External Traffic Policy", s.external_traffic_policy))
    rows += [("Internal Traffic Policy", s.internal_traffic_policy), ("Dataplane", dataplane(state, s)[1])]
    out = _fields(rows, "")
    from lab.kube_proxy import proxiers  # noqa: PLC0415 (Services only)

    kind = proxiers.of(state)
    if live is not None and kind.map_rows and s.cluster_ip and s.proxied:
        table = render_table(["NODE", "ADDRESS", "MAP", "SERVICE-ID", "BACKENDS", "MODEL", "CHECK"],
                             kind.map_rows(state, s, slices, live))
        out += ["Map entries (bpftool map dump, beside what the model writes):", *("  " + l for l in table.splitlines())]
    return "\n".join(out + ["Events:  <none>"])
