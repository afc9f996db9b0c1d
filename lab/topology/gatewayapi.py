"""Gateway API objects (gateway.networking.k8s.io): the subset the lab's Envoy controller serves.

Field names and defaults follow the upstream CRDs (v1.x), so manifests can be pasted from a real
cluster; a field the lab does not implement is an "unknown field" error, never silently dropped.
Cross-object rules (attachment, references, grants) live in lab.topology.gateway and the status
conditions they give in lab.controlplane.gateway.
"""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

API = "gateway.networking.k8s.io/v1"
API_BETA = "gateway.networking.k8s.io/v1beta1"
GROUP = "gateway.networking.k8s.io"

_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
Name = Annotated[str, StringConstraints(pattern=_SUBDOMAIN, max_length=253)]
Namespace = Annotated[str, StringConstraints(pattern=_LABEL, max_length=63)]
SectionName = Annotated[str, StringConstraints(pattern=_LABEL, max_length=253)]
Hostname = Annotated[str, StringConstraints(pattern=r"^(\*\.)?" + _SUBDOMAIN[1:], max_length=253)]
HeaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$", max_length=256)]
Port = Annotated[int, Field(ge=1, le=65535)]
Duration = Annotated[str, StringConstraints(pattern=r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Meta(_Strict):
    name: Name
    namespace: Optional[Namespace] = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


# --- GatewayClass ---

class GatewayClassSpec(_Strict):
    controllerName: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    description: Optional[str] = None


class GatewayClass(_Strict):
    apiVersion: Literal["gateway.networking.k8s.io/v1"]
    kind: Literal["GatewayClass"]
    metadata: Meta  # cluster-scoped: a namespace is ignored, as the API server does
    spec: GatewayClassSpec


# --- Gateway ---

class Selector(_Strict):
    matchLabels: dict[str, str] = Field(default_factory=dict)


class RouteNamespaces(_Strict):
    from_: Literal["All", "Same", "Selector"] = Field("Same", alias="from")
    selector: Optional[Selector] = None


class RouteGroupKind(_Strict):
    group: str = GROUP
    kind: str


class AllowedRoutes(_Strict):
    namespaces: RouteNamespaces = RouteNamespaces()
    kinds: list[RouteGroupKind] = Field(default_factory=list)


class SecretRef(_Strict):
    group: str = ""
    kind: str = "Secret"
    name: Name
    namespace: Optional[Namespace] = None


class ListenerTLS(_Strict):
    mode: Literal["Terminate", "Passthrough"] = "Terminate"
    certificateRefs: list[SecretRef] = Field(default_factory=list)


class Listener(_Strict):
    name: SectionName
    hostname: Optional[Hostname] = None
    port: Port
    protocol: Literal["HTTP", "HTTPS", "TLS", "TCP", "UDP"]
    tls: Optional[ListenerTLS] = None
    allowedRoutes: AllowedRoutes = AllowedRoutes()


class GatewaySpec(_Strict):
    gatewayClassName: Name
    listeners: Annotated[list[Listener], Field(min_length=1, max_length=64)]


class Gateway(_Strict):
    apiVersion: Literal["gateway.networking.k8s.io/v1"]
    kind: Literal["Gateway"]
    metadata: Meta
    spec: GatewaySpec


# --- HTTPRoute ---

class ParentRef(_Strict):
    group: str = GROUP
    kind: str = "Gateway"
    namespace: Optional[Namespace] = None
    name: Name
    sectionName: Optional[SectionName] = None
    port: Optional[Port] = None


class PathMatch(_Strict):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: Annotated[str, StringConstraints(max_length=1024)] = "/"


class HeaderMatch(_Strict):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: HeaderName
    value: Annotated[str, StringConstraints(max_length=4096)]


class RouteMatch(_Strict):
    path: PathMatch = PathMatch()
    headers: list[HeaderMatch] = Field(default_factory=list)
    queryParams: list[HeaderMatch] = Field(default_factory=list)
    method: Optional[Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]] = None


class Header(_Strict):
    name: HeaderName
    value: Annotated[str, StringConstraints(max_length=4096)]


class HeaderFilter(_Strict):
    set: list[Header] = Field(default_factory=list)
    add: list[Header] = Field(default_factory=list)
    remove: list[HeaderName] = Field(default_factory=list)


class PathModifier(_Strict):
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replaceFullPath: Optional[str] = None
    replacePrefixMatch: Optional[str] = None


class RedirectFilter(_Strict):
    scheme: Optional[Literal["http", "https"]] = None
    hostname: Optional[Name] = None
    path: Optional[PathModifier] = None
    port: Optional[Port] = None
    statusCode: Literal[301, 302, 303, 307, 308] = 302


class RewriteFilter(_Strict):
    hostname: Optional[Name] = None
    path: Optional[PathModifier] = None


class BackendRef(_Strict):
    group: str = ""
    kind: str = "Service"
    name: Name
    namespace: Optional[Namespace] = None
    port: Optional[Port] = None


class MirrorFilter(_Strict):
    backendRef: BackendRef


class RouteFilter(_Strict):
    type: Literal["RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite", "RequestMirror"]
    requestHeaderModifier: Optional[HeaderFilter] = None
    responseHeaderModifier: Optional[HeaderFilter] = None
    requestRedirect: Optional[RedirectFilter] = None
    urlRewrite: Optional[RewriteFilter] = None
    requestMirror: Optional[MirrorFilter] = None


class WeightedBackendRef(BackendRef):
    weight: Annotated[int, Field(ge=0, le=1000000)] = 1


class RouteTimeouts(_Strict):
    request: Optional[Duration] = None
    backendRequest: Optional[Duration] = None


class RouteRule(_Strict):
    name: Optional[SectionName] = None
    matches: Annotated[list[RouteMatch], Field(max_length=64)] = Field(default_factory=lambda: [RouteMatch()])
    filters: Annotated[list[RouteFilter], Field(max_length=16)] = Field(default_factory=list)
    backendRefs: list[WeightedBackendRef] = Field(default_factory=list)
    timeouts: Optional[RouteTimeouts] = None


class HTTPRouteSpec(_Strict):
    parentRefs: Annotated[list[ParentRef], Field(max_length=32)] = Field(default_factory=list)
    hostnames: Annotated[list[Hostname], Field(max_length=16)] = Field(default_factory=list)
    rules: Annotated[list[RouteRule], Field(max_length=16)] = Field(default_factory=lambda: [RouteRule()])


class HTTPRoute(_Strict):
    apiVersion: Literal["gateway.networking.k8s.io/v1"]
    kind: Literal["HTTPRoute"]
    metadata: Meta
    spec: HTTPRouteSpec


# --- ReferenceGrant ---

class GrantFrom(_Strict):
    group: str
    kind: str
    namespace: Namespace


class GrantTo(_Strict):
    group: str
    kind: str
    name: Optional[Name] = None


class ReferenceGrantSpec(_Strict):
    from_: Annotated[list[GrantFrom], Field(min_length=1, max_length=16)] = Field(alias="from")
    to: Annotated[list[GrantTo], Field(min_length=1, max_length=16)]


class ReferenceGrant(_Strict):
    apiVersion: Literal["gateway.networking.k8s.io/v1beta1"]
    kind: Literal["ReferenceGrant"]
    metadata: Meta
    spec: ReferenceGrantSpec


KINDS = {"GatewayClass": API, "Gateway": API, "HTTPRoute": API, "ReferenceGrant": API_BETA}
