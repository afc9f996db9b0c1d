"""The only way the lab runs programs: argument lists, exit status checked, stderr in the error."""
from __future__ import annotations

import subprocess
from typing import Optional, Sequence

from lab.errors import LabError

NETNS_DIR = "/run/netns"


def netns_path(name: str) -> str:
    return f"{NETNS_DIR}/{name}"


def run(argv: Sequence[str], *, input: Optional[str] = None, timeout: float = 60, check: bool = True) -> str:
    try:
        proc = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise LabError(f"{argv[0]} is not installed; run `sudo make demo` or scripts/install.sh") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"{' '.join(argv)} did not finish within {timeout}s") from None
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def ip_batch(lines: Sequence[str], netns: Optional[str] = None, force: bool = False) -> None:
    """Many `ip` commands, one process (PITFALLS: create namespaces from the root, not with -n).
    force: go on past failing lines (teardown); the failure is still raised once all have run."""
    if not lines:
        return
    argv = ["ip"] + (["-n", netns] if netns else []) + (["-force"] if force else []) + ["-batch", "-"]
    run(argv, input="\n".join(lines) + "\n")


def sysctl(netns: str, settings: dict[str, str]) -> None:
    """Sysctls under net.* are per namespace, and /proc/sys/net answers for the namespace of the
    thread that opens it: a thread inside `netns` writes them, no process needed."""
    from lab.runtime.netns import in_netns

    def write() -> None:
        for key, value in settings.items():
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(value)

    try:
        in_netns(netns, write)
    except OSError as e:
        raise LabError(f"cannot set {', '.join(settings)} in {netns}: {e.strerror or e}") from None
