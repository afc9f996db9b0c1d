"""The Envoy controller's job as a pure function: a Gateway, its HTTPRoutes and their endpoints in,
Envoy's configuration out (JSON: a YAML `yes` would become a bool and Envoy would refuse the file).

The files, as Envoy Gateway's xDS server would serve them, but from disk (`path_config_source`):
the bootstrap (`envoy.json`: admin on the pod's loopback, LDS and CDS from files), `lds.json` (one
listener per Gateway port, each asking RDS for its routes; HTTPS: a filter chain per listener
hostname, by SNI, with its certificate), `cds.json` (one STATIC cluster
per backend Service port, of its ready endpoints: pod IP:targetPort, as Envoy Gateway's EDS gives)
and `rds-<port>.json` (one virtual host per hostname, routes in the Gateway API's precedence).
Changes rewrite the xDS files only: Envoy applies them live, never restarted.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Sequence

from lab.controlplane.gateway_state import ADMIN_PORT, host_match
from lab.controlplane.gateway_state import (GatewayState, HTTPRouteState, RouteBackendState, RouteFilterState,
                                            RouteMatchState, RouteRuleState)
from lab.controlplane.state import ClusterState, EndpointSliceState

INVALID = "invalid-backend"          # a cluster that never exists: its share of requests gets a 500
REDIRECT_CODES = {301: "MOVED_PERMANENTLY", 302: "FOUND", 303: "SEE_OTHER", 307: "TEMPORARY_REDIRECT",
                  308: "PERMANENT_REDIRECT"}
_DURATION = re.compile(r"([0-9]+)(h|ms|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def seconds(duration: str) -> str:
    """A Gateway API duration (1h2m3s500ms) as Envoy's ("3723.5s")."""
    total = sum(int(n) * _UNIT[u] for n, u in _DURATION.findall(duration))
    return f"{total:g}s"


def cluster_name(b: RouteBackendState) -> str:
    return f"{b.namespace}/{b.service}/{b.port}"


def rds_file(port: int) -> str:
    return f"rds-{port}.json"


def route_config_name(port: int) -> str:
    return f"port-{port}"


def endpoints(state: ClusterState, slices: Sequence[EndpointSliceState], b: RouteBackendState) -> list[tuple[str, int]]:
    """(address, targetPort) of the Service port's ready endpoints."""
    svc = next((s for s in state.services if (s.namespace, s.name) == (b.namespace, b.service)), None)
    port = next((p for p in svc.ports if p.port == b.port and p.protocol == "TCP"), None) if svc else None
    if port is None:
        return []
    out = set()
    for sl in slices:
        if (sl.namespace, sl.service) != (b.namespace, b.service):
            continue
        target = next((p.port for p in sl.ports if p.name == port.name and p.protocol == "TCP"), None)
        out |= {(e.address, target) for e in sl.endpoints if e.ready and target is not None}
    return sorted(out)


def attached(state: ClusterState, gw: GatewayState, listener: str) -> list[HTTPRouteState]:
    return [r for r in state.http_routes if any(p.gateway == gw.key and listener in p.listeners for p in r.parents)]


# --- matches and precedence ---

def _path(m: RouteMatchState) -> dict:
    if m.path_type == "Exact":
        return {"path": m.path}
    if m.path_type == "RegularExpression":
        return {"safe_regex": {"regex": m.path}}
    p = m.path.rstrip("/")
    return {"prefix": "/"} if not p else {"path_separated_prefix": p}


def _string_match(kind: str, value: str) -> dict:
    return {"exact": value} if kind == "Exact" else {"safe_regex": {"regex": value}}


def match(m: RouteMatchState) -> dict:
    out = _path(m)
    headers = [{"name": name, "string_match": _string_match(kind, value)} for kind, name, value in m.headers]
    if m.method:
        headers.append({"name": ":method", "string_match": {"exact": m.method}})
    if headers:
        out["headers"] = headers
    if m.query:
        out["query_parameters"] = [{"name": name, "string_match": _string_match(kind, value)} for kind, name, value in m.query]
    return out


def precedence(m: RouteMatchState) -> tuple:
    """The Gateway API's order, most specific first: Exact, then RegularExpression, then the longest
    prefix; then a method match; then the most header matches; then the most query matches."""
    kind = {"Exact": 0, "RegularExpression": 1, "PathPrefix": 2}[m.path_type]
    return (kind, -len(m.path.rstrip("/") or "/") if kind == 2 else -len(m.path), not m.method, -len(m.headers), -len(m.query))


# --- actions and filters ---

def _headers(pairs: tuple[tuple[str, str], ...], action: str) -> list[dict]:
    return [{"header": {"key": k, "value": v}, "append_action": action} for k, v in pairs]


def _modifiers(filters: tuple[RouteFilterState, ...]) -> dict:
    out: dict = {}
    for f in filters:
        if f.type not in ("RequestHeaderModifier", "ResponseHeaderModifier"):
            continue
        side = "request" if f.type == "RequestHeaderModifier" else "response"
        add = _headers(f.set, "OVERWRITE_IF_EXISTS_OR_ADD") + _headers(f.add, "APPEND_IF_EXISTS_OR_ADD")
        if add:
            out.setdefault(f"{side}_headers_to_add", []).extend(add)
        if f.remove:
            out.setdefault(f"{side}_headers_to_remove", []).extend(f.remove)
    return out


def prefix_rewrite(m: RouteMatchState, new: str) -> dict:
    """ReplacePrefixMatch as a regex_rewrite, where Envoy's plain prefix_rewrite would glue path
    elements together ("/" + "cart" = "/newcart", or "//cart"): the Gateway API replaces whole elements."""
    prefix, new = re.escape(m.path.rstrip("/")), new.rstrip("/")
    if not prefix:
        return {"regex_rewrite": {"pattern": {"regex": "^/"}, "substitution": new + "/"}}
    if not new:
        return {"regex_rewrite": {"pattern": {"regex": f"^{prefix}/*"}, "substitution": "/"}}
    return {"regex_rewrite": {"pattern": {"regex": f"^{prefix}"}, "substitution": new}}


def _redirect(f: RouteFilterState, m: RouteMatchState) -> dict:
    out: dict = {"response_code": REDIRECT_CODES[f.status_code or 302]}
    if f.scheme:
        out["scheme_redirect"] = f.scheme
    if f.hostname:
        out["host_redirect"] = f.hostname
    if f.port:
        out["port_redirect"] = f.port
    if f.path_type == "ReplaceFullPath":
        out["path_redirect"] = f.path
    elif f.path_type == "ReplacePrefixMatch" and m.path_type == "PathPrefix":
        out.update(prefix_rewrite(m, f.path))
    return out


def _rewrite(f: RouteFilterState, m: RouteMatchState) -> dict:
    out: dict = {}
    if f.hostname:
        out["host_rewrite_literal"] = f.hostname
    if f.path_type == "ReplaceFullPath":
        out["regex_rewrite"] = {"pattern": {"regex": "^/.*$"}, "substitution": f.path}
    elif f.path_type == "ReplacePrefixMatch" and m.path_type == "PathPrefix":
        out.update(prefix_rewrite(m, f.path))
    return out


def _clusters_of(rule: RouteRuleState) -> list[dict]:
    live = [b for b in rule.backends if b.weight > 0]
    return [{"name": INVALID if b.error else cluster_name(b), "weight": b.weight} for b in live]


def _route(rule: RouteRuleState, m: RouteMatchState, owner: str) -> dict:
    out: dict = {"name": owner, "match": match(m), **_modifiers(rule.filters)}
    redirect = next((f for f in rule.filters if f.type == "RequestRedirect"), None)
    if redirect is not None:
        out["redirect"] = _redirect(redirect, m)
        return out
    clusters = _clusters_of(rule)
    if not clusters:  # no backendRefs (or all of weight 0): the Gateway API's 500
        out["direct_response"] = {"status": 500}
        return out
    action: dict = ({"cluster": clusters[0]["name"]} if len(clusters) == 1 else {"weighted_clusters": {"clusters": clusters}})
    action["cluster_not_found_response_code"] = "INTERNAL_SERVER_ERROR"
    rewrite = next((f for f in rule.filters if f.type == "URLRewrite"), None)
    if rewrite is not None:
        action.update(_rewrite(rewrite, m))
    mirrors = [f.mirror for f in rule.filters if f.type == "RequestMirror" and f.mirror and not f.mirror.error]
    if mirrors:
        action["request_mirror_policies"] = [{"cluster": cluster_name(b)} for b in mirrors]
    if rule.timeout:
        action["timeout"] = seconds(rule.timeout)
    if rule.backend_timeout:  # each try at a backend; no retries are configured, so the one try
        action["retry_policy"] = {"num_retries": 0, "per_try_timeout": seconds(rule.backend_timeout)}
    out["route"] = action
    return out


# --- the files ---

def route_config(state: ClusterState, gw: GatewayState, port: int) -> dict:
    """The RouteConfiguration of one Gateway port: a virtual host per hostname its listeners and
    routes agree on, the routes of each in precedence order (then older route, then rule order)."""
    hosts: dict[str, list[tuple[tuple, int, dict]]] = {}
    seq = 0
    for ls in (x for x in gw.listeners if x.port == port):
        if not any(c.type == "Programmed" and c.status == "True" for c in ls.conditions):
            continue
        for route in attached(state, gw, ls.name):
            names = _intersect(ls.hostname, route.hostnames)
            for i, rule in enumerate(route.rules):
                for j, m in enumerate(rule.matches):
                    seq += 1
                    entry = _route(rule, m, f"httproute/{route.key}/rule/{i}/match/{j}")
                    for h in names:
                        hosts.setdefault(h, []).append((precedence(m), seq, entry))
    vhosts = [{"name": f"{gw.key}/{h or '*'}", "domains": [h or "*"] if not h else [h, f"{h}:*"],
               "routes": [e for _, _, e in sorted(routes, key=lambda x: (x[0], x[1]))]}
              for h, routes in sorted(hosts.items(), key=lambda kv: (kv[0] == "", kv[0]))]
    return {"@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            "name": route_config_name(port), "virtual_hosts": vhosts}


def _intersect(listener: str, route_hosts: tuple[str, ...]) -> list[str]:
    return list(dict.fromkeys(h for h in (host_match(listener, r) for r in (route_hosts or ("",))) if h is not None))


def clusters(state: ClusterState, slices: Sequence[EndpointSliceState], gw: GatewayState) -> list[dict]:
    refs: dict[str, RouteBackendState] = {}
    for ls in gw.listeners:
        for route in attached(state, gw, ls.name):
            for rule in route.rules:
                for b in [*rule.backends, *(f.mirror for f in rule.filters if f.mirror)]:
                    if not b.error:
                        refs.setdefault(cluster_name(b), b)
    return [{"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": name, "type": "STATIC",
             "connect_timeout": "2s", "lb_policy": "ROUND_ROBIN",
             "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                 {"endpoint": {"address": {"socket_address": {"address": a, "port_value": p}}}}
                 for a, p in endpoints(state, slices, b)]}]}}
            for name, b in sorted(refs.items())]


def _listener(gw: GatewayState, port: int, protocol: str, run_dir: str) -> dict:
    hcm = {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": f"port-{port}", "use_remote_address": True,
        "rds": {"route_config_name": route_config_name(port), "config_source": {
            "path_config_source": {"path": f"{run_dir}/{rds_file(port)}"}, "resource_api_version": "V3"}},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}
    chains: list[dict] = []
    if protocol == "HTTPS":
        for ls in (x for x in gw.listeners if x.port == port and x.protocol == "HTTPS"):
            chain: dict = {"filters": [hcm], "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "common_tls_context": {"tls_certificates": [{
                    "certificate_chain": {"filename": f"{run_dir}/certs/{ls.name}.crt"},
                    "private_key": {"filename": f"{run_dir}/certs/{ls.name}.key"}}]}}}}
            if ls.hostname:
                chain["filter_chain_match"] = {"server_names": [ls.hostname]}
            chains.append(chain)
        listener_filters = [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}]
    else:
        chains, listener_filters = [{"filters": [hcm]}], []
    out = {"name": f"listener-{port}", "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}},
           "filter_chains": chains}
    if listener_filters:
        out["listener_filters"] = listener_filters
    return out


def ports(gw: GatewayState) -> dict[int, str]:
    """Port -> protocol of the Gateway's servable listeners (the first one's protocol on a port)."""
    out: dict[int, str] = {}
    for ls in gw.listeners:
        if ls.protocol in ("HTTP", "HTTPS"):
            out.setdefault(ls.port, ls.protocol)
    return out


def bootstrap(gw: GatewayState, run_dir: str) -> dict:
    return {
        "node": {"id": gw.key, "cluster": gw.service},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": ADMIN_PORT}}},
        "dynamic_resources": {kind: {"path_config_source": {"path": f"{run_dir}/{kind[:3]}.json"},
                                     "resource_api_version": "V3"} for kind in ("lds_config", "cds_config")},
    }


def _discovery(resources: list[dict]) -> dict:
    """A DiscoveryResponse as a file; its version is the content's hash (what Envoy reports as applied)."""
    version = hashlib.sha256(json.dumps(resources, sort_keys=True).encode()).hexdigest()[:12]
    return {"version_info": version, "resources": resources}


def render(state: ClusterState, slices: Sequence[EndpointSliceState], gw: GatewayState, run_dir: str) -> dict[str, str]:
    """file name -> JSON text, every file Envoy reads for this Gateway."""
    listeners = [{"@type": "type.googleapis.com/envoy.config.listener.v3.Listener", **_listener(gw, port, proto, run_dir)}
                 for port, proto in ports(gw).items()]
    files = {"envoy.json": bootstrap(gw, run_dir), "lds.json": _discovery(listeners),
             "cds.json": _discovery(clusters(state, slices, gw))}
    for port in ports(gw):
        files[rds_file(port)] = _discovery([route_config(state, gw, port)])
    return {name: json.dumps(body, indent=2, sort_keys=False) + "\n" for name, body in files.items()}
