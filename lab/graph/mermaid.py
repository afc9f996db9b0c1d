"""A Graph as a mermaid flowchart (left to right, a subgraph per node), for docs and Markdown viewers.

Labels are always quoted, with mermaid's entity codes for the characters its parser or its HTML
labels would take as syntax; ids are the model's (safe identifiers)."""
from __future__ import annotations

import json

from lab.graph.model import Box, Graph

LINKS = {"endpoint": "-.->", "tunnel": "-.-", "bgp": "-.-", "host-net": "-.-", "control": "-.-", "cut": "-.-",
         "route": "-.->"}  # else ---
CLASSES = {
    "switch": "fill:#d9d9d9,stroke:#555,stroke-width:2px",
    "host": "fill:#fff,stroke:#555",
    "controller": "fill:#fff,stroke:#555,stroke-dasharray:4",
    "eth0": "fill:#eeeeee,stroke:#777",
    "device": "fill:#fff3d6,stroke:#b8860b",
    "vtep": "fill:#fde2e2,stroke:#c0392b",
    "pod": "fill:#e8f1fb,stroke:#4a78b0",
    "group": "fill:#e8f1fb,stroke:#4a78b0,stroke-width:2px",
    "host-pod": "fill:#e8f1fb,stroke:#4a78b0,stroke-dasharray:4",
    "service": "fill:#e6f4ea,stroke:#2e7d32",
    "ingress": "fill:#f3e8fb,stroke:#7b3fa0",
}
LINK_STYLES = {
    "tunnel": "stroke:#c0392b,stroke-width:2px", "bgp": "stroke:#8e44ad,stroke-width:2px",
    "endpoint": "stroke:#2e7d32", "wire": "stroke:#555,stroke-width:2px", "cut": "stroke:#bbb,stroke-width:2px",
    "route": "stroke:#7b3fa0,stroke-width:2px",
}


def escape(text: str) -> str:
    """Entity codes for #, quotes and HTML's specials (# first: the codes themselves start with it)."""
    for ch, code in (("#", "#35;"), ('"', "#quot;"), ("&", "#amp;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(ch, code)
    return text


def _label(lines) -> str:
    return '"' + "<br/>".join(escape(line) for line in lines) + '"'


def _box(b: Box, indent: str) -> str:
    return f"{indent}{b.id}[{_label(b.lines)}]"


def render(g: Graph) -> str:
    title = "; ".join((g.title, *g.notes))
    out = ["---", f"title: {json.dumps(title, ensure_ascii=False)}", "---", "flowchart LR"]
    out += [_box(b, "  ") for b in g.boxes]
    for c in g.clusters:
        out.append(f"  subgraph {c.id}[{_label(c.lines)}]")
        out += [_box(b, "    ") for b in c.boxes]
        out.append("  end")
    for link in g.links:
        arrow = LINKS.get(link.kind, "---")
        out.append(f"  {link.src} {arrow}|{_label([link.label])}| {link.dst}" if link.label
                   else f"  {link.src} {arrow} {link.dst}")
    kinds: dict[str, list[str]] = {}
    for b in [*g.boxes, *(b for c in g.clusters for b in c.boxes)]:
        kinds.setdefault(b.kind, []).append(b.id)
    for kind, members in kinds.items():
        name = kind.replace("-", "_")
        out += [f"  classDef {name} {CLASSES[kind]}", f"  class {','.join(members)} {name}"]
    for kind, style in LINK_STYLES.items():
        numbers = [str(i) for i, link in enumerate(g.links) if link.kind == kind]
        if numbers:
            out.append(f"  linkStyle {','.join(numbers)} {style}")
    return "\n".join(out) + "\n"
