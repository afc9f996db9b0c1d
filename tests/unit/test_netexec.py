"""netexec, the image every pod runs, on loopback: its answers are what the probe engine parses."""
from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

NETEXEC = Path(__file__).resolve().parents[2] / "lab" / "images" / "netexec.py"
TIMEOUT = 5.0


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(*args: str) -> tuple[subprocess.Popen, bytes]:
    """Start netexec with a ready pipe; returns the process and what it wrote there before EOF/timeout."""
    rfd, wfd = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(NETEXEC), "--ready-fd", str(wfd), *args],
            pass_fds=(wfd,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        os.close(wfd)
        wfd = -1
        readable, _, _ = select.select([rfd], [], [], TIMEOUT)
        return proc, os.read(rfd, 64) if readable else b""
    finally:
        os.close(rfd)
        if wfd >= 0:
            os.close(wfd)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=TIMEOUT)


@pytest.fixture(scope="module")
def server():
    tcp1, tcp2, udp = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    proc, ready = start("--hostname", "unit-pod", "--namespace", "unit-ns", "--bind", "127.0.0.1",
                        "--tcp", str(tcp1), "--tcp", str(tcp2), "--udp", str(udp))
    try:
        assert ready == b"ready\n", proc.stderr.read() if proc.poll() is not None else "no ready line"
        yield {"tcp": tcp1, "tcp2": tcp2, "udp": udp}
    finally:
        stop(proc)


def tcp_exchange(port: int, payload: bytes) -> tuple[bytes, tuple[str, int]]:
    """Send payload, half-close, read to EOF; returns the reply and our own address."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks), s.getsockname()


def http_get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes, tuple[str, int]]:
    reply, me = tcp_exchange(port, f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), headers, body, me


def udp_exchange(port: int, payload: bytes) -> tuple[bytes, tuple[str, int]]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(TIMEOUT)
        s.connect(("127.0.0.1", port))
        s.send(payload)
        return s.recv(65535), s.getsockname()


@pytest.mark.parametrize("path", ["/hostname", "/"])
def test_hostname(server, path):
    status, headers, body, _ = http_get(server["tcp"], path)
    assert (status, body) == (200, b"unit-pod")
    assert headers["Connection"] == "close" and headers["Content-Length"] == "8"
    assert headers["X-Netexec-Hostname"] == "unit-pod"  # who answered, on every reply


def test_clientip_is_the_peer_address(server):
    status, _, body, me = http_get(server["tcp2"], "/clientip")
    assert (status, body.decode()) == (200, f"{me[0]}:{me[1]}")


def test_echo_url_decodes(server):
    assert http_get(server["tcp"], "/echo?x=1&msg=hello%20w%C3%B6rld+!")[2] == "hello wörld !".encode()


def test_healthz_any_path_not_found_and_head(server):
    assert http_get(server["tcp"], "/healthz")[::2] == (200, b"ok")
    assert http_get(server["tcp"], "/api/v1/ready?x=1")[::2] == (200, b"unit-pod"), "real apps' paths pass"
    assert http_get(server["tcp"], "/not-found-by-design")[0] == 404
    assert http_get(server["tcp"], "/not-found")[0] == 404
    status, headers, body, _ = http_get(server["tcp"], "/hostname", method="HEAD")
    assert (status, headers["Content-Length"], body) == (200, "8", b"")


def test_the_conformance_echo_answers_what_arrived_as_json(server):
    import json

    reply, _ = tcp_exchange(server["tcp"], b"PUT /a/b?c=1 HTTP/1.1\r\nHost: shop.example\r\nX-Netexec-Echo: request\r\n"
                                           b"X-A: 1\r\nX-A: 2\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    echo = json.loads(body)
    assert echo == {"path": "/a/b?c=1", "host": "shop.example", "method": "PUT", "pod": "unit-pod",
                    "namespace": "unit-ns", "headers": {
        "Host": ["shop.example"], "X-Netexec-Echo": ["request"], "X-A": ["1", "2"]}}
    assert http_get(server["tcp"], "/a/b")[2] == b"unit-pod"  # without the header: the usual answer


def test_a_delayed_echo_answers_late_while_others_are_served(server):
    import json

    done = {}

    def slow():
        t0 = time.monotonic()
        reply, _ = tcp_exchange(server["tcp"], b"GET /slow?delay=600ms HTTP/1.1\r\nHost: x\r\nX-Netexec-Echo: request\r\n\r\n")
        done["seconds"], done["body"] = time.monotonic() - t0, reply.partition(b"\r\n\r\n")[2]

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    assert http_get(server["tcp"], "/hostname")[2] == b"unit-pod"  # not held behind the slow one
    assert time.monotonic() - t0 < 0.3
    thread.join(TIMEOUT)
    assert 0.55 <= done["seconds"] < 2.0
    assert json.loads(done["body"])["path"] == "/slow?delay=600ms"


@pytest.mark.parametrize("value, seconds", [("1s", 1.0), ("500ms", 0.5), ("0.2", 0.2), ("x", 0.0), ("", 0.0)])
def test_delay_reads_the_query(value, seconds):
    sys.path.insert(0, str(NETEXEC.parent))
    try:
        import netexec
    finally:
        sys.path.pop(0)
    assert netexec.delay(f"/p?a=1&delay={value}") == seconds
    assert netexec.delay("/p") == 0.0


def test_post_body_is_consumed(server):
    reply, _ = tcp_exchange(server["tcp"], b"POST /hostname HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
    assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"\r\n\r\nunit-pod")


@pytest.mark.parametrize("payload", [b"hello\x00raw\nbytes", b"GE", b"GETX / HTTP/1.1\r\n\r\n"])
def test_raw_tcp_is_echoed(server, payload):
    assert tcp_exchange(server["tcp"], payload)[0] == payload


def test_large_echo_with_back_pressure(server):
    data = os.urandom(4 << 20)
    with socket.create_connection(("127.0.0.1", server["tcp"]), timeout=TIMEOUT) as s:
        def send():
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        sender = threading.Thread(target=send)
        sender.start()
        received = bytearray()
        while chunk := s.recv(1 << 20):
            received += chunk
        sender.join(TIMEOUT)
    assert received == data


def test_hundreds_of_concurrent_connections(server):
    socks = [socket.create_connection(("127.0.0.1", server["tcp"]), timeout=TIMEOUT) for _ in range(400)]
    try:
        for s in socks:
            s.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
        for s in socks:
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"ok")
    finally:
        for s in socks:
            s.close()


def test_udp_commands(server):
    assert udp_exchange(server["udp"], b"hostname")[0] == b"unit-pod"
    reply, me = udp_exchange(server["udp"], b"clientip\n")
    assert reply.decode() == f"{me[0]}:{me[1]}"
    reply, me = udp_exchange(server["udp"], b"whoami")
    assert reply.decode() == f"unit-pod {me[0]}:{me[1]}"
    assert udp_exchange(server["udp"], b"echo hi there")[0] == b"hi there"
    assert udp_exchange(server["udp"], b"anything else")[0] == b"anything else"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_exits_zero_promptly(sig):
    proc, ready = start("--hostname", "x", "--bind", "127.0.0.1", "--tcp", str(free_port(socket.SOCK_STREAM)))
    try:
        assert ready == b"ready\n"
        proc.send_signal(sig)
        assert proc.wait(timeout=2) == 0
    finally:
        stop(proc)


def test_bind_failure_exits_1_without_ready():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        udp = free_port(socket.SOCK_DGRAM)
        proc, ready = start("--hostname", "x", "--bind", "127.0.0.1", "--udp", str(udp), "--tcp", str(port))
        try:
            assert proc.wait(timeout=TIMEOUT) == 1
            assert ready == b""
            assert f"cannot bind tcp 127.0.0.1:{port}" in proc.stderr.read().decode()
        finally:
            stop(proc)


def test_usage_error_exits_2():
    proc, ready = start("--hostname", "x", "--tcp", "not-a-port")
    try:
        assert (proc.wait(timeout=TIMEOUT), ready) == (2, b"")
        assert "bad --tcp value 'not-a-port'" in proc.stderr.read().decode()
    finally:
        stop(proc)


def test_time_to_ready_is_small():
    """Not a benchmark: a gross regression (a heavy import) shows up here, the number is printed."""
    t0 = time.monotonic()
    proc, ready = start("--hostname", "x", "--bind", "127.0.0.1", "--tcp", str(free_port(socket.SOCK_STREAM)))
    elapsed = time.monotonic() - t0
    try:
        assert ready == b"ready\n"
        print(f"netexec time-to-ready: {elapsed * 1000:.1f} ms")
        assert elapsed < 2.0
    finally:
        stop(proc)


def test_two_binds_serve_each_family_on_its_own_socket_with_plain_client_addresses():
    """A dual-stack pod's netexec (--bind 0.0.0.0 --bind ::): an IPv4 client is seen as itself,
    not as ::ffff:a.b.c.d, and an IPv6 client as [addr]:port."""
    port = free_port(socket.SOCK_STREAM)
    proc, ready = start("--hostname", "ds", "--bind", "127.0.0.1", "--bind", "::1", "--tcp", str(port))
    try:
        assert ready == b"ready\n"
        status, _, body, me = http_get(port, "/clientip")
        assert (status, body.decode()) == (200, f"127.0.0.1:{me[1]}")
        with socket.create_connection(("::1", port), timeout=TIMEOUT) as s:
            s.sendall(b"GET /clientip HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = s.recv(65536).decode()
            assert reply.endswith(f"[::1]:{s.getsockname()[1]}")
    finally:
        stop(proc)
