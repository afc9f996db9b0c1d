"""Which route of a rendered RouteConfiguration a request reaches, as Envoy decides (pure).

Envoy picks the virtual host by the Host header (an exact domain, then the longest `*.suffix`, then
`*`), then the first route whose match holds. Walking the generated JSON this way lets unit tests
check the Gateway API's precedence on what Envoy is really given, and lets `lab check` say what
each probe must find before it asks the live Envoy.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Optional


@dataclass(frozen=True)
class Request:
    host: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)   # lower-case names
    query: Mapping[str, str] = field(default_factory=dict)
    method: str = "GET"


def virtual_host(config: dict, host: str) -> Optional[dict]:
    name = host.split(":")[0].lower()
    vhosts = config.get("virtual_hosts", [])
    exact = next((v for v in vhosts if name in v["domains"]), None)
    if exact:
        return exact
    wild = [(d, v) for v in vhosts for d in v["domains"] if d.startswith("*.") and name.endswith(d[1:])]
    if wild:
        return max(wild, key=lambda dv: len(dv[0]))[1]
    return next((v for v in vhosts if "*" in v["domains"]), None)


def _string(m: dict, value: Optional[str]) -> bool:
    if value is None:
        return False
    if "exact" in m:
        return value == m["exact"]
    return re.fullmatch(m["safe_regex"]["regex"], value) is not None


def matches(match: dict, r: Request) -> bool:
    path = r.path.split("?")[0]
    if "path" in match and path != match["path"]:
        return False
    if "prefix" in match and not path.startswith(match["prefix"]):
        return False
    if "path_separated_prefix" in match:
        p = match["path_separated_prefix"]
        if path != p and not path.startswith(p + "/"):
            return False
    if "safe_regex" in match and re.fullmatch(match["safe_regex"]["regex"], path) is None:
        return False
    for h in match.get("headers", []):
        value = r.method if h["name"] == ":method" else r.headers.get(h["name"].lower())
        if not _string(h["string_match"], value):
            return False
    return all(_string(q["string_match"], r.query.get(q["name"])) for q in match.get("query_parameters", []))


def route(config: dict, r: Request) -> Optional[dict]:
    """The route entry Envoy applies to the request; None: a 404 (no virtual host or no route)."""
    vhost = virtual_host(config, r.host)
    if vhost is None:
        return None
    return next((e for e in vhost["routes"] if matches(e["match"], r)), None)


def rewritten(rewrite: dict, path: str) -> str:
    """A regex_rewrite applied to a path (every match replaced, as Envoy does)."""
    return re.sub(rewrite["pattern"]["regex"], lambda _: rewrite["substitution"], path)


def redirect_location(entry: dict, r: Request, scheme: str, port: int) -> str:
    """The Location of a redirect entry for this request (ports 80/443 left out, as Envoy does)."""
    red = entry["redirect"]
    scheme = red.get("scheme_redirect", scheme)
    host = red.get("host_redirect", r.host.split(":")[0])
    port = red.get("port_redirect", port)
    path = r.path
    if "path_redirect" in red:
        path = red["path_redirect"]
    elif "regex_rewrite" in red:
        path = rewritten(red["regex_rewrite"], path)
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}{'' if port == default else f':{port}'}{path}"
