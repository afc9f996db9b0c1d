"""SVG and PNG: the DOT text through graphviz's dot (Debian package graphviz), run by lab.host."""
from __future__ import annotations

from typing import Optional

from lab import host
from lab.errors import LabError


def render(dot_text: str, fmt: str, out: Optional[str]) -> str:
    """Write the image to `out` and return "", or return it (SVG only: PNG is binary, it needs a file)."""
    if fmt == "png" and not out:
        raise LabError("-o png writes a file: give --out FILE.png")
    done = host.run(["dot", f"-T{fmt}", *(["-o", out] if out else [])], input=dot_text, check=False)
    if done.code == 127:
        raise LabError("graphviz's dot is not installed: apt-get install graphviz (Debian package graphviz), "
                       "or scripts/install.sh")
    if not done.ok:
        raise LabError(f"dot -T{fmt} failed (exit {done.code}): {done.stderr.strip()}")
    return done.stdout
