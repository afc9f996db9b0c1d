"""A Graph in graphviz's DOT, drawn top down as the textbooks draw a cluster: Services, then the
nodes side by side (pods, the pod network's device, eth0), the underlay switch below them and its
hosts at the bottom. Edge direction sets the rank; links between nodes (tunnels, BGP sessions)
do not."""
from __future__ import annotations

from lab.graph.model import Box, Graph, Link

FONT = "DejaVu Sans"
BOXES = {
    "switch": 'shape=box, style="filled,bold", fillcolor="#d9d9d9"',
    "host": 'shape=box3d, style=filled, fillcolor="#ffffff"',
    "controller": 'shape=component, style="filled,dashed", fillcolor="#ffffff"',
    "eth0": 'style="rounded,filled", fillcolor="#eeeeee"',
    "device": 'style="rounded,filled", fillcolor="#fff3d6", color="#b8860b"',
    "vtep": 'style="rounded,filled", fillcolor="#fde2e2", color="#c0392b"',
    "pod": 'style="rounded,filled", fillcolor="#e8f1fb", color="#4a78b0"',
    "group": 'style="rounded,filled,bold", fillcolor="#e8f1fb", color="#4a78b0", peripheries=2',
    "host-pod": 'style="rounded,filled,dashed", fillcolor="#e8f1fb", color="#4a78b0"',
    "service": 'shape=box, style="filled", fillcolor="#e6f4ea", color="#2e7d32"',
    "ingress": 'shape=box, style="filled", fillcolor="#f3e8fb", color="#7b3fa0"',
}
LINKS = {
    "wire": 'penwidth=2, color="#555555"',
    "cut": 'penwidth=2, style=dashed, color="#bbbbbb", fontcolor="#c0392b"',
    "kernel": 'color="#999999"',
    "veth": 'color="#4a78b0"',
    "host-net": 'style=dashed, color="#4a78b0"',
    "tunnel": 'style=dashed, penwidth=2, color="#c0392b", fontcolor="#c0392b", constraint=false',
    "bgp": 'style=dashed, penwidth=2, color="#8e44ad", fontcolor="#8e44ad", constraint=false',
    "endpoint": 'dir=forward, style=dotted, color="#2e7d32"',
    "control": 'style=dashed, color="#555555"',
    "route": 'dir=forward, penwidth=2, color="#7b3fa0", fontcolor="#7b3fa0"',
}
CLUSTERS = {"node": 'style="rounded,filled", fillcolor="#f7f7f7", color="#888888"',
            "services": 'style="rounded,filled", fillcolor="#f4faf5", color="#2e7d32"',
            "ingresses": 'style="rounded,filled", fillcolor="#faf5fd", color="#7b3fa0"'}


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _label(lines) -> str:
    return quote("\n".join(lines))


def _box(b: Box, indent: str) -> str:
    return f"{indent}{quote(b.id)} [label={_label(b.lines)}, {BOXES[b.kind]}];"


def _link_label(link: Link, said: set) -> str:
    """Links that do not set ranks (tunnels, sessions) get an xlabel, placed after layout clear of the
    boxes, and only the first of the same kind and text: the colour tells the others."""
    if not link.label:
        return ""
    if "constraint=false" not in LINKS[link.kind]:
        return f"label={quote(link.label)}, "
    if (link.kind, link.label) in said:
        return ""
    said.add((link.kind, link.label))
    return f"xlabel={quote(link.label)}, "


def render(g: Graph) -> str:
    out = [
        f"digraph {quote('lab')} {{",
        f'  graph [rankdir=TB, newrank=true, nodesep=0.25, ranksep=0.5, fontname={quote(FONT)}, fontsize=12, '
        f"labelloc=t, forcelabels=true, label={_label((g.title, *g.notes))}];",
        f"  node [shape=box, fontname={quote(FONT)}, fontsize=10, margin=\"0.12,0.04\"];",
        f"  edge [dir=none, fontname={quote(FONT)}, fontsize=9];",
    ]
    out += [_box(b, "  ") for b in g.boxes]
    for c in g.clusters:
        out += [f"  subgraph {quote('cluster_' + c.id)} {{",
                f"    label={_label(c.lines)}; {CLUSTERS[c.kind].replace(', ', '; ')};"]
        out += [_box(b, "    ") for b in c.boxes]
        out.append("  }")
    said = set()
    for link in g.links:
        out.append(f"  {quote(link.src)} -> {quote(link.dst)} [{_link_label(link, said)}{LINKS[link.kind]}];")
    out.append("}")
    return "\n".join(out) + "\n"
