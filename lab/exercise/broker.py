"""The grader's side of a submission's `lab`: a Unix socket that runs the commands sandbox.admit lets
through, as root, for the one lab and exercise being graded.

Requests come only from the student's user (the peer's credentials are checked), one JSON line
each: the arguments and what goes on stdin. `lab exec` commands run confined (--confine: the
submission's namespaces, the student's user, network capabilities only); every other command is
the lab CLI itself, which never reads a path the student named (the client sends file contents).
"""
from __future__ import annotations

import json
import os
import socket
import struct
import sys
import threading
import time
from typing import Optional

from lab import host
from lab.errors import LabError
from lab.exercise import sandbox

MAX_REQUEST = 16 << 20
MAX_OUTPUT = 4 << 20
AT_ONCE = 4  # commands running for one submission at a time; more wait their turn


class Broker:
    def __init__(self, path: str, who: sandbox.Student, lab: str, exercise: str, deadline: float):
        self.who, self.lab, self.exercise, self.deadline = who, lab, exercise, deadline
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chown(path, who.uid, who.gid)
        os.chmod(path, 0o600)
        self.sock.listen(64)
        self.slots = threading.Semaphore(AT_ONCE)
        self.threads: list[threading.Thread] = []
        self.confine = ""          # set once the submission's namespaces exist (confine_to)
        self.confined = threading.Event()
        self.namespaces: list[int] = []
        self.served = 0
        self.refused = 0
        self.accepting = threading.Thread(target=self._accept, name="lab-broker", daemon=True)
        self.accepting.start()

    def confine_to(self, init: int) -> None:
        """The namespaces of the submission's first process (`init`, PID 1 inside), held open by
        descriptor: a recycled PID can never redirect a command elsewhere. Namespaces that are the
        grader's own mean the sandbox is not there: nothing is confined to them."""
        fds = [os.open(f"/proc/{init}/ns/mnt", os.O_RDONLY), os.open(f"/proc/{init}/ns/pid", os.O_RDONLY)]
        self.namespaces += fds
        own = [os.stat("/proc/self/ns/mnt").st_ino, os.stat("/proc/self/ns/pid").st_ino]
        if any(os.fstat(fd).st_ino == ino for fd, ino in zip(fds, own)):
            raise LabError("the submission's sandbox has the grader's own namespaces: not running it")
        me = os.getpid()
        self.confine = f"{self.who.uid}:{self.who.gid}:/proc/{me}/fd/{fds[0]}:/proc/{me}/fd/{fds[1]}"
        self.confined.set()

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.accepting.join(timeout=5)
        for t in list(self.threads):
            t.join(timeout=max(0.0, self.deadline - time.monotonic()) + 5)
        for fd in self.namespaces:
            os.close(fd)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads = [x for x in self.threads if x.is_alive()] + [t]
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(max(0.1, self.deadline - time.monotonic()))
                try:
                    reply = self._answer(conn)
                except (LabError, ValueError) as e:  # the grader's side failed: the submission is told, not crashed
                    reply = _reply(1, "", f"lab: the grader could not run it: {e}\n")
                conn.sendall(json.dumps(reply).encode())
            except OSError:
                pass  # the client went away (or the submission ended): nothing to answer

    def _answer(self, conn: socket.socket) -> dict:
        _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        if uid != self.who.uid:
            self.refused += 1
            return _reply(1, "", f"lab: only the submission's user may use this broker (uid {uid})\n")
        raw = _read(conn)
        try:
            request = json.loads(raw) if raw is not None else None
            argv, stdin = request["argv"], request.get("stdin", "")
            if not (isinstance(argv, list) and all(isinstance(a, str) for a in argv) and isinstance(stdin, str)):
                raise TypeError
        except (ValueError, TypeError, KeyError):
            self.refused += 1
            return _reply(2, "", "lab: a request the broker cannot read\n")
        try:
            admitted = sandbox.admit(argv, self.lab, self.exercise, stdin)
        except sandbox.Refused as e:
            self.refused += 1
            return _reply(2, "", f"lab: {e}\n")
        with self.slots:
            left = self.deadline - time.monotonic()
            if left <= 0:
                return _reply(1, "", "lab: the submission's time is up\n")
            try:
                argv = self._argv(admitted)
            except sandbox.Refused as e:
                return _reply(1, "", f"lab: {e}\n")
            done = host.run(argv, input=stdin, env=self._env(), timeout=left, check=False)
        self.served += 1
        return _reply(done.code if done.code is not None else 124, done.stdout, done.stderr)

    def _argv(self, a: sandbox.Admitted) -> list[str]:
        base = [sys.executable, "-m", "lab", *a.args]
        if a.kind != "exec":
            return base
        if not self.confined.wait(max(0.0, self.deadline - time.monotonic())):
            raise sandbox.Refused("the submission's sandbox never came up")
        return base + ["--confine", self.confine, "--", *a.command]

    def _env(self) -> dict[str, str]:
        """The lab CLI's environment: the grader's own run root, nothing of the student's."""
        keep = ("PATH", "K8S_NETLAB_RUN", "LANG", "LC_ALL")
        return {k: os.environ[k] for k in keep if k in os.environ} | {"LAB_EXERCISE": self.exercise}


def _read(conn: socket.socket) -> Optional[bytes]:
    data = b""
    while len(data) <= MAX_REQUEST:
        chunk = conn.recv(1 << 16)
        if not chunk:
            return data
        data += chunk
    return None


def _reply(code: int, out: str, err: str) -> dict:
    cut = "\n[output cut at 4 MB]\n"
    return {"code": code, "stdout": out[:MAX_OUTPUT] + (cut if len(out) > MAX_OUTPUT else ""),
            "stderr": err[:MAX_OUTPUT]}
