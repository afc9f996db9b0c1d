"""The thin server of `lab web`: the standard library's ThreadingHTTPServer, a thread that watches
the lab's record and makes a new snapshot within POLL seconds of any change, and server-sent events
that push each snapshot to the open pages. The work is the public functions of the commands the
page stands for (lab.graph through lab.web.view, lab.trace.run, lab.probe.netpol, lab.exercise.runner,
lab.runtime.nodes and lab.runtime.faults); what a request may ask is lab.web.admission's."""
from __future__ import annotations

import json
import os
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs, urlsplit

from lab import host
from lab.errors import LabError
from lab.host import record
from lab.web import admission, view
from lab.web.admission import Refused

POLL = 0.1            # seconds between looks at the record: a change is on the page well within 1 s
KEEPALIVE = 15.0      # seconds between comments on an idle event stream (proxies close silent ones)
MAX_BODY = 64 * 1024
STATIC = Path(__file__).parent / "static"
FILES = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript; charset=utf-8"),
         "/app.css": ("app.css", "text/css; charset=utf-8"), "/favicon.svg": ("favicon.svg", "image/svg+xml")}
SECURITY = {  # nothing from elsewhere, no framing (clicks on actions), no sniffing
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class Live:
    """The lab's record, watched: the newest snapshot (JSON bytes) and its version."""

    def __init__(self, lab: str):
        self.lab = lab
        self.version = 0
        self.body = b"{}"
        self.state = None            # the ClusterState of the last snapshot (for admission)
        self._seen: Optional[tuple] = ()
        self._cond = threading.Condition()

    def _stamp(self) -> Optional[tuple]:
        try:
            st = os.stat(record.RUN_ROOT / self.lab / "record.json")
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def poll(self) -> bool:
        """A new snapshot if the record changed since the last one; whether it did."""
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        try:
            from lab.node import underlay
            from lab.runtime import faults

            rec = record.load(self.lab)
            doc = view.snapshot(rec.state, rec.pod_ready, underlay.stopped(rec),
                                [f.to_dict() for f in faults.active_in(rec)], self.version + 1)
            state = rec.state
        except LabError as e:       # the lab is gone (lab down) or its record is being replaced
            doc, state = {"lab": self.lab, "version": self.version + 1, "gone": str(e)}, None
        body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
        with self._cond:
            self._seen, self.body, self.state = stamp, body, state
            self.version += 1
            self._cond.notify_all()
        return True

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(POLL):
            try:
                self.poll()
            except Exception as e:  # noqa: BLE001 - a bad moment must not stop the live view; said, then retried
                print(f"lab web: reading lab {self.lab}'s record failed: {type(e).__name__}: {e}", file=sys.stderr)

    def next(self, after: int, timeout: float) -> tuple[int, bytes]:
        """The first snapshot newer than `after`, or the same version after `timeout`."""
        with self._cond:
            self._cond.wait_for(lambda: self.version != after, timeout)
            return self.version, self.body


class App:
    """What every request handler shares: the lab, the token, whether actions are on."""

    def __init__(self, lab: str, bound: str, port: int, allow_actions: bool):
        self.lab, self.bound, self.port, self.allow_actions = lab, bound, port, allow_actions
        self.token = secrets.token_urlsafe(24)
        self.live = Live(lab)
        self.work = threading.Lock()       # one trace, matrix, check or action at a time: they share the lab
        self.pcaps: dict[str, Path] = {}   # opaque id -> the lab's directory of a trace this server ran
        self.stop = threading.Event()

    def page(self) -> bytes:
        html = (STATIC / "index.html").read_text()
        return html.replace("{{TOKEN}}", self.token).replace("{{ACTIONS}}", "on" if self.allow_actions else "off") \
            .replace("{{LAB}}", self.lab).encode()


def _trace(app: App, q: dict) -> dict:
    from lab.trace import report, run, saved

    rec = record.load(app.lab)
    protocol = (q.get("protocol") or "TCP").upper()
    if protocol not in ("TCP", "UDP", "ICMP"):
        raise LabError(f"protocol {protocol!r}: TCP, UDP or ICMP")
    if not q.get("src") or not q.get("dst"):
        raise LabError("a trace needs src and dst (pod/NS/NAME, svc/NAME.NS:PORT, host/NAME, node/NAME:PORT)")
    src, dst = run.targets(rec.state, q["src"], q["dst"], protocol, "default")
    keep = saved.create(rec.dir)
    hops, rows, obs = run.trace(rec.state, src, dst, protocol, rec.pod_ready, keep=keep, record=rec)
    port = f":{dst.port}" if dst.port else ""
    title = f"lab trace {src.name} → {dst.name}{port} {protocol} (lab {rec.name})"
    doc = json.loads(report.to_json(title, hops, rows, obs))
    app.pcaps = {i: d for i, d in app.pcaps.items() if host.path_exists(d)}   # older ones pruned by saved
    if saved.merged(keep):
        app.pcaps[keep.name] = keep
        doc["pcap"] = keep.name
    return doc


def _pcap(app: App, q: dict) -> tuple[bytes, str]:
    """The merged pcap of a trace this server ran, by its id (never a path from the client)."""
    from lab.trace import saved

    where = app.pcaps.get(q.get("id") or "")
    merged = saved.merged(where) if where is not None else None
    if merged is None:
        raise Refused(404, "no such trace capture here: trace again, then download")
    return host.read_bytes(merged), f"lab-{app.lab}-trace-{where.name[-16:]}.pcap"


def _netpol(app: App, q: dict) -> dict:
    from lab.probe import netpol

    state = record.load(app.lab).state
    try:
        m = netpol.measure(state)
    except netpol.NothingToProbe as e:
        raise LabError(str(e)) from None
    return view.policy_table({"lab": state.lab, **netpol.as_json(m)}, q.get("namespace", ""))


def _session(app: App):
    """The exercise started on this lab, as sealed at its start; (None, None) without one."""
    from lab.exercise import model, session as sessions

    for name in sessions.names():
        s = sessions.load(name)
        if s is not None and s.lab == app.lab:
            return model.load(s.sealed or s.path), s
    return None, None


def _exercise(app: App, q: dict, graded: bool) -> dict:
    from lab.exercise import runner

    ex, s = _session(app)
    if ex is None:
        return {"exercise": None, "message": f"no exercise is started on lab {app.lab} (lab exercise start NAME)"}
    return view.exercise_panel(ex, s, runner.evaluate(ex, s, hidden=False) if graded else None)


def _hint(app: App, body: dict) -> dict:
    from lab.exercise import runner

    ex, s = _session(app)
    if ex is None:
        raise LabError(f"no exercise is started on lab {app.lab}")
    task = body.get("task") if isinstance(body, dict) else None
    if task not in [t.id for t in ex.tasks]:
        raise LabError(f"task {task!r}: the exercise's tasks are {', '.join(t.id for t in ex.tasks)}")
    return {"task": task, "hint": runner.next_hint(ex, s, ex.task(task))}


def _act(app: App, body: object) -> dict:
    from lab.runtime import faults, nodes

    state = app.live.state or record.load(app.lab).state
    a = admission.admit(body, state, app.allow_actions)
    if a.verb in ("node-stop", "node-start"):
        up = a.verb == "node-start"
        nodes.set_state(app.lab, a.node, up=up)
        return {"done": f"node {a.node} is {'back on' if up else 'off'} the network"}
    if a.verb == "fault-add":
        f = faults.add(app.lab, a.kind, a.target, a.params)
        return {"done": f"fault {f.id} applied: {f.kind} {f.target}"}
    done = faults.clear(app.lab, a.fault_id or None)
    return {"done": "; ".join(f"fault {f.id} cleared: {f.kind} {f.target}" for f in done) or "no active faults"}


GETS = {"/api/trace": lambda app, q: _trace(app, q), "/api/netpol": _netpol,
        "/api/exercise": lambda app, q: _exercise(app, q, False),
        "/api/exercise/status": lambda app, q: _exercise(app, q, True)}
POSTS = {"/api/action": _act, "/api/exercise/hint": _hint}


class Handler(BaseHTTPRequestHandler):
    app: App
    server_version = "lab-web"
    sys_version = ""

    def log_message(self, format, *args) -> None:  # noqa: A002 - the standard library's name
        pass  # one line per request would bury what matters; errors are said where they happen

    def _send(self, status: int, body: bytes, ctype: str = "application/json; charset=utf-8",
              filename: str = "") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if filename:
            self.send_header("Content-Disposition", f'attachment; filename="{filename}"')
        self.send_header("Content-Length", str(len(body)))
        for k, v in SECURITY.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, doc: object) -> None:
        self._send(status, json.dumps(doc, ensure_ascii=False).encode())

    def _guarded(self, work) -> None:
        try:
            admission.check_request(self.headers, self.app.port, self.app.bound)
            work()
        except Refused as e:
            self._json(e.status, {"error": e.reason})
        except LabError as e:
            self._json(400, {"error": str(e)})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page went away
        except Exception as e:  # noqa: BLE001 - our bug: said to the page and on stderr, never a traceback
            what = f"internal error: {type(e).__name__}: {e}"
            print(f"lab web: {self.command} {self.path}: {what}", file=sys.stderr)
            self._json(500, {"error": what + " (please report it)"})

    def do_GET(self) -> None:
        self._guarded(self._get)

    def do_POST(self) -> None:
        self._guarded(self._post)

    def _get(self) -> None:
        url = urlsplit(self.path)
        if url.path in FILES:
            name, ctype = FILES[url.path]
            self._send(200, self.app.page() if name == "index.html" else (STATIC / name).read_bytes(), ctype)
        elif url.path == "/api/state":
            self._send(200, self.app.live.body)
        elif url.path == "/api/events":
            self._events()
        elif url.path == "/api/fault-kinds":
            self._json(200, view.fault_kinds())
        elif url.path == "/api/trace.pcap":
            admission.check_token(self.headers, self.app.token)
            data, name = _pcap(self.app, {k: v[0] for k, v in parse_qs(url.query).items()})
            self._send(200, data, "application/vnd.tcpdump.pcap", name)
        elif url.path in GETS:
            admission.check_token(self.headers, self.app.token)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            with self.app.work:
                self._json(200, GETS[url.path](self.app, q))
        else:
            self._json(404, {"error": f"no {url.path} here"})

    def _post(self) -> None:
        path = urlsplit(self.path).path
        if path not in POSTS:
            raise Refused(404, f"no {path} here")
        admission.check_token(self.headers, self.app.token)
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 <= length <= MAX_BODY:
            raise Refused(413, f"a body of at most {MAX_BODY} bytes")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            raise Refused(400, "the body is not JSON") from None
        with self.app.work:
            self._json(200, POSTS[path](self.app, body))

    def _events(self) -> None:
        """Server-sent events: the snapshot now, then each new one, until the page goes."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        for k, v in SECURITY.items():
            self.send_header(k, v)
        self.end_headers()
        version = -1
        while not self.app.stop.is_set():
            new, body = self.app.live.next(version, KEEPALIVE)
            self.wfile.write(b": still here\n\n" if new == version else b"event: state\ndata: " + body + b"\n\n")
            self.wfile.flush()
            version = new


def start(lab: Optional[str], host: str, port: int, allow_actions: bool) -> tuple[ThreadingHTTPServer, App]:
    """The server, bound, with the lab's first snapshot made and its watcher running (serve_forever
    is the caller's)."""
    name = record.find(lab).name
    try:
        httpd = ThreadingHTTPServer((host, port), Handler)
    except OSError as e:
        raise LabError(f"lab web cannot listen on {host}:{port}: {e.strerror}; choose another --port") from None
    app = App(name, host, httpd.server_address[1], allow_actions)
    httpd.RequestHandlerClass = type("LabHandler", (Handler,), {"app": app})
    httpd.daemon_threads = True
    app.live.poll()
    threading.Thread(target=app.live.run, args=(app.stop,), name="record-watcher", daemon=True).start()
    return httpd, app


def serve(lab: Optional[str], host: str, port: int, allow_actions: bool) -> int:
    """Serve the lab until Ctrl-C; the URL goes to stdout first (a script may read it)."""
    httpd, app = start(lab, host, port, allow_actions)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: lab web listens on {host}, not only on this machine: whoever reaches it sees lab {app.lab}"
              + (" and can stop its nodes and break it (--allow-actions)" if allow_actions else ""), file=sys.stderr)
    shown = f"[{host}]" if ":" in host else host
    print(f"lab web: lab {app.lab} at http://{shown}:{app.port}/ (actions {'on' if allow_actions else 'off'}; "
          "Ctrl-C stops)", flush=True)
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        app.stop.set()
        httpd.server_close()
    return 0
