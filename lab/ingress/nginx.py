"""The ingress-nginx controller's job as a pure function: Ingresses and endpoints in, nginx.conf out.

As ingress-nginx renders it: one server per host (rules of every Ingress merged), a default
server for rules without a host and the defaultBackend (404 otherwise), locations longest first
(Prefix /p is `location = /p` and `location /p/`, path elements as Kubernetes defines them;
Exact is `location = /p`; an Exact path wins over the same Prefix), upstreams of the Service's
ready endpoints (pod IP:targetPort, not the ClusterIP), 503 when it has none, TLS hosts on 443
with their certificate and HTTP answered by a 308 to HTTPS (ssl-redirect). Every path nginx
writes is under the lab's run directory.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from lab.controlplane.endpoints import port_endpoints, ready
from lab.controlplane.state import ClusterState, EndpointSliceState, IngressPathState

DEFAULT_CERT = "_default"  # the certificate of the default server (ingress-nginx's "fake certificate")
HTTP, HTTPS = 80, 443


@dataclass(frozen=True)
class Location:
    match: str          # "= /p" or "/p/"
    upstream: str       # "" when the backend has no ready endpoint (503)
    owner: str          # namespace/ingress, for the comment


def cert_name(host: str) -> str:
    """A host's certificate's file stem (a wildcard's '*' kept out of file names)."""
    return host.replace("*", "_wildcard")


def upstream_name(namespace: str, service: str, port: str) -> str:
    return f"{namespace}-{service}-{port}"


def endpoints(state: ClusterState, slices: Sequence[EndpointSliceState], namespace: str, path: IngressPathState) -> list[str]:
    """address:port of the backend Service port's ready endpoints; [] when the Service or port is missing."""
    svc = next((s for s in state.services if (s.namespace, s.name) == (namespace, path.service)), None)
    port = next((p for p in svc.ports if (str(p.port) == path.port if path.port.isdigit() else p.name == path.port)
                 and p.protocol == "TCP"), None) if svc else None
    if port is None:
        return []
    return [str(e) for e in ready(port_endpoints(svc, port, slices))]


def _matches(path: IngressPathState) -> list[str]:
    p = path.path.rstrip("/") or "/"
    if path.path_type == "Exact":
        return [f"= {path.path}"]
    return ["/"] if p == "/" else [f"= {p}", f"{p}/"]


def _sort_key(loc: Location) -> tuple:
    """ingress-nginx's order: the Ingress path's length, longest first; Exact before Prefix."""
    path = loc.match.removeprefix("= ").rstrip("/") or "/"
    return (-len(path), path, not loc.match.startswith("= "))


def servers(state: ClusterState) -> dict[str, list[tuple[str, IngressPathState]]]:
    """host ("" = the default server) -> (namespace/ingress, path), Ingresses in order."""
    out: dict[str, list[tuple[str, IngressPathState]]] = {"": []}
    for ing in state.ingresses:
        for p in ing.paths:
            out.setdefault(p.host, []).append((ing.key, p))
    for ing in state.ingresses:  # rules first: a defaultBackend only fills what they leave
        if ing.default_backend is not None:
            out[""].append((ing.key, ing.default_backend))
    return out


def tls_hosts(state: ClusterState) -> list[str]:
    return list(dict.fromkeys(h for ing in state.ingresses for t in ing.tls for h in t.hosts))


def render(state: ClusterState, slices: Sequence[EndpointSliceState], run_dir: str) -> str:
    upstreams: dict[str, list[str]] = {}
    blocks = []
    tls = set(tls_hosts(state))
    for host, paths in servers(state).items():
        locations: dict[str, Location] = {}
        for owner, p in sorted(paths, key=lambda op: op[1].path_type != "Exact"):  # Exact wins its own path
            ns = owner.split("/")[0]
            name = upstream_name(ns, p.service, p.port)
            eps = endpoints(state, slices, ns, p)
            if eps:
                upstreams[name] = eps
            for match in _matches(p):
                locations.setdefault(match, Location(match, name if eps else "", owner))  # the first Ingress wins
        blocks.append(_server(host, sorted(locations.values(), key=_sort_key), host in tls, run_dir))
    head = [
        f"# ingress-nginx for lab {state.lab}: rendered from its Ingress objects (lab/ingress/nginx.py)",
        "daemon off;", "worker_processes 1;", f"pid {run_dir}/nginx.pid;", f"error_log {run_dir}/error.log notice;",
        "events { worker_connections 1024; }", "http {",
        f"    access_log {run_dir}/access.log;",
        *(f"    {kind}_temp_path {run_dir}/tmp/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")),
        "    server_names_hash_bucket_size 128;", "    proxy_http_version 1.1;", "    proxy_connect_timeout 5s;",
        "    proxy_set_header Host $host;", "    proxy_set_header X-Real-IP $remote_addr;",
        "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "    proxy_set_header X-Forwarded-Host $host;", "    proxy_set_header X-Forwarded-Proto $scheme;",
        "    proxy_set_header Connection \"\";",
    ]
    ups = [line for name, eps in sorted(upstreams.items())
           for line in (f"    upstream {name} {{", *(f"        server {e};" for e in eps), "    }")]
    return "\n".join([*head, *ups, *blocks, "}"]) + "\n"


def _server(host: str, locations: list[Location], tls: bool, run_dir: str) -> str:
    default = " default_server" if not host else ""
    cert = cert_name(host if tls else DEFAULT_CERT)
    lines = [f"    server {{  # {host or 'default server: rules without a host, defaultBackend'}",
             f"        server_name {host or '_'};", f"        listen {HTTP}{default};", f"        listen {HTTPS} ssl{default};",
             f"        ssl_certificate {run_dir}/certs/{cert}.crt;", f"        ssl_certificate_key {run_dir}/certs/{cert}.key;"]
    if tls:
        lines += ["        if ($scheme = http) { return 308 https://$host$request_uri; }"]
    for loc in locations:
        action = f"proxy_pass http://{loc.upstream};" if loc.upstream else "return 503;"
        lines.append(f"        location {loc.match} {{ {action} }}  # {loc.owner}")
    if not any(loc.match == "/" for loc in locations):
        lines.append("        location / { return 404; }")
    lines.append("    }")
    return "\n".join(lines)


def certificate_hosts(state: ClusterState) -> dict[str, Optional[tuple[str, str]]]:
    """Every certificate nginx.conf names: host -> (cert PEM, key PEM) from its Secret, or None for
    the lab's CA to issue (the default server's too)."""
    out: dict[str, Optional[tuple[str, str]]] = {DEFAULT_CERT: None}
    for ing in state.ingresses:
        for t in ing.tls:
            for h in t.hosts:
                out.setdefault(cert_name(h), (t.cert, t.key) if t.cert and t.key else None)
    return out
