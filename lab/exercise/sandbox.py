"""How a student's submission runs: hostile code, confined (pure planning; lab.exercise.submit runs it).

The threat model is docs/INSTRUCTORS.md's. The submission's script runs
- as an unprivileged user of its own (the package's setup.sh creates `lab-student`), with no
  capabilities, no_new_privs, and a cap on its processes (a fork bomb stops there);
- in new PID, mount and network namespaces: when the script ends, the kernel kills every process
  left in its PID namespace (setsid daemons included); it sees only its own processes, so it can
  neither signal nor read the grader's; it has no network of its own (it reaches the lab only
  through the broker);
- with its own small /tmp, /var/tmp and /dev/shm, its submission copied into a small private
  work folder, and the paths that hold secrets (the exercise spec and solutions, the sessions and
  their sealed copies, the autograder's source and results) covered by empty, unreadable mounts.

What it may do to the lab goes through the broker (lab.exercise.broker): `lab` on its PATH is a
client that asks the grader's process, which admits a fixed set of commands (admit) and runs
`lab exec` commands confined the same way (exec_confinement), with only CAP_NET_ADMIN, CAP_NET_RAW
and CAP_NET_BIND_SERVICE, inside the lab's namespaces and the submission's PID and mount namespaces.
"""
from __future__ import annotations

import grp
import pwd
from dataclasses import dataclass
from typing import Optional, Sequence

from lab.errors import LabError, TopologyError
from lab.topology.source import parse_documents

DEFAULT_USER = "lab-student"
PIDS = 256            # processes the student's user may have at once (RLIMIT_NPROC is per user)
SCRATCH = "64m"       # each of /tmp, /var/tmp, /dev/shm and the work folder
NET_CAPS = "+net_admin,+net_raw,+net_bind_service"
VTY_GROUP = "frrvty"  # FRR's group for vtysh (its vty sockets are 0770 frr:frrvty): lab exec node/X -- vtysh

# Run as root in the new namespaces, then becomes the student for good. Arguments: work folder,
# submission, uid, gid, pids; the paths to hide up to "--"; then the command.
INIT = r"""set -eu
work=$1 submission=$2 uid=$3 gid=$4 pids=$5 size=$6; shift 6
mount -t tmpfs -o "size=$size,mode=0700,uid=$uid,gid=$gid,nosuid,nodev" lab-work "$work"
cp -R "$submission"/. "$work"/
chown -R "$uid:$gid" "$work"
for d in /tmp /var/tmp /dev/shm; do
  [ -d "$d" ] && mount -t tmpfs -o "size=$size,mode=1777,nosuid,nodev" lab-scratch "$d"
done
while [ "$1" != "--" ]; do
  if [ -d "$1" ]; then mount -t tmpfs -o size=4k,mode=0,ro lab-hidden "$1"
  elif [ -e "$1" ]; then mount --bind /dev/null "$1"
  fi
  shift
done
shift
cd "$work"
exec prlimit --nproc="$pids:$pids" -- \
  setpriv --reuid="$uid" --regid="$gid" --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs -- "$@"
"""


class Refused(LabError):
    """A command the broker does not run for a submission."""


@dataclass(frozen=True)
class Student:
    name: str
    uid: int
    gid: int


def student(name: str) -> Student:
    """The unprivileged user a submission runs as: an existing user of its own, never root."""
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, ValueError):
        raise LabError(f"no user {name!r} to run the submission as: create one that nothing else uses "
                       f"(`useradd --system --user-group --no-create-home --shell /usr/sbin/nologin {name}`; "
                       "the package's setup.sh does it)") from None
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise LabError(f"user {name!r} is root or in root's group: a submission runs as a user of its own")
    return Student(entry.pw_name, entry.pw_uid, entry.pw_gid)


def script_argv(who: Student, work: str, submission: str, hide: Sequence[str], command: Sequence[str],
                pids: int = PIDS, size: str = SCRATCH) -> list[str]:
    """The submission's command, confined (see the module's docstring)."""
    return ["unshare", "--mount", "--pid", "--net", "--fork", "--kill-child", "--mount-proc",
            "--propagation", "private", "--", "sh", "-c", INIT, "lab-sandbox",
            work, submission, str(who.uid), str(who.gid), str(pids), size, *hide, "--", *command]


def exec_confinement(spec: str) -> tuple[list[str], list[str]]:
    """(nsenter options, what runs the command inside `ip netns exec`) for a command a submission
    runs in a pod or node, from the broker's spec "UID:GID:MNT_NS:PID_NS": it joins the
    submission's mount and PID namespaces (it sees what the submission sees, and dies with it),
    then drops to the student with the network capabilities only."""
    try:
        uid, gid, mnt_ns, pid_ns = spec.split(":")
        who = Student(uid, int(uid), int(gid))
    except ValueError:
        raise LabError(f"--confine {spec!r}: UID:GID:MNT_NS:PID_NS") from None
    if who.uid == 0 or who.gid == 0:
        raise LabError("--confine: a submission's commands never run as root")
    before = [f"--mount={mnt_ns}", f"--pid={pid_ns}"]
    try:
        groups = f"--groups={grp.getgrnam(VTY_GROUP).gr_gid}"
    except KeyError:  # no FRR here
        groups = "--clear-groups"
    after = ["setpriv", f"--reuid={who.uid}", f"--regid={who.gid}", groups,
             f"--inh-caps=-all,{NET_CAPS}", f"--ambient-caps=-all,{NET_CAPS}", f"--bounding-set=-all,{NET_CAPS}", "--"]
    return before, after


# --- the broker's admission: which `lab` commands a submission may have run, and how ---

# command -> (options that take a value, options that do not, how many positional arguments)
COMMANDS: dict[str, tuple[frozenset, frozenset, int]] = {
    "get": (frozenset({"-o", "--output", "-n", "--namespace"}), frozenset({"-A", "--all-namespaces"}), 2),
    "describe": (frozenset({"-n", "--namespace"}), frozenset(), 2),
    "logs": (frozenset({"-c", "--container", "-n", "--namespace"}), frozenset(), 1),
    "exec": (frozenset({"-c", "--container", "-n", "--namespace"}), frozenset(), 1),
    "dns": (frozenset({"-n", "--namespace"}), frozenset(), 3),
    "trace": (frozenset({"-p", "--protocol", "-o", "--output", "-n", "--namespace"}), frozenset({"--no-capture"}), 2),
    "netpol": (frozenset({"--ports", "--protocols", "--timeout", "--attempts", "-o", "--output"}), frozenset(), 1),
    "check": (frozenset({"--timeout", "--seed"}), frozenset({"--all-pairs"}), 0),
    "apply": (frozenset({"-f", "--filename"}), frozenset({"-R", "--recursive"}), 0),
    "delete": (frozenset({"-f", "--filename"}), frozenset({"-R", "--recursive", "--ignore-not-found"}), 0),
    "exercise": (frozenset({"-e", "--exercise"}), frozenset(), 3),
}
EXERCISE_ACTIONS = ("answer", "check", "hint", "status")
# Fields of objects with which the lab would run a program of the submission's choosing, as root:
# a container's command and args, exec probes and lifecycle hooks.
PROGRAM_FIELDS = ("command", "args", "exec", "lifecycle")


@dataclass(frozen=True)
class Admitted:
    args: list[str]            # the `lab` arguments to run as root (--lab and, for exercise, -e forced)
    command: list[str]         # exec: what runs inside (confined)
    kind: str


def admit(argv: Sequence[str], lab: str, exercise: str, stdin: str = "") -> Admitted:
    """The `lab` command a submission asked for, as the grader runs it, or Refused: only reading the
    lab, running commands inside it (confined), applying and deleting objects given on stdin
    (the client sends the files' contents; objects that would run a program are refused), and
    answering, checking and hints of its exercise."""
    argv = list(argv)
    command: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1:]
    words: list[str] = []
    i = 0
    while i < len(argv):  # --lab anywhere: it must be the lab being graded
        w = argv[i]
        if w in ("--lab", "-l") or w.startswith("--lab="):
            value = w.split("=", 1)[1] if "=" in w else (argv[i + 1] if i + 1 < len(argv) else "")
            if value != lab:
                raise Refused(f"a submission works on lab {lab} only, not {value!r}")
            i += 1 if "=" in w else 2
            continue
        words.append(w)
        i += 1
    if not words:
        raise Refused("say which lab command to run (lab get pods, lab exec POD -- CMD, ...)")
    cmd, rest = words[0], words[1:]
    if cmd not in COMMANDS:
        raise Refused(f"`lab {cmd}` is not open to a submission; it may run: {', '.join(COMMANDS)}")
    valued, flags, most = COMMANDS[cmd]
    positional: list[str] = []
    files: list[str] = []
    i = 0
    while i < len(rest):
        w = rest[i]
        name, eq, inline = w.partition("=")
        if w.startswith("-") and w != "-":
            if name in valued:
                value = inline if eq else (rest[i + 1] if i + 1 < len(rest) else None)
                if value is None:
                    raise Refused(f"lab {cmd}: {name} needs a value")
                if name in ("-f", "--filename"):
                    files.append(value)
                elif name in ("-e", "--exercise") and value != exercise:
                    raise Refused(f"a submission works on exercise {exercise} only, not {value!r}")
                i += 1 if eq else 2
                continue
            if w in flags:
                i += 1
                continue
            raise Refused(f"lab {cmd}: option {name} is not open to a submission")
        positional.append(w)
        i += 1
    if cmd == "apply" and positional:
        raise Refused("lab apply FILE (a topology, read by the grader) is not open to a submission: "
                      "apply objects with -f, their contents come on stdin (-f -)")
    if len(positional) > most:
        raise Refused(f"lab {cmd}: too many arguments ({' '.join(positional)})")
    if cmd in ("apply", "delete") and files != ["-"]:
        raise Refused(f"lab {cmd}: objects come on stdin (-f -): the client sends the files' contents")
    if cmd == "apply":
        found = programs(stdin)
        if found:
            raise Refused(f"a submission's objects may not make the lab run programs of their own ({', '.join(found)}): "
                          "pods run as root; use the built-in images (netexec, pause) and `lab exec` instead")
    if cmd == "exec" and (not command or not positional):
        raise Refused("lab exec POD|node/NAME|host/NAME -- COMMAND")
    if cmd == "exercise" and (not positional or positional[0] not in EXERCISE_ACTIONS):
        raise Refused(f"lab exercise: a submission may use {', '.join(EXERCISE_ACTIONS)} only")
    args = ["--lab", lab, *words] + (["-e", exercise] if cmd == "exercise" else [])
    return Admitted(args, command, cmd)


def programs(text: str) -> list[str]:
    """Where objects name a program to run (PROGRAM_FIELDS), as document:path. Text that does not
    parse is left to `lab apply`, which reports it."""
    try:
        docs = parse_documents(text, "<stdin>")
    except TopologyError:
        return []
    found: list[str] = []

    def walk(value, at: str, n: int) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                here = f"{at}.{key}" if at else str(key)
                if key in PROGRAM_FIELDS:
                    found.append(f"document {n}: {here}")
                else:
                    walk(inner, here, n)
        elif isinstance(value, list):
            for i, inner in enumerate(value):
                walk(inner, f"{at}[{i}]", n)

    for n, doc in enumerate(docs, 1):
        walk(doc.data, "", n)
    return found


def hidden_paths(candidates: Sequence[Optional[str]]) -> list[str]:
    """Each path once, parents before the paths inside them (those are then covered already)."""
    out: list[str] = []
    for p in sorted({c.rstrip("/") for c in candidates if c}, key=len):
        if not any(p == q or p.startswith(q + "/") for q in out):
            out.append(p)
    return out
