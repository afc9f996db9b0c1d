"""The http and get scenario steps, pure parts: the curl arguments, reading curl's answer, and every
verdict (status, backend, namespace, the request as the backend saw it, response headers, Location,
a mirror's log line, a weighted split) shown passing and failing."""
from __future__ import annotations

import json
from pathlib import Path

from lab.scenario import http as H
from lab.scenario import model, status

DATA = Path(__file__).resolve().parents[1] / "data" / "scenarios"


def answer(status_: int = 200, pod: str = "infra-backend-v1-7d9c-abcde", namespace: str = "infra", headers=None,
           path: str = "/", response_headers: str = "") -> str:
    echo = {"path": path, "host": "example.com", "method": "GET", "namespace": namespace, "pod": pod,
            "headers": headers or {"X-Request-Id": ["rid-1"], "X-A": ["1", "2"]}}
    return f"HTTP/1.1 {status_} OK\r\ncontent-type: text/plain\r\n{response_headers}\r\n" + json.dumps(echo)


def test_the_every_kind_file_parses_http_and_get():
    s = model.load(DATA / "good" / "every-kind.yaml")
    one, split = [st.spec for st in s.steps if st.kind == "http"]
    assert (one.address, one.host, one.path, one.headers) == ("10.96.0.10:80", "web.example", "/v2", (("Version", "two"),))
    assert one.expect.headers == (("X-A", "1"),) and one.expect.absent_headers == ("X-B",)
    assert split.requests == 500 and split.expect.weights == (("web-v1", 70), ("web-v2", 30))
    get = next(st for st in s.steps if st.kind == "get")
    assert get.spec == status.Get("httproutes", "default", "shop", {"status": {"parents": [
        {"conditions": [{"type": "Accepted", "status": "True"}]}]}})
    assert get.title == "get httproute default/shop"


def test_curl_arguments_carry_the_echo_header_host_and_method():
    spec = H.Http("host/client", gateway="infra/gw", host="example.com:1234", path="/a?b=1", method="POST",
                  headers=(("Version", "two"),))
    args = H.curl_args(spec, "172.18.0.224", 80, "/ca.crt")
    assert args[-2:] == ["-i", "http://172.18.0.224/a?b=1"]
    assert ["-X", "POST"] == args[args.index("-X"):args.index("-X") + 2]
    assert "Host: example.com:1234" in args and "X-Netexec-Echo: request" in args and "Version: two" in args
    tls = H.curl_args(H.Http("host/client", gateway="infra/gw", scheme="https", host="example.org"), "172.18.0.225", 443, "/ca")
    assert tls[-1] == "https://example.org/" and ["--resolve", "example.org:443:172.18.0.225", "--cacert", "/ca"] == \
        tls[tls.index("--resolve"):tls.index("--resolve") + 4]
    many = H.curl_args(H.Http("host/client", address="10.0.0.1:8080", requests=3), "10.0.0.1", 8080, "")
    assert many.count("http://10.0.0.1:8080/") == 3 and "-w" in many


def test_an_answer_is_judged_on_what_the_backend_saw():
    a = H.read_answer(0, answer(response_headers="x-route: live\r\n"), "")
    assert a.status == 200 and a.headers["x-route"] == ["live"]
    good = H.Expect(backend="infra-backend-v1", namespace="infra", path="/", headers=(("x-a", "1,2"),),
                    absent_headers=("X-Drop",), response_headers=(("X-Route", "live"),))
    assert H.judge(good, a) == []
    assert H.judge(H.Expect(backend="infra-backend-v2"), a) == [
        "answered by pod infra-backend-v1-7d9c-abcde, expected one of infra-backend-v2"]
    assert "namespace 'infra', expected app" in H.judge(H.Expect(namespace="app"), a)[0]
    assert "saw X-A: '1,2', expected '1'" in H.judge(H.Expect(headers=(("X-A", "1"),)), a)[0]
    assert "expected no such header" in H.judge(H.Expect(absent_headers=("x-a",)), a)[0]
    assert "expected 'dead'" in H.judge(H.Expect(response_headers=(("x-route", "dead"),)), a)[0]
    assert H.judge(H.Expect(absent_response_headers=("x-route",)), a)
    assert H.judge(H.Expect(status=404), a)[0].startswith("HTTP 200, expected 404")
    assert H.request_id(a) == "rid-1"


def test_a_proxy_answer_without_echo_fails_what_needs_one_and_redirects_are_judged_by_location():
    envoy_404 = H.read_answer(0, "HTTP/1.1 404 Not Found\r\nserver: envoy\r\n\r\n", "")
    assert H.judge(H.Expect(status=404), envoy_404) == []
    assert "no echo from a backend" in H.judge(H.Expect(status=404, backend="x"), envoy_404)[-1]
    moved = H.read_answer(0, "HTTP/1.1 301 Moved Permanently\r\nlocation: http://example.org/a\r\n\r\n", "")
    assert H.judge(H.Expect(status=301, location="http://example.org/a"), moved) == []
    assert "Location 'http://example.org/a', expected 'http://example.org/b'" in \
        H.judge(H.Expect(status=301, location="http://example.org/b"), moved)[0]
    failed = H.read_answer(28, "", "curl: (28) Operation timed out")
    assert H.judge(H.Expect(), failed) == ["curl: curl: (28) Operation timed out"]


def test_a_mirror_is_found_by_its_request_id_in_the_log():
    log = "echo GET /mirror host=x x-request-id=rid-1 from 10.244.1.5:4000\n"
    assert H.logged(log, "rid-1") and not H.logged(log, "rid-2") and not H.logged(log, "rid")


def test_a_fair_split_passes_and_a_wrong_one_fails_by_binomial_tails():
    e = H.Expect(weights=(("v1", 70), ("v2", 30), ("v3", 0)))
    lines = "".join(f"200\tv1-abc-{i}\n" for i in range(700)) + "".join(f"200\tv2-abc-{i}\n" for i in range(300))
    counts, others = H.tally(lines, ("v1", "v2", "v3"))
    assert counts == {"v1": 700, "v2": 300, "v3": 0} and others == []
    problems, seen = H.judge_split(e, counts, others, 1000)
    assert problems == [] and "v1 700 (70%:" in seen
    skewed = {"v1": 800, "v2": 200, "v3": 0}  # a 10-point error over 1000 requests
    assert any("v1 answered 800 of 1000: implausible" in p for p in H.judge_split(e, skewed, [], 1000)[0])
    leak = {"v1": 699, "v2": 300, "v3": 1}
    assert "v3 answered 1 times with weight 0" in H.judge_split(e, leak, [], 1000)[0]
    assert "1 of 1000 answers were not a 200" in H.judge_split(e, counts, ["HTTP 503"], 1000)[0][0]
    low, high = H.binomial_bounds(1000, 0.7, H.ALPHA / 2)
    assert low < 700 < high and 700 - low < 80 and high - 700 < 80  # tight enough to catch 10 points


def test_get_finds_one_object_by_namespace_and_name():
    objs = [{"metadata": {"name": "a", "namespace": "x"}}, {"metadata": {"name": "a", "namespace": "y"}}]
    assert status.find(objs, status.Get("httproutes", "y", "a", {})) is objs[1]
    assert status.find(objs, status.Get("httproutes", "z", "a", {})) is None
    assert status.find([{"metadata": {"name": "envoy"}}], status.Get("gatewayclasses", "default", "envoy", {}))
