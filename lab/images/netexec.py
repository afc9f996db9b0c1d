"""The built-in `netexec` image: a tiny agnhost-netexec look-alike every pod runs.

Standalone on purpose (stdlib only, no `lab` imports) so `python3 -I -S netexec.py` starts in a
few milliseconds: a `lab up` starts one per pod. One thread, one selectors loop, many ports.

    netexec.py --hostname NAME [--namespace NS] [--tcp PORT]... [--udp PORT]... [--bind ADDR]... [--ready-fd FD]
    netexec.py --forkserver     (one interpreter forks a netexec per request: see forkserver())

TCP: a request that starts like HTTP ("GET ", "POST ", ...) gets one HTTP/1.1 answer
(/hostname, /clientip, /echo?msg=X, /healthz; any other path 200 with the hostname, so the health
and readiness paths of real apps pass, except paths starting with /not-found: 404, for a probe
meant to fail), then the connection is closed; anything else
is echoed back byte for byte until the peer closes; every HTTP answer names the pod in an
X-Netexec-Hostname header. A request with the header `X-Netexec-Echo: request` gets, on any path,
the Gateway API conformance echo instead: JSON of what arrived (path, host, method, headers, pod,
namespace), so a check sees what a proxy's rewrites and header filters did; such a request is also
logged (one line with its X-Request-Id: how a mirror's copy is found), and `?delay=1s` in its query
holds the answer that long (a slow backend, for a proxy's timeouts; the loop keeps serving others).
A connection that opens with HTTP/2's
preface is served as gRPC's health service (every call answers Health/Check: SERVING, NOT_SERVING for
a service named not-found...), for the kubelet's gRPC probes. UDP: "hostname", "clientip", "whoami" ("NAME ip:port"), "echo X",
anything else is echoed. Once every port listens, "ready\\n" is written to --ready-fd.
"""
import heapq
import json
import os
import selectors
import signal
import socket
import sys
import time

USAGE = "usage: netexec.py --hostname NAME [--namespace NS] [--tcp PORT]... [--udp PORT]... [--bind ADDR]... [--ready-fd FD]"
METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ")
MAX_HEAD = 16384  # an HTTP request head larger than this is refused (431)
MAX_BODY = 1 << 20  # a request body is read (so close() does not reset the reply) up to this
HIGH_WATER = 1 << 20  # an echo peer that does not read its replies stops being read from
BACKLOG = 1024
NOT_FOUND = "/not-found"  # paths starting so get 404: a readiness probe meant to fail


def usage_error(message):
    sys.stderr.write(f"netexec: {message}\n{USAGE}\n")
    sys.exit(2)


def parse_args(argv):
    """Hand-rolled (argparse costs as much as the whole start-up); exits 2 on misuse."""
    opts = {"hostname": None, "namespace": "", "tcp": [], "udp": [], "bind": [], "ready_fd": None}
    if len(argv) % 2:
        usage_error(f"{argv[-1]} needs a value")
    for flag, value in zip(argv[::2], argv[1::2]):
        if flag == "--hostname":
            opts["hostname"] = value
        elif flag == "--bind":  # repeated: 0.0.0.0 and :: for a dual-stack pod
            opts["bind"].append(value)
        elif flag == "--namespace":
            opts["namespace"] = value
        elif flag in ("--tcp", "--udp", "--ready-fd"):
            if not value.isdigit() or (flag != "--ready-fd" and not 0 < int(value) < 65536):
                usage_error(f"bad {flag} value {value!r}")
            if flag == "--ready-fd":
                opts["ready_fd"] = int(value)
            else:
                opts[flag[2:]].append(int(value))
        else:
            usage_error(f"unknown option {flag!r}")
    if opts["hostname"] is None or not (opts["tcp"] or opts["udp"]):
        usage_error("--hostname and at least one --tcp/--udp port are required")
    opts["bind"] = opts["bind"] or ["0.0.0.0"]
    return opts


def peer_text(addr):
    """ip:port as the server sees the client ([ip]:port for IPv6, like Go's RemoteAddr)."""
    ip, port = addr[0], addr[1]
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def unquote(text):
    """URL-decode a query value (%XX and '+'); urllib.parse would double the start-up time."""
    raw = text.replace("+", " ").encode("utf-8", "surrogateescape")
    parts = raw.split(b"%")
    out = [parts[0]]
    for part in parts[1:]:
        try:
            out.append(bytes.fromhex(part[:2].decode("ascii")) + part[2:])
        except ValueError:
            out.append(b"%" + part)
    return b"".join(out)


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def delay(target):
    """Seconds of a `delay=` in the query (1s, 500ms, 0.2), 0 when none or unreadable."""
    for pair in target.partition("?")[2].split("&"):
        key, _, value = pair.partition("=")
        if key == "delay":
            unit = 0.001 if value.endswith("ms") else 1.0
            number = value[:-2] if value.endswith("ms") else value.rstrip("s")
            try:
                return max(0.0, min(float(number) * unit, 60.0))
            except ValueError:
                return 0.0
    return 0.0


def h2_frame(kind, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def grpc_answer(stream, body):
    """HEADERS, the HealthCheckResponse and the trailers for one call whose request body (a gRPC
    message: flag, length, HealthCheckRequest) is `body`. HPACK literals, never Huffman."""
    message = body[5:5 + int.from_bytes(body[1:5], "big")] if len(body) >= 5 else b""
    service = message[2:2 + message[1]] if message[:1] == b"\x0a" and len(message) > 1 else b""
    status = 2 if service.startswith(NOT_FOUND[1:].encode()) else 1
    reply = b"\x08" + bytes([status])
    headers = b"\x88\x0f\x10\x10application/grpc"                    # :status 200, content-type
    trailers = b"\x00\x0bgrpc-status\x010"
    return (h2_frame(1, 4, stream, headers)
            + h2_frame(0, 0, stream, b"\x00" + len(reply).to_bytes(4, "big") + reply)
            + h2_frame(1, 5, stream, trailers))


class Conn:
    """One accepted TCP connection: decides HTTP or echo from its first bytes."""

    def __init__(self, server, sock, peer):
        self.server, self.sock, self.peer = server, sock, peer
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.mode = None  # None until sniffed, then "http", "h2" or "echo"; "done" once answered
        self.closing = False  # close once outbuf is flushed
        self.events = selectors.EVENT_READ  # what the selector currently waits for

    def on_event(self, mask):
        if mask & selectors.EVENT_READ:
            self.on_readable()
        if self.sock.fileno() >= 0 and mask & selectors.EVENT_WRITE:
            self.flush()

    def on_readable(self):
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return self.close()
        if not data:
            if self.mode is None:  # EOF before the sniff decided: "GE" alone is echo traffic
                self.outbuf += self.inbuf
            return self.finish()
        self.inbuf += data
        if self.mode is None:
            self.sniff()
        if self.mode == "echo":
            self.outbuf += self.inbuf
            self.inbuf.clear()
            self.flush()
        elif self.mode == "http":
            self.http()
        elif self.mode == "h2":
            self.grpc()

    def sniff(self):
        head = self.inbuf[:8]
        if self.inbuf[:len(H2_PREFACE)] == H2_PREFACE[:len(self.inbuf)]:
            if len(self.inbuf) >= len(H2_PREFACE):
                del self.inbuf[:len(H2_PREFACE)]
                self.mode, self.h2 = "h2", {"streams": {}}
                self.outbuf += h2_frame(4, 0, 0)  # our SETTINGS (all defaults)
            return
        if any(head.startswith(m) for m in METHODS):
            self.mode = "http"
        elif not any(m.startswith(head) for m in METHODS):
            self.mode = "echo"

    def http(self):
        end = self.inbuf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.inbuf) > MAX_HEAD:
                self.respond(431, "request header too large\n", False)
            return
        lines = self.inbuf[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return self.respond(400, "bad request line\n", False)
        method, target = parts[0], parts[1]
        length = 0
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
            if name.strip().lower() == "content-length":
                length = int(value.strip()) if value.strip().isdigit() else -1
        if length < 0 or length > MAX_BODY:
            return self.respond(400, "bad content-length\n", False)
        if len(self.inbuf) < end + 4 + length:
            return  # wait for the body: closing with unread data would reset our reply
        self.inbuf.clear()
        if self.headers.get("x-netexec-echo") == "request":  # the conformance echo: what arrived, as JSON
            seen: dict = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                seen.setdefault(name.strip(), []).append(value.strip())
            body = json.dumps({"path": target, "host": self.headers.get("host", ""), "method": method, "headers": seen,
                               "namespace": self.server.namespace, "pod": self.server.hostname})
            sys.stderr.write(f"echo {method} {target} host={self.headers.get('host', '')} "
                             f"x-request-id={self.headers.get('x-request-id', '-')} from {peer_text(self.peer)}\n")
            sys.stderr.flush()
            wait = delay(target)
            if wait:  # not read meanwhile: a client that half-closes still gets its answer
                self.server.sel.unregister(self.sock)
                return self.server.later(wait, lambda: self.resume(200, body, method == "HEAD"))
            return self.respond(200, body, method == "HEAD")
        status, body = self.route(target)
        self.respond(status, body, method == "HEAD")

    def grpc(self):
        """HTTP/2 with prior knowledge: every call on it is answered as grpc.health.v1.Health/Check
        answers (the kubelet's gRPC probe, grpc_health_probe): SERVING, or NOT_SERVING for a
        service named not-found... (a probe meant to fail). A call ends with its END_STREAM."""
        streams = self.h2["streams"]
        while len(self.inbuf) >= 9:
            length = int.from_bytes(self.inbuf[:3], "big")
            if length > MAX_HEAD + MAX_BODY:
                return self.finish()
            if len(self.inbuf) < 9 + length:
                return
            kind, flags = self.inbuf[3], self.inbuf[4]
            stream = int.from_bytes(self.inbuf[5:9], "big") & 0x7FFFFFFF
            payload = bytes(self.inbuf[9:9 + length])
            del self.inbuf[:9 + length]
            if kind == 4 and not flags & 1:      # SETTINGS: acknowledged
                self.outbuf += h2_frame(4, 1, 0)
            elif kind == 6 and not flags & 1:    # PING: answered
                self.outbuf += h2_frame(6, 1, 0, payload)
            elif kind == 7:                      # GOAWAY
                return self.finish()
            elif kind in (0, 1) and stream:      # DATA or HEADERS of a call
                body = streams.setdefault(stream, bytearray())
                if kind == 0:
                    body += payload[1:len(payload) - payload[0]] if flags & 8 and payload else payload
                if flags & 1:
                    self.outbuf += grpc_answer(stream, bytes(streams.pop(stream)))
        self.flush()

    def route(self, target):
        path, _, query = target.partition("?")
        if path.startswith(NOT_FOUND):
            return 404, "404 page not found\n"
        if path in ("/", "/hostname"):
            return 200, self.server.hostname
        if path == "/clientip":
            return 200, peer_text(self.peer)
        if path == "/healthz":
            return 200, "ok"
        if path == "/header":  # agnhost netexec's: the request header named by ?key= (X-Forwarded-For behind a proxy)
            key = dict(pair.partition("=")[::2] for pair in query.split("&")).get("key", "")
            return 200, self.headers.get(unquote(key).decode("utf-8", "surrogateescape").lower(), "")
        if path == "/echo":
            for pair in query.split("&"):
                key, _, value = pair.partition("=")
                if key == "msg":
                    return 200, unquote(value)
            return 200, b""
        return 200, self.server.hostname  # a real app's /health, /ready, /api/...: the stand-in answers

    def resume(self, status, body, head_only):
        self.events = selectors.EVENT_READ
        self.server.sel.register(self.sock, self.events, self)
        self.respond(status, body, head_only)

    def respond(self, status, body, head_only):
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 431: "Request Header Fields Too Large"}[status]
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogateescape")
        # behind a proxy (an Ingress), the client it names: what `lab check` verifies
        xff = getattr(self, "headers", {}).get("x-forwarded-for")
        forwarded = f"X-Netexec-Forwarded-For: {xff}\r\n" if xff else ""
        header = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                  f"X-Netexec-Hostname: {self.server.hostname}\r\n{forwarded}"
                  f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
        self.mode = "done"  # anything after the request is ignored
        self.outbuf += header.encode("ascii")
        if not head_only:
            self.outbuf += body
        self.finish()

    def finish(self):
        """Close once everything queued has been sent."""
        self.closing = True
        self.flush()

    def flush(self):
        if self.outbuf:
            try:
                del self.outbuf[:self.sock.send(self.outbuf)]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                return self.close()
        if not self.outbuf and self.closing:
            return self.close()
        if not self.outbuf:
            events = selectors.EVENT_READ
        elif self.closing or len(self.outbuf) > HIGH_WATER:
            events = selectors.EVENT_WRITE  # back-pressure: stop reading a peer that does not read
        else:
            events = selectors.EVENT_READ | selectors.EVENT_WRITE
        if events != self.events:
            self.events = events
            self.server.sel.modify(self.sock, events, self)

    def close(self):
        if self.sock.fileno() >= 0:
            self.server.sel.unregister(self.sock)
            self.sock.close()


class Server:
    """All listeners plus the one loop that serves them."""

    def __init__(self, hostname, namespace=""):
        self.hostname, self.namespace = hostname, namespace
        self.sel = selectors.DefaultSelector()
        self.timers = []  # (deadline, seq, action): delayed answers, run by serve()

    def later(self, seconds, action):
        heapq.heappush(self.timers, (time.monotonic() + seconds, id(action), action))

    def listen(self, kind, addr, port):
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:  # IPv6 only: IPv4 clients keep their own socket (and plain addresses)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind((addr, port))
            if kind == "tcp":  # with SO_REUSEADDR a clash may only show here
                sock.listen(BACKLOG)
        except OSError as e:
            sock.close()
            sys.stderr.write(f"netexec: cannot bind {kind} {addr}:{port}: {e.strerror or e}\n")
            sys.exit(1)
        sock.setblocking(False)
        self.sel.register(sock, selectors.EVENT_READ, self.accept if kind == "tcp" else self.datagram)

    def accept(self, listener):
        for _ in range(256):  # drain a burst, but let other sockets have a turn
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # e.g. EMFILE: drop this one, keep serving the rest
                sys.stderr.write(f"netexec: accept: {e}\n")
                return
            sock.setblocking(False)
            conn = Conn(self, sock, peer)
            self.sel.register(sock, selectors.EVENT_READ, conn)

    def datagram(self, sock):
        for _ in range(256):
            try:
                data, peer = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error queued by an earlier reply; nothing to do
                continue
            command = data.rstrip(b"\r\n \t")
            if command == b"hostname":
                reply = self.hostname.encode("utf-8", "surrogateescape")
            elif command == b"clientip":
                reply = peer_text(peer).encode("ascii")
            elif command == b"whoami":  # the harness's question: who answered, and whom it saw
                reply = f"{self.hostname} {peer_text(peer)}".encode("utf-8", "surrogateescape")
            elif data.startswith(b"echo "):
                reply = data[5:]
            else:
                reply = data
            try:
                sock.sendto(reply, peer)
            except OSError:
                pass  # best effort, like any UDP server

    def serve(self):
        while True:
            while self.timers and self.timers[0][0] <= time.monotonic():
                heapq.heappop(self.timers)[2]()
            wait = max(0.0, self.timers[0][0] - time.monotonic()) if self.timers else None
            for key, mask in self.sel.select(wait):
                if isinstance(key.data, Conn):
                    key.data.on_event(mask)
                else:
                    key.data(key.fileobj)


def main(argv, on_ready=None):
    opts = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    server = Server(opts["hostname"], opts["namespace"])
    for kind in ("tcp", "udp"):
        for port in opts[kind]:
            for addr in opts["bind"]:
                server.listen(kind, addr, port)
    if on_ready is not None:
        on_ready()
    if opts["ready_fd"] is not None:
        os.write(opts["ready_fd"], b"ready\n")
        os.close(opts["ready_fd"])
    server.serve()


def forkserver():
    """Start many netexecs for the price of one interpreter: read requests on stdin, one per line,
    `KEY NETNS_PATH UTS_PATH LOG_PATH CGROUP ARGS...` (tab-separated; UTS_PATH `-`: the machine's;
    CGROUP: a cgroup v2 directory the child joins first, `-`: none), and
    fork a child per request that enters the namespaces and serves. Reports on stdout: `pid KEY
    PID`, then from the child `ready KEY` or `failed KEY CODE`. Exits when stdin closes; the children live on."""
    import ctypes
    setns = ctypes.CDLL(None, use_errno=True).setns
    for line in sys.stdin:
        key, netns, uts, log, cgroup, *args = line.rstrip("\n").split("\t")
        pid = os.fork()
        if pid == 0:
            os._exit(_child(setns, key, netns, uts, log, cgroup, args))
        os.write(1, f"pid {key} {pid}\n".encode())
    os._exit(0)


def _child(setns, key, netns, uts, log, cgroup, args):
    """In the forked child: become the pod's process (its node's cgroup, own session, the pod's netns
    and hostname, its log)."""
    report = [os.dup(1)]  # the pipe to the lab; fds 0-2 become /dev/null and the log

    def say(text):
        if report:
            os.write(report[0], text.encode())

    def ready():
        say(f"ready {key}\n")
        os.close(report.pop())

    code = 1
    try:
        if cgroup != "-":  # proxy ebpf: the node's socket LB applies to the sockets it makes
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as procs:
                procs.write(str(os.getpid()))
        os.setsid()
        for path, kind in ((netns, 0x40000000), (uts, 0x04000000)):  # CLONE_NEWNET, CLONE_NEWUTS
            if path != "-":
                fd = os.open(path, os.O_RDONLY)
                if setns(fd, kind) != 0:
                    raise OSError(ctypes_errno(), f"cannot enter {path}")
                os.close(fd)
        logfd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(logfd, 1)
        os.dup2(logfd, 2)
        with open("/proc/self/comm", "w") as comm:
            comm.write("netexec")
        main(args, on_ready=ready)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException as e:  # report, never return into the fork server's loop
        os.write(2, f"netexec: {e}\n".encode())
    say(f"failed {key} {code}\n")
    return code


def ctypes_errno():
    import ctypes
    return ctypes.get_errno()

if __name__ == "__main__":
    if sys.argv[1:] == ["--forkserver"]:
        forkserver()
    else:
        main(sys.argv[1:])
