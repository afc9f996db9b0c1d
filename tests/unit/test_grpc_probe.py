"""gRPC readiness probes (issue 20 item 6): the kubelet's Health/Check, as the lab's prober makes
it (lab.node.grpc_health) and as a stand-in answers it (netexec), each checked against the real
gRPC implementation (grpcio and grpcio-health-checking) so neither side only agrees with itself."""
from __future__ import annotations

import socket
import threading
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from lab.controlplane.plan import plan
from lab.node import grpc_health
from lab.node.prober import _grpc
from lab.topology.model import Topology
from tests.unit.test_netexec import free_port, start, stop


@pytest.fixture(scope="module")
def netexec_port():
    port = free_port(socket.SOCK_STREAM)
    proc, ready = start("--hostname", "cart-1", "--tcp", str(port), "--bind", "127.0.0.1")
    assert ready == b"ready\n"
    yield port
    stop(proc)


@pytest.fixture(scope="module")
def grpcio_server():
    """A real gRPC server with the standard health service: "" SERVING, "cart" NOT_SERVING."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.set("cart", health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port
    server.stop(None)


# --- the prober against a real gRPC server ---

def test_the_probe_reads_serving_from_a_real_grpc_server(grpcio_server):
    assert _grpc("127.0.0.1", grpcio_server, 2, "", "grpc") == (True, "grpc -> SERVING")


def test_the_probe_fails_on_not_serving(grpcio_server):
    assert _grpc("127.0.0.1", grpcio_server, 2, "cart", "grpc") == (False, "grpc -> NOT_SERVING")


def test_the_probe_fails_on_an_unknown_service_with_what_the_server_said(grpcio_server):
    assert _grpc("127.0.0.1", grpcio_server, 2, "nobody", "grpc") == (False, "grpc -> grpc-status 5 (NOT_FOUND)")


def test_the_probe_fails_on_a_closed_port():
    ok, detail = _grpc("127.0.0.1", free_port(socket.SOCK_STREAM), 1, "", "grpc")
    assert not ok and "refused" in detail.lower()


def test_an_http1_server_is_not_a_grpc_answer():
    """A plain TCP server that answers HTTP/1.1 to anything: never ready, never a traceback."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def serve():
            conn, _ = listener.accept()
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" + b"\xff" * 64)
            conn.close()
        threading.Thread(target=serve, daemon=True).start()
        ok, detail = _grpc("127.0.0.1", listener.getsockname()[1], 1, "", "grpc")
    assert not ok and "->" in detail


def test_silence_is_a_timeout_not_a_pass():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        ok, detail = _grpc("127.0.0.1", listener.getsockname()[1], 0.3, "", "grpc")
    assert (ok, detail) == (False, "grpc: timed out after 0.3s")


# --- the stand-in against a real gRPC client ---

def _check(port: int, service: str) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=3).status


def test_a_real_grpc_client_gets_serving_from_netexec(netexec_port):
    assert _check(netexec_port, "") == health_pb2.HealthCheckResponse.SERVING
    assert _check(netexec_port, "hipstershop.CartService") == health_pb2.HealthCheckResponse.SERVING


def test_netexec_says_not_serving_for_a_service_named_not_found(netexec_port):
    assert _check(netexec_port, "not-found-cart") == health_pb2.HealthCheckResponse.NOT_SERVING


def test_netexec_still_speaks_http_and_echo_on_the_same_port(netexec_port):
    with socket.create_connection(("127.0.0.1", netexec_port), timeout=3) as s:
        s.sendall(b"GET /hostname HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(4096).endswith(b"cart-1")
    with socket.create_connection(("127.0.0.1", netexec_port), timeout=3) as s:
        s.sendall(b"PRIVATE")
        assert s.recv(64) == b"PRIVATE"


def test_the_probe_and_netexec_agree(netexec_port):
    assert _grpc("127.0.0.1", netexec_port, 2, "", "g") == (True, "g -> SERVING")
    assert _grpc("127.0.0.1", netexec_port, 2, "not-found", "g") == (False, "g -> NOT_SERVING")


# --- the wire, pure ---

def test_a_huffman_coded_string_reads_as_none_and_the_dynamic_table_is_kept():
    table: list = []
    block = b"\x40\x0bgrpc-status\x010" + b"\xbe" + b"\x00\x02te\x81\xff"
    fields = grpc_health.header_fields(block, table)
    assert fields == [("grpc-status", "0"), ("grpc-status", "0"), ("te", None)]
    assert table == [("grpc-status", "0")]


def test_truncated_frames_wait_for_more():
    buffer = bytearray(grpc_health.frame(grpc_health.DATA, 0, 1, b"abcdef")[:-2])
    assert list(grpc_health.frames(buffer)) == [] and len(buffer) == 13
    buffer += b"ef"
    assert list(grpc_health.frames(buffer)) == [(grpc_health.DATA, 0, 1, b"abcdef")]


# --- planning: which probes are gRPC ---

def _probe_of(container: dict):
    topo = Topology.model_validate({"name": "g", "cluster": {"dns": {"enabled": False}}, "nodes": [{"name": "n1"}],
                                    "manifests": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                                                   "spec": {"containers": [container]}}]})
    return plan(topo).pods[0].containers[0].readiness


def test_a_grpc_probe_is_planned_as_grpc_with_its_service():
    r = _probe_of({"name": "s", "image": "gcr.io/x/cartservice:v1", "ports": [{"containerPort": 7070}],
                   "readinessProbe": {"grpc": {"port": 7070, "service": "cart"}, "periodSeconds": 5}})
    assert (r.kind, r.port, r.service, r.period) == ("grpc", 7070, "cart", 5)


def test_a_stand_ins_grpc_health_probe_exec_is_played_as_a_grpc_probe():
    r = _probe_of({"name": "s", "image": "gcr.io/x/cartservice:v0.2.0", "ports": [{"containerPort": 7070}],
                   "readinessProbe": {"exec": {"command": ["/bin/grpc_health_probe", "-addr=:7070", "-rpc-timeout=5s"]},
                                      "initialDelaySeconds": 15}})
    assert (r.kind, r.port, r.service, r.initial_delay, r.timeout) == ("grpc", 7070, "", 15, 1)


@pytest.mark.parametrize("command", [["/bin/grpc_health_probe", "-addr=:7070", "-tls"],
                                     ["/bin/grpc_health_probe"],
                                     ["/bin/other_probe", "-addr=:7070"]])
def test_other_exec_probes_run_as_written(command):
    r = _probe_of({"name": "s", "image": "gcr.io/x/cartservice:v1", "ports": [{"containerPort": 7070}],
                   "readinessProbe": {"exec": {"command": command}}})
    assert (r.kind, r.command) == ("exec", tuple(command))


def test_a_built_in_images_exec_probe_is_never_reinterpreted():
    r = _probe_of({"name": "s", "image": "netexec", "args": ["--tcp", "7070"],
                   "readinessProbe": {"exec": {"command": ["grpc_health_probe", "-addr=:7070"]}}})
    assert r.kind == "exec"
