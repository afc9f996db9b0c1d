"""The step kinds of a scenario: one frozen spec each, parsed from the step's value with every
problem reported at its path (through `at.bad`), and a one-line summary for output and JUnit.

Names are checked against the planned topology (nodes and hosts always; pods, Deployments and
Services until an apply/delete step may have changed them), fault parameters against
lab.faults.model, regexes by compiling them: a scenario fails at validation, not halfway through.
"""
from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Optional

from lab.errors import LabError
from lab.topology.refs import SYNTAX, Ref, parse_ref
from lab.topology.semantics import did_you_mean

PROTOCOLS = ("TCP", "UDP", "ICMP")
MATCHES = ("contains", "regex", "json")
EXEC_WHERE = ("pod", "node", "host")


@dataclass(frozen=True)
class Manifests:
    """apply/delete: the objects, read (files) or taken (inline) at validation."""

    items: tuple            # lab.runtime.apply.Item
    sources: tuple[str, ...]  # file names as written, or "inline"


@dataclass(frozen=True)
class Fault:
    kind: str
    target: str
    params: dict = field(default_factory=dict)
    alias: Optional[str] = None  # `as:`: the name `clear:` uses


@dataclass(frozen=True)
class Clear:
    which: str  # a fault's `as` name, or "all"


@dataclass(frozen=True)
class Node:
    action: str  # stop | start
    node: str


@dataclass(frozen=True)
class Match:
    how: str    # contains | regex | json
    value: Any


@dataclass(frozen=True)
class Exec:
    where: str                # pod | node | host
    target: str               # a pod name or ref (deploy/NAME), or a node or host name
    argv: tuple[str, ...]
    namespace: str = "default"
    container: Optional[str] = None
    timeout: float = 10.0
    exit: Optional[int] = 0   # None: any exit code
    stdout: tuple[Match, ...] = ()
    stderr: tuple[Match, ...] = ()


@dataclass(frozen=True)
class Probe:
    src: str       # a reference (pod, deploy, node, host), as lab.topology.refs writes it
    dst: str       # a reference, or IP[:PORT]
    protocol: str = "TCP"
    expect: str = "allow"


@dataclass(frozen=True)
class Check:
    only: tuple[str, ...] = ()       # invariant rows; () with no probes: all of them
    probes: tuple[Probe, ...] = ()


@dataclass(frozen=True)
class Dns:
    pod: str
    name: str
    namespace: str = "default"
    resolves: Optional[tuple[str, ...]] = None  # exactly these addresses
    fails: bool = False                          # no address (not found, or no answer)
    queries: Optional[int] = None                # exactly this many queries reach kube-dns (A and AAAA)
    family: str = "IPv4"                         # IPv4: getent ahostsv4 (A); IPv6: getent ahostsv6 (AAAA)
    # none of them: any address


@dataclass(frozen=True)
class Sleep:
    seconds: float


class Names:
    """What the scenario may refer to: the planned topology's objects, and the faults named so far."""

    def __init__(self, state):
        self.state = state
        self.changed = False   # after an apply/delete, pods and Services may be others
        self.aliases: list[str] = []

    def machines(self, kind: str) -> Optional[list[str]]:
        if self.state is None:
            return None
        return [m.name for m in (self.state.nodes if kind == "node" else self.state.hosts)]

    def objects(self, ref: Ref) -> Optional[list[str]]:
        """Names of the ref's kind in its namespace, or None when they cannot be known."""
        if self.state is None or (self.changed and ref.kind in ("pod", "deploy", "svc")):
            return None
        if ref.kind in ("node", "host"):
            return self.machines(ref.kind)
        if ref.kind == "svc":
            return [s.name for s in self.state.services if s.namespace == ref.namespace]
        if ref.kind == "deploy":
            return sorted({p.owner.partition("/")[2] for p in self.state.pods
                           if p.namespace == ref.namespace and (p.owner or "").startswith("Deployment/")})
        return [p.name for p in self.state.pods if p.namespace == ref.namespace]


def parse(kind: str, value: Any, at, names: Names) -> Any:
    """The spec of a step of one of the kinds here, or None (the problems went to at.bad); the http
    and get kinds have their own modules (lab.scenario.http, lab.scenario.status)."""
    return _PARSERS[kind](value, at, names)


def _manifests(value: Any, at, names: Names) -> Optional[Manifests]:
    from lab.runtime.apply import Item, kustomizations, read_objects

    names.changed = True
    entries = value if isinstance(value, list) else [value]
    if not entries or not all(isinstance(e, (str, dict)) for e in entries):
        at.bad((), "give a file or folder (relative to the scenario), a Kubernetes object, or a list of them",
               "apply: manifests/deny-all.yaml")
        return None
    items, sources = [], []
    for i, e in enumerate(entries):
        sub = (i,) if isinstance(value, list) else ()
        if isinstance(e, str):
            path = str(at.base / e)
            try:
                items += read_objects([path])
            except LabError as err:
                at.bad(sub, str(err), "a path is relative to the scenario file")
                continue
            for k in kustomizations([path]):
                at.warn(f"{k}: a kustomize build file is ignored: the folder's manifests are read as they are")
            sources.append(e)
        elif "kind" not in e or not isinstance(e.get("metadata"), dict) or not e["metadata"].get("name"):
            at.bad(sub, "an inline object needs kind and metadata.name", "{apiVersion: v1, kind: Pod, metadata: "
                                                                          "{name: web}, spec: {...}}")
        else:
            items.append(Item(at.source.file, e, at.source, at.at + sub))
            sources.append("inline")
    return Manifests(tuple(items), tuple(dict.fromkeys(sources))) if items else None


def _fault(value: Any, at, names: Names) -> Optional[Fault]:
    if not isinstance(value, dict):
        at.bad((), f"a fault is a mapping, not {what(value)}", "fault: {kind: link-down, target: node/worker1, as: down}")
        return None
    kind, target, alias = value.get("kind"), value.get("target"), value.get("as")
    params = {k: v for k, v in value.items() if k not in ("kind", "target", "as")}
    for key, v in (("kind", kind), ("target", target)):
        if not isinstance(v, str) or not v:
            at.bad((key,) if key in value else (), f"fault.{key} is missing" if v is None else f"fault.{key} must be text",
                   "fault: {kind: link-down, target: node/worker1}")
    if alias is not None:
        if not isinstance(alias, str) or not re.fullmatch(r"[A-Za-z0-9][-A-Za-z0-9_.]*", alias) or alias == "all":
            at.bad(("as",), f"as: {alias!r} must be a name (letters, digits, -, _, .), not 'all'", "as: vxlan-drop")
        elif alias in names.aliases:
            at.bad(("as",), f"a fault named {alias!r} already exists in this scenario", "give each fault its own name")
        else:
            names.aliases.append(alias)
    if not isinstance(kind, str) or not isinstance(target, str):
        return None
    try:
        from lab.faults import model as faults
    except ImportError:
        at.bad((), "this version of the lab has no fault model (lab.faults.model)", "update k8s-netlab")
        return None
    problems = faults.validate(kind, target, params)
    for p in problems:
        at.bad((), p)
    return None if problems else Fault(kind, target, params, alias)


def _clear(value: Any, at, names: Names) -> Optional[Clear]:
    if not isinstance(value, str) or not value:
        at.bad((), f"clear names a fault (its as:) or all, not {what(value)}", "clear: vxlan-drop, or clear: all")
        return None
    if value != "all" and value not in names.aliases:
        known = ", ".join(names.aliases) or "none yet"
        at.bad((), f"no earlier fault step is named {value!r}{did_you_mean(value, names.aliases)}",
               f"name a fault with as: NAME; faults named so far: {known}; or clear: all")
        return None
    return Clear(value)


def _node(value: Any, at, names: Names) -> Optional[Node]:
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in ("stop", "start"):
        given = ", ".join(map(str, value)) if isinstance(value, dict) else what(value)
        at.bad((), f"node takes one action: {{stop: NAME}} or {{start: NAME}}, not {given}", "node: {stop: worker1}")
        return None
    action, name = next(iter(value.items()))
    if not _machine(str(name), "node", at, (action,), names):
        return None
    return Node(action, str(name))


def _machine(name: str, kind: str, at, sub: tuple, names: Names) -> bool:
    known = names.machines(kind)
    if known is not None and name not in known:
        at.bad(sub, f"no {kind} {name!r} in the topology{did_you_mean(name, known)}",
               f"{kind}s: {', '.join(known) or 'none'}")
        return False
    return True


def _exec(value: Any, at, names: Names) -> Optional[Exec]:
    if not isinstance(value, dict):
        at.bad((), f"exec is a mapping, not {what(value)}", "exec: {pod: client, command: 'curl -s web:8080'}")
        return None
    allowed = EXEC_WHERE + ("namespace", "container", "command", "timeout", "exit", "stdout", "stderr")
    ok = _known_keys(value, allowed, "exec", at)
    where = [w for w in EXEC_WHERE if w in value]
    if len(where) != 1:
        at.bad((), "exec runs in one place: give exactly one of pod, node or host", "exec: {pod: client, command: ...}")
        return None
    target = str(value[where[0]])
    namespace = value.get("namespace", "default")
    if not isinstance(namespace, str):
        at.bad(("namespace",), "namespace must be text")
        ok = False
    elif where[0] == "pod":
        ok = _pod(target, namespace, at, (where[0],), names) and ok
    else:
        ok = _machine(target, where[0], at, (where[0],), names) and ok
    command = value.get("command")
    argv: tuple[str, ...] = ()
    try:
        argv = split_command(command) if isinstance(command, (str, list)) else ()
    except ValueError as e:
        at.bad(("command",), f"cannot split the command: {e}", "check the quotes, or give a list: [sh, -c, '...']")
        ok = False
    if not argv and ok:
        at.bad(("command",) if "command" in value else (), "exec needs a command: a list, or text split as a shell would",
               "command: [ip, route] or command: 'getent hosts web'")
        ok = False
    timeout = value.get("timeout", 10)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        at.bad(("timeout",), f"timeout must be seconds above 0, not {timeout!r}")
        ok = False
    code = value.get("exit", 0)
    if code != "any" and (not isinstance(code, int) or isinstance(code, bool) or not 0 <= code <= 255):
        at.bad(("exit",), f"exit must be a code from 0 to 255 or any, not {code!r}", "exit: 1")
        ok = False
    out, err = _matches(value.get("stdout"), at, ("stdout",)), _matches(value.get("stderr"), at, ("stderr",))
    if not ok or out is None or err is None:
        return None
    return Exec(where[0], target, argv, namespace, value.get("container"), float(timeout),
                None if code == "any" else code, out, err)


def _matches(value: Any, at, sub: tuple) -> Optional[tuple[Match, ...]]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = {"contains": value}
    if not isinstance(value, dict) or not value:
        at.bad(sub, f"an output expectation is a mapping of {', '.join(MATCHES)}, not {what(value)}",
               "stdout: {regex: '^10\\.244\\.'}")
        return None
    out = []
    for how, v in value.items():
        if how not in MATCHES:
            at.bad(sub + (how,), f"unknown match '{how}'{did_you_mean(str(how), MATCHES)}", f"use {', '.join(MATCHES)}")
        elif how in ("contains", "regex") and not isinstance(v, str):
            at.bad(sub + (how,), f"{how} takes text, not {what(v)}")
        elif how == "regex" and bad_regex(v):
            at.bad(sub + (how,), f"invalid regex: {bad_regex(v)}", "quote it in single quotes; backslashes stay as written")
        else:
            out.append(Match(how, v))
    return tuple(out) if len(out) == len(value) else None


def _pod(text: str, namespace: str, at, sub: tuple, names: Names) -> bool:
    """A pod by name, or a reference (pod/NAME, deploy/NAME, NS/pod/NAME): is it in the topology?"""
    try:
        ref = pod_ref(text, namespace)
    except ValueError as e:
        at.bad(sub, str(e), "a pod name, or deploy/NAME for one of a Deployment's pods")
        return False
    return _exists(ref, at, sub, names)


def _exists(ref: Ref, at, sub: tuple, names: Names) -> bool:
    known = names.objects(ref)
    if known is not None and ref.name not in known:
        at.bad(sub, f"no {ref.kind} {ref.name!r} in namespace {ref.namespace}{did_you_mean(ref.name, known)}"
               if ref.kind in ("pod", "deploy", "svc") else f"no {ref.kind} {ref.name!r}{did_you_mean(ref.name, known)}",
               f"{ref.kind}s there: {', '.join(known[:12]) or 'none'}")
        return False
    return True


def pod_ref(text: str, namespace: str = "default") -> Ref:
    """A bare name is a pod in `namespace`; else a reference of a pod or a Deployment."""
    ref = parse_ref(f"{namespace}/pod/{text}" if "/" not in text else text)
    if "/" in text and text.count("/") == 1 and ref.kind in ("pod", "deploy"):
        ref = Ref(namespace, ref.kind, ref.name, ref.port)
    if ref.kind not in ("pod", "deploy") or ref.port is not None:
        raise ValueError(f"'{text}' is not a pod: give a pod name, pod/NAME or deploy/NAME")
    return ref


def _check(value: Any, at, names: Names) -> Optional[Check]:
    if value == "all":
        return Check()
    if isinstance(value, dict) and "only" in value:
        _known_keys(value, ("only",), "check", at)
        only = [value["only"]] if isinstance(value["only"], str) else value["only"]
        if not isinstance(only, list) or not only:
            at.bad(("only",), f"only takes a list of check rows, not {what(only)}", "check: {only: [pod-to-pod, dns]}")
            return None
        return _only(only, at)
    if isinstance(value, dict) or (isinstance(value, list) and value):
        probes = [_probe(p, at, (i,) if isinstance(value, list) else (), names)
                  for i, p in enumerate(value if isinstance(value, list) else [value])]
        return Check(probes=tuple(probes)) if all(probes) else None
    at.bad((), f"check takes all, {{only: [ROWS]}}, or probes {{from, to, protocol, expect}}; not {what(value)}",
           "check: all, or check: {only: [pod-to-pod]}, or check: {from: client, to: svc/web:80, expect: allow}")
    return None


def _only(rows: list, at) -> Optional[Check]:
    from lab.probe.invariants import INVARIANTS

    bad = [r for r in rows if not isinstance(r, str) or r not in INVARIANTS]
    for r in bad:
        at.bad(("only",), f"no check row '{r}'{did_you_mean(str(r), INVARIANTS)}", f"rows: {', '.join(INVARIANTS)}")
    return None if bad else Check(only=tuple(rows))


def _probe(value: Any, at, sub: tuple, names: Names) -> Optional[Probe]:
    if not isinstance(value, dict):
        at.bad(sub, f"a probe is a mapping {{from, to, protocol, expect}}, not {what(value)}")
        return None
    ok = _known_keys(value, ("from", "to", "protocol", "expect"), "a probe", at, sub)
    for key in ("from", "to"):
        if not isinstance(value.get(key), str):
            at.bad(sub + ((key,) if key in value else ()), f"the probe's {key} is missing" if key not in value
                   else f"{key} must be text", "check: {from: client, to: svc/web:80, expect: allow}")
            ok = False
    protocol = str(value.get("protocol", "TCP")).upper()
    if protocol not in PROTOCOLS:
        at.bad(sub + ("protocol",), f"protocol must be one of {', '.join(PROTOCOLS)}, not {value['protocol']!r}")
        ok = False
    expect = value.get("expect", "allow")
    if expect not in ("allow", "deny", "refused"):
        at.bad(sub + ("expect",), f"a probe expects allow, deny or refused, not {expect!r}",
               "deny passes only when every try went unanswered; a refused connection (a reset, an ICMP "
               "unreachable) is expect: refused")
        ok = False
    if not ok:
        return None
    src = _endpoint(value["from"], at, sub + ("from",), names, source=True)
    dst = _endpoint(value["to"], at, sub + ("to",), names, source=False)
    if src is None or dst is None:
        return None
    if protocol == "ICMP" and ":" in dst.rpartition("/")[2]:
        at.bad(sub + ("to",), "ICMP has no port", "to: pod/web, protocol: ICMP")
        return None
    if protocol != "ICMP" and is_address(dst):
        at.bad(sub + ("to",), f"a {protocol} probe to an address needs a port", f"to: {dst}:80")
        return None
    return Probe(src, dst, protocol, expect)


def _endpoint(text: str, at, sub: tuple, names: Names, source: bool) -> Optional[str]:
    host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if not source and is_address(host or text):
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            at.bad(sub, f"port '{port}' must be a number from 1 to 65535")
            return None
        return text
    try:
        ref = parse_ref(text if "/" in text else f"pod/{text}")
    except ValueError as e:
        at.bad(sub, str(e), f"a pod name, {SYNTAX}" + ("" if source else ", or IP:PORT"))
        return None
    if source and (ref.kind == "svc" or ref.port is not None):
        at.bad(sub, f"'{text}' cannot send: probes start from a pod, a Deployment's pods, a node or a host",
               "from: client, from: deploy/frontend, from: node/worker1")
        return None
    return str(ref) if _exists(ref, at, sub, names) else None


def _dns(value: Any, at, names: Names) -> Optional[Dns]:
    if not isinstance(value, dict):
        at.bad((), f"dns is a mapping, not {what(value)}", "dns: {from: client, name: web, resolves: true}")
        return None
    ok = _known_keys(value, ("from", "namespace", "name", "resolves", "fails", "queries", "family"), "dns", at)
    for key in ("from", "name"):
        if not isinstance(value.get(key), str) or not value.get(key):
            at.bad((key,) if key in value else (), f"dns.{key} is missing" if key not in value else f"dns.{key} must be text",
                   "dns: {from: client, name: web.default.svc.cluster.local, resolves: true}")
            ok = False
    namespace = value.get("namespace", "default")
    resolves, fails, queries = value.get("resolves"), value.get("fails", False), value.get("queries")
    if resolves is not None and fails or resolves is None and not fails and queries is None:
        at.bad((), "say what the lookup must do: resolves: [IPs] or true, or fails: true (and/or queries: N)",
               "dns: {from: client, name: web, resolves: [10.96.0.20]}")
        return None
    if queries is not None and (not isinstance(queries, int) or isinstance(queries, bool) or queries < 0):
        at.bad(("queries",), f"queries is a count of DNS queries, not {what(queries)}", "queries: 8")
        ok = False
    if fails is not True and fails is not False:
        at.bad(("fails",), "fails must be true")
        ok = False
    addresses: Optional[tuple[str, ...]] = None
    if isinstance(resolves, list) and resolves:
        addresses = tuple(str(a) for a in resolves)
        for i, a in enumerate(addresses):
            if not is_address(a):
                at.bad(("resolves", i), f"{a!r} is not an IP address")
                ok = False
    elif resolves not in (None, True):
        at.bad(("resolves",), f"resolves takes true or a list of addresses, not {what(resolves)}")
        ok = False
    family = value.get("family", "IPv4")
    if family not in ("IPv4", "IPv6"):
        at.bad(("family",), f"family is IPv4 (A records) or IPv6 (AAAA records), not {what(family)}", "family: IPv6")
        ok = False
    elif addresses and any((":" in a) != (family == "IPv6") for a in addresses):
        at.bad(("resolves",), f"a lookup of family {family} answers {family} addresses only",
               "list the addresses of that family, or set family: to theirs")
        ok = False
    if ok:
        ok = _pod(value["from"], namespace, at, ("from",), names)
    return Dns(value["from"], value["name"], namespace, addresses, fails is True, queries, family) if ok else None


def _sleep(value: Any, at, names: Names) -> Optional[Sleep]:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        at.bad((), f"sleep takes seconds above 0, not {what(value)}", "better: a step with wait: {timeout: 10}")
        return None
    return Sleep(float(value))


def _known_keys(value: dict, allowed: tuple, what_: str, at, sub: tuple = ()) -> bool:
    ok = True
    for key in value:
        if key not in allowed:
            at.bad(sub + (key,), f"unknown field '{key}' of {what_}{did_you_mean(str(key), allowed)}",
                   f"{what_} takes {', '.join(allowed)}")
            ok = False
    return ok


_PARSERS = {"apply": _manifests, "delete": _manifests, "fault": _fault, "clear": _clear, "node": _node,
            "exec": _exec, "check": _check, "dns": _dns, "sleep": _sleep}


def summary(kind: str, spec: Any) -> str:
    """A step's line when it has no name: what it does, briefly."""
    if isinstance(spec, Manifests):
        return f"{kind} {', '.join(spec.sources)} ({len(spec.items)} object{'s' if len(spec.items) != 1 else ''})"
    if isinstance(spec, Fault):
        return f"fault {spec.kind} {spec.target}" + (f" as {spec.alias}" if spec.alias else "")
    if isinstance(spec, Clear):
        return f"clear {spec.which}"
    if isinstance(spec, Node):
        return f"node {spec.action} {spec.node}"
    if isinstance(spec, Exec):
        command = shlex.join(spec.argv)
        where = spec.target if "/" in spec.target else f"{spec.where}/{spec.target}"
        return f"exec {where}: {command if len(command) <= 50 else command[:47] + '...'}"
    if isinstance(spec, Check):
        if spec.probes:
            p = spec.probes[0]
            more = f" (+{len(spec.probes) - 1} more)" if len(spec.probes) > 1 else ""
            return f"check {p.src} -> {p.dst} {p.protocol} {p.expect}{more}"
        return f"check {', '.join(spec.only) or 'all'}"
    if isinstance(spec, Dns):
        want = "fails" if spec.fails else f"resolves to {', '.join(spec.resolves)}" if spec.resolves else \
            "resolves" if spec.queries is None else f"costs {spec.queries} queries"
        return f"dns {spec.name} from {spec.pod} {want}"
    return f"sleep {spec.seconds:g}s"


def split_command(command: Any) -> tuple[str, ...]:
    """An argv: a list as given, or text split as a shell would (no shell runs it)."""
    return tuple(str(a) for a in command) if isinstance(command, list) else tuple(shlex.split(command))


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def bad_regex(pattern: str) -> Optional[str]:
    """What is wrong with a regex, or None when it compiles."""
    try:
        re.compile(pattern)
        return None
    except re.error as e:
        return str(e)


def what(v: Any) -> str:
    """A value as an error message names it."""
    return {dict: "a mapping", list: "a list", str: f"the text {v!r}", bool: f"{v}".lower(),
            type(None): "nothing"}.get(type(v), f"{v!r}")
