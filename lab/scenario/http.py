"""The `http` step: requests sent through a Gateway (or to an address) from a host or pod of the
lab, judged as the Gateway API conformance suite judges them, on what the backend says it received.

Every request carries `X-Netexec-Echo: request`, so a netexec backend answers with JSON of what
arrived (path, host, method, headers, pod, namespace): the step checks the status, which backend
answered (its pod's name starts with `backend-`, the conformance suite's rule), the request as the
backend saw it (rewrites, header filters), the response's headers and a redirect's Location, that
a mirror backend logged the same request (its X-Request-Id), and, for `requests: N`, that the
answers split over the backends as the weights say, judged with exact binomial tails as the
service-spread row judges kube-proxy's picks (a fair split fails with probability below ALPHA).

Parsing and judging are pure (unit-tested); lab.scenario.steps runs curl and reads the logs.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Optional

from lab.probe.services import binomial_bounds
from lab.scenario.spec import Names, _known_keys, _endpoint, is_address, what

ECHO = ("X-Netexec-Echo", "request")
ALPHA = 1e-6                 # the chance that a fair weighted split fails the step, over all its backends
SCHEMES = ("http", "https")
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")
EXPECT_KEYS = ("status", "backend", "namespace", "path", "host", "method", "headers", "absentHeaders",
               "responseHeaders", "absentResponseHeaders", "location", "mirroredTo", "weights")
KEYS = ("from", "to", "port", "scheme", "host", "path", "method", "headers", "requests", "timeout", "cacert", "expect")


@dataclass(frozen=True)
class Expect:
    status: int = 200
    backend: str = ""                               # the answering pod's name starts with `backend-`
    namespace: str = ""
    path: Optional[str] = None                      # as the backend saw them
    host: Optional[str] = None
    method: Optional[str] = None
    headers: tuple[tuple[str, str], ...] = ()
    absent_headers: tuple[str, ...] = ()
    response_headers: tuple[tuple[str, str], ...] = ()
    absent_response_headers: tuple[str, ...] = ()
    location: Optional[str] = None
    mirrored_to: tuple[str, ...] = ()               # NS/DEPLOYMENT whose pods log the same request
    weights: tuple[tuple[str, int], ...] = ()       # backend -> weight (requests > 1)


@dataclass(frozen=True)
class Http:
    src: str                                        # a reference that sends: host/NAME, a pod, deploy/NAME
    gateway: str = ""                               # NS/NAME, or "" with an address
    address: str = ""                               # IP[:PORT] without a gateway
    port: int = 0                                   # the Gateway listener's port (0: 443 for https, else 80)
    scheme: str = "http"
    host: str = ""                                  # the Host header ("" : the address)
    path: str = "/"
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    requests: int = 1
    timeout: float = 5.0
    cacert: str = ""                                # https: the CA to verify with ("": the lab's CA)
    expect: Expect = Expect()


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, list[str]]                   # lower-case names
    body: str
    error: str = ""                                 # curl's, when no answer came


def parse(value: Any, at, names: Names) -> Optional[Http]:
    if not isinstance(value, dict):
        at.bad((), f"http is a mapping, not {what(value)}",
               "http: {from: host/internet, to: gateway/default/eg, path: /, expect: {status: 200, backend: web}}")
        return None
    ok = _known_keys(value, KEYS, "http", at)
    src = _endpoint(str(value.get("from", "")), at, ("from",), names, source=True) if "from" in value else None
    if "from" not in value:
        at.bad((), "http needs from: the host or pod that sends", "from: host/internet")
    gateway, address = "", ""
    to = value.get("to")
    if isinstance(to, str) and to.startswith("gateway/"):
        parts = to.split("/")[1:]
        gateway = "/".join(parts) if len(parts) == 2 else f"default/{parts[0]}" if len(parts) == 1 else ""
        if not gateway or not all(parts):
            at.bad(("to",), f"'{to}' is not a Gateway: gateway/NAME or gateway/NAMESPACE/NAME")
            ok = False
        elif names.state is not None and not names.changed and gateway not in {g.key for g in names.state.gateways}:
            known = ", ".join(g.key for g in names.state.gateways) or "none"
            at.bad(("to",), f"no Gateway {gateway} of the lab's classes in the topology", f"Gateways: {known}")
            ok = False
    elif isinstance(to, str) and is_address(to.rpartition(":")[0] if to.count(":") == 1 else to):
        address = to
    else:
        at.bad(("to",) if "to" in value else (), "http needs to: gateway/NAMESPACE/NAME or IP[:PORT]",
               "to: gateway/default/eg")
        ok = False
    port = value.get("port", 0)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port < 65536:
        at.bad(("port",), f"port is a listener's port, not {what(port)}", "port: 80")
        ok = False
    scheme = value.get("scheme", "http")
    if scheme not in SCHEMES:
        at.bad(("scheme",), f"scheme is http or https, not {what(scheme)}")
        ok = False
    method = str(value.get("method", "GET")).upper()
    if method not in METHODS:
        at.bad(("method",), f"method must be one of {', '.join(METHODS)}, not {what(value.get('method'))}")
        ok = False
    path = value.get("path", "/")
    if not isinstance(path, str) or not path.startswith("/"):
        at.bad(("path",), f"path starts with /, not {what(path)}", "path: /v2/example?x=1")
        ok = False
    host = value.get("host", "")
    if not isinstance(host, str):
        at.bad(("host",), f"host is text (the Host header), not {what(host)}")
        ok = False
    headers = _pairs(value.get("headers"), at, ("headers",))
    requests = value.get("requests", 1)
    if not isinstance(requests, int) or isinstance(requests, bool) or not 1 <= requests <= 10000:
        at.bad(("requests",), f"requests is a count from 1 to 10000, not {what(requests)}", "requests: 1000")
        ok = False
    timeout = value.get("timeout", 5)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        at.bad(("timeout",), f"timeout is seconds above 0 (per request), not {what(timeout)}")
        ok = False
    cacert = value.get("cacert", "")
    if cacert and (not isinstance(cacert, str) or not (at.base / cacert).is_file()):
        at.bad(("cacert",), f"cacert names a PEM file (relative to the scenario), not {what(cacert)}",
               "cacert: tls-validity-checks.crt")
        ok = False
    expect = _expect(value.get("expect", {}), at, requests if isinstance(requests, int) else 1)
    if not ok or src is None or headers is None or expect is None:
        return None
    return Http(src, gateway, address, port, scheme, host, path, method, headers, requests, float(timeout),
                str((at.base / cacert).resolve()) if cacert else "", expect)


def _pairs(value: Any, at, sub: tuple) -> Optional[tuple[tuple[str, str], ...]]:
    if value is None:
        return ()
    if not isinstance(value, dict) or not all(isinstance(v, (str, int)) and not isinstance(v, bool)
                                              for v in value.values()):
        at.bad(sub, f"{sub[-1]} is a mapping of header names to text values, not {what(value)}", "headers: {Version: two}")
        return None
    return tuple((str(k), str(v)) for k, v in value.items())


def _names(value: Any, at, sub: tuple) -> Optional[tuple[str, ...]]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        at.bad(sub, f"{sub[-1]} is a list of header names, not {what(value)}", f"{sub[-1]}: [x-header-remove]")
        return None
    return tuple(value)


def _expect(value: Any, at, requests: int) -> Optional[Expect]:
    sub = ("expect",)
    if not isinstance(value, dict):
        at.bad(sub, f"expect is a mapping, not {what(value)}", "expect: {status: 200, backend: infra-backend-v1}")
        return None
    ok = _known_keys(value, EXPECT_KEYS, "http.expect", at, sub)
    status = value.get("status", 200)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        at.bad(sub + ("status",), f"status is an HTTP status code, not {what(status)}")
        ok = False
    texts = {}
    for key in ("backend", "namespace", "path", "host", "method", "location"):
        v = value.get(key)
        if v is not None and not isinstance(v, str):
            at.bad(sub + (key,), f"{key} is text, not {what(v)}")
            ok = False
        texts[key] = v
    mirrored = value.get("mirroredTo", [])
    mirrored = [mirrored] if isinstance(mirrored, str) else mirrored
    if not isinstance(mirrored, list) or not all(isinstance(m, str) and m.count("/") == 1 for m in mirrored):
        at.bad(sub + ("mirroredTo",), "mirroredTo names Deployments as NAMESPACE/NAME",
               "mirroredTo: [gateway-conformance-infra/infra-backend-v2]")
        ok = False
    weights = value.get("weights", {})
    if not isinstance(weights, dict) or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 0
                                                for w in weights.values()):
        at.bad(sub + ("weights",), "weights maps each backend to its weight (0 or more)",
               "weights: {infra-backend-v1: 70, infra-backend-v2: 30}")
        ok = False
    elif weights and (requests < 100 or not any(weights.values())):
        at.bad(sub + ("weights",), "weights are judged over many requests, and some weight must be above 0",
               "requests: 1000")
        ok = False
    elif requests > 1 and not weights:
        at.bad(sub, "requests above 1 ask for a split: give expect.weights", "weights: {infra-backend-v1: 70, ...}")
        ok = False
    pairs = [_pairs(value.get(k), at, sub + (k,)) for k in ("headers", "responseHeaders")]
    lists = [_names(value.get(k), at, sub + (k,)) for k in ("absentHeaders", "absentResponseHeaders")]
    if not ok or None in pairs or None in lists:
        return None
    return Expect(status, texts["backend"] or "", texts["namespace"] or "", texts["path"], texts["host"], texts["method"],
                  pairs[0], lists[0], pairs[1], lists[1], texts["location"], tuple(mirrored),
                  tuple((str(k), int(v)) for k, v in weights.items()))


def summary(spec: Http) -> str:
    to = f"gateway/{spec.gateway}" if spec.gateway else spec.address
    host = f" Host: {spec.host}" if spec.host else ""
    extra = f" x{spec.requests}" if spec.requests > 1 else ""
    return f"http {spec.method} {to}{spec.path}{host}{extra} -> {spec.expect.status}" + \
        (f" from {spec.expect.backend}" if spec.expect.backend else "")


# --- the request ---

def curl_args(spec: Http, address: str, port: int, ca: str) -> list[str]:
    """curl's arguments (after `curl`) for the step's request(s) to address:port."""
    headers = [ECHO, *spec.headers]
    if spec.host:
        headers.insert(0, ("Host", spec.host))
    args = ["-sS", "--max-time", f"{spec.timeout:g}"]
    if spec.method == "HEAD":
        args.append("-I")
    elif spec.method != "GET":
        args += ["-X", spec.method]
    for k, v in headers:
        args += ["-H", f"{k}: {v}"]
    default = {"http": 80, "https": 443}[spec.scheme]
    if spec.scheme == "https":  # by name, so SNI picks the listener's certificate; verified with the lab's CA
        name = (spec.host or address).split(":")[0]
        args += ["--resolve", f"{name}:{port}:{address}", "--cacert", spec.cacert or ca]
        target = name
    else:
        target = address
    url = f"{spec.scheme}://{target}{'' if port == default else f':{port}'}{spec.path}"
    if spec.requests == 1:
        return args + ["-i", url]
    return args + ["-w", "%{http_code}\t%header{x-netexec-hostname}\n"] + [x for _ in range(spec.requests)
                                                                         for x in (url, "-o", "/dev/null")]


def read_answer(code: Optional[int], stdout: str, stderr: str) -> Answer:
    """curl -i's output as (status, headers, body); error when curl got no answer."""
    if code != 0:
        said = (stderr.strip().splitlines() or [f"exit {code}" if code is not None else "timed out"])[-1]
        return Answer(0, {}, "", f"curl: {said}")
    head, _, body = stdout.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    if not lines or not lines[0].startswith("HTTP/"):
        return Answer(0, {}, stdout, f"not an HTTP answer: {stdout[:100]!r}")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, v = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(v.strip())
    return Answer(int(lines[0].split()[1]), headers, body)


def echo_of(a: Answer) -> Optional[dict]:
    try:
        data = json.loads(a.body)
    except ValueError:
        return None
    return data if isinstance(data, dict) and "pod" in data else None


def judge(e: Expect, a: Answer) -> list[str]:
    """What does not hold of one answer ([] when all of it does)."""
    if a.error:
        return [a.error]
    problems = []
    if a.status != e.status:
        problems.append(f"HTTP {a.status}, expected {e.status}" + (f" ({a.body.strip()[:120]})" if a.body.strip() else ""))
    echo = echo_of(a)
    wants_echo = e.backend or e.namespace or e.path is not None or e.host is not None or e.method is not None or \
        e.headers or e.absent_headers or e.mirrored_to
    if wants_echo and echo is None:
        return problems + [f"no echo from a backend in the answer: {a.body.strip()[:120]!r}"]
    if echo is not None:
        seen = {k.lower(): ",".join(v) for k, v in echo.get("headers", {}).items()}
        if e.backend and not str(echo["pod"]).startswith(e.backend + "-"):
            problems.append(f"answered by pod {echo['pod']}, expected one of {e.backend}")
        if e.namespace and echo.get("namespace") != e.namespace:
            problems.append(f"answered from namespace {echo.get('namespace')!r}, expected {e.namespace}")
        for key in ("path", "host", "method"):
            want = getattr(e, key)
            if want is not None and echo.get(key) != want:
                problems.append(f"the backend saw {key} {echo.get(key)!r}, expected {want!r}")
        for k, v in e.headers:
            if seen.get(k.lower()) != v:
                problems.append(f"the backend saw {k}: {seen.get(k.lower())!r}, expected {v!r}")
        problems += [f"the backend saw {k}: {seen[k.lower()]!r}, expected no such header"
                     for k in e.absent_headers if k.lower() in seen]
    for k, v in e.response_headers:
        got = ",".join(a.headers.get(k.lower(), [])) or None
        if got != v:
            problems.append(f"the answer has {k}: {got!r}, expected {v!r}")
    problems += [f"the answer has {k}: {','.join(a.headers[k.lower()])!r}, expected no such header"
                 for k in e.absent_response_headers if k.lower() in a.headers]
    if e.location is not None:
        got = (a.headers.get("location") or [None])[0]
        if got != e.location:
            problems.append(f"Location {got!r}, expected {e.location!r}")
    return problems


def request_id(a: Answer) -> str:
    """The X-Request-Id the backend received (Envoy's, shared with a mirror's copy)."""
    echo = echo_of(a) or {}
    return next((",".join(v) for k, v in echo.get("headers", {}).items() if k.lower() == "x-request-id"), "")


def logged(text: str, rid: str) -> bool:
    return re.search(rf"^echo .* x-request-id={re.escape(rid)} ", text, re.M) is not None


# --- a split ---

def tally(stdout: str, backends: tuple[str, ...]) -> tuple[dict[str, int], list[str]]:
    """(answers per backend, the other answers) of `curl -w '%{http_code}\\t%header{x-netexec-hostname}'` lines."""
    counts = {b: 0 for b in backends}
    others = []
    for line in stdout.strip().splitlines():
        status, _, pod = line.partition("\t")
        who = next((b for b in sorted(backends, key=len, reverse=True) if pod.startswith(b + "-")), None)
        if status == "200" and who is not None:
            counts[who] += 1
        else:
            others.append(f"HTTP {status}" + (f" from {pod}" if pod else ""))
    return counts, others


def judge_split(e: Expect, counts: dict[str, int], others: list[str], requests: int) -> tuple[list[str], str]:
    """(problems, what was seen): every request answered 200 by a listed backend, each backend's
    count within the binomial tails of its share (weight 0: never)."""
    total = sum(w for _, w in e.weights)
    live = sum(1 for _, w in e.weights if w)
    problems, shown = [], []
    if others:
        problems.append(f"{len(others)} of {requests} answers were not a 200 from a listed backend (first: {others[0]})")
    answered = sum(counts.values())
    for backend, w in e.weights:
        n = counts.get(backend, 0)
        if w == 0:
            shown.append(f"{backend} {n} (weight 0)")
            if n:
                problems.append(f"{backend} answered {n} times with weight 0")
            continue
        low, high = binomial_bounds(answered, w / total, ALPHA / live)
        shown.append(f"{backend} {n} ({w / total:.0%}: {low + 1} to {high - 1})")
        if not low < n < high:
            problems.append(f"{backend} answered {n} of {answered}: implausible for a {w / total:.0%} share "
                            f"(expected {low + 1} to {high - 1})")
    return problems, ", ".join(shown)
