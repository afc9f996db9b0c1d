"""Endpoint references of checks: kubectl-like text to a Ref, or a readable ValueError."""
from __future__ import annotations

import pytest

from lab.topology.refs import Ref, parse_ref


@pytest.mark.parametrize("text, ref", [
    ("pod/web", Ref("default", "pod", "web")),
    ("team-a/pod/web:8080", Ref("team-a", "pod", "web", 8080)),
    ("deploy/api", Ref("default", "deploy", "api")),
    ("shop/deployment/api:9000", Ref("shop", "deploy", "api", 9000)),
    ("node/node1", Ref("default", "node", "node1")),
    ("host/internet:53", Ref("default", "host", "internet", 53)),
    (" pod/web ", Ref("default", "pod", "web")),
    ("svc/web:80", Ref("default", "svc", "web", 80)),
    ("team/service/api", Ref("team", "svc", "api")),
])
def test_parse(text, ref):
    assert parse_ref(text) == ref


@pytest.mark.parametrize("text, message", [
    ("web", "is not an endpoint reference"),
    ("a/b/c/d", "is not an endpoint reference"),
    ("pod/", "is not an endpoint reference"),
    ("team/host/web", "a host has no namespace"),
    ("container/web", "unknown kind 'container'"),
    ("team/node/node1", "a node has no namespace, write node/node1"),
    ("Team/pod/web", "'Team' is not a valid namespace name"),
    ("pod/Web", "'Web' is not a valid pod name"),
    ("pod/web:http", "port 'http' must be a number from 1 to 65535"),
    ("pod/web:0", "port '0' must be a number"),
    ("pod/web:65536", "port '65536' must be a number"),
    ("pod/web:", "port '' must be a number"),
])
def test_errors(text, message):
    with pytest.raises(ValueError) as caught:
        parse_ref(text)
    assert message in str(caught.value)


def test_str_is_canonical():
    assert str(parse_ref("pod/web:80")) == "default/pod/web:80"
    assert str(parse_ref("x/deployment/api")) == "x/deploy/api"
    assert str(parse_ref("host/internet")) == "host/internet"


def test_ref_is_frozen():
    with pytest.raises(AttributeError):
        parse_ref("pod/web").name = "other"
