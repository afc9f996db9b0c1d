"""`lab` as a submission sees it: a client of the grader's broker (lab.exercise.broker).

This file is copied into the submission's sandbox and run by the system's python3 as the student:
it imports nothing of k8s-netlab (the student cannot read the checkout) and holds no privilege.
It sends the command line and, for `-f`, the contents of the files it names (read here, as the
student: the grader never opens a student's path), and prints what the broker sends back.
"""
import json
import os
import socket
import sys

LIMIT = 8 << 20  # the objects of one apply; more is not an exercise


def _objects(path, recursive):
    """The YAML of a file, a folder's *.yaml/*.yml/*.json files, or stdin (-)."""
    if path == "-":
        return sys.stdin.read()
    if os.path.isdir(path):
        found = []
        for top, dirs, names in os.walk(path):
            dirs.sort()
            found += [os.path.join(top, n) for n in sorted(names) if n.endswith((".yaml", ".yml", ".json"))]
            if not recursive:
                break
        return "\n---\n".join(_objects(p, False) for p in found)
    with open(path) as f:
        return f.read(LIMIT + 1)


def _request(argv):
    """(the arguments to send, what goes on the command's stdin)."""
    words = argv[:argv.index("--")] if "--" in argv else argv
    if "exec" in words:
        return argv, "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    out, texts, i = [], [], 0
    recursive = "-R" in words or "--recursive" in words
    while i < len(argv):
        w = argv[i]
        if w in ("-f", "--filename") and i + 1 < len(argv):
            texts.append(_objects(argv[i + 1], recursive))
            i += 2
        elif w.startswith(("-f=", "--filename=")):
            texts.append(_objects(w.split("=", 1)[1], recursive))
            i += 1
        else:
            out.append(w)
            i += 1
    if not texts:
        return out, ""
    return out + ["-f", "-"], "\n---\n".join(texts)


def main():
    try:
        args, stdin = _request(sys.argv[1:])
    except OSError as e:
        print(f"lab: {e.filename}: {e.strerror}", file=sys.stderr)
        return 1
    if len(stdin) > LIMIT:
        print("lab: the objects are larger than 8 MB", file=sys.stderr)
        return 1
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(os.environ["LAB_BROKER"])
        sock.sendall(json.dumps({"argv": args, "stdin": stdin}).encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            data += chunk
    except (OSError, KeyError) as e:
        print(f"lab: the grader's broker cannot be reached ({e})", file=sys.stderr)
        return 1
    finally:
        sock.close()
    try:
        reply = json.loads(data)
    except ValueError:
        print("lab: the broker's answer was cut short", file=sys.stderr)
        return 1
    sys.stdout.write(reply.get("stdout", ""))
    sys.stderr.write(reply.get("stderr", ""))
    return int(reply.get("code", 1))


if __name__ == "__main__":
    sys.exit(main())
