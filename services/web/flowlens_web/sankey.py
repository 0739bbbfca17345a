"""Geometry of an inline SVG Sankey diagram of sources to destinations (pure: weighted pairs in,
node boxes and link shapes out).

Sources stand in a column on the left, destinations on the right, each as tall as its share of the
drawn total; a link is a band from its source to its destination as thick as its value, so the
bands leaving a source fill its box exactly, and so do the bands reaching a destination.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

NODE_WIDTH = 14
GAP = 6  # pixels between nodes in a column


@dataclass
class Node:
    label: str
    value: float
    x: float
    y: float
    height: float
    href: str | None = None


@dataclass
class Link:
    source: str
    target: str
    value: float
    path: str          # a closed SVG path: the band between the two nodes
    thickness: float   # pixels at both ends
    colour: str
    href: str | None = None
    title: str = ""


@dataclass
class Sankey:
    width: int
    height: int
    sources: list[Node] = field(default_factory=list)
    targets: list[Node] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    empty: bool = True


@dataclass
class Pair:
    source: str
    target: str
    value: float
    colour: str
    href: str | None = None
    title: str = ""


def _column(totals: dict[str, float], x: float, top: float, usable: float, scale: float) -> dict[str, Node]:
    nodes, y = {}, top
    for label, v in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])):
        h = v * scale
        nodes[label] = Node(label, v, x, y, h)
        y += h + GAP
    return nodes


def sankey(pairs: Sequence[Pair], width: int = 900, height: int = 360, label_room: int = 170) -> Sankey:
    """The diagram of ``pairs`` (zero and negative values left out)."""
    pairs = [p for p in pairs if p.value > 0]
    s = Sankey(width, height)
    if not pairs:
        return s
    out_totals: dict[str, float] = {}
    in_totals: dict[str, float] = {}
    for p in pairs:
        out_totals[p.source] = out_totals.get(p.source, 0.0) + p.value
        in_totals[p.target] = in_totals.get(p.target, 0.0) + p.value
    total = sum(p.value for p in pairs)
    top, bottom = 8, 8
    gaps = GAP * (max(len(out_totals), len(in_totals)) - 1)
    scale = max(0.0, height - top - bottom - gaps) / total
    left_x, right_x = label_room, width - label_room - NODE_WIDTH
    sources = _column(out_totals, left_x, top, height, scale)
    targets = _column(in_totals, right_x, top, height, scale)
    out_used = {k: 0.0 for k in sources}
    in_used = {k: 0.0 for k in targets}
    # links leave each source biggest first and reach each destination in the same order
    for p in sorted(pairs, key=lambda p: -p.value):
        a, b = sources[p.source], targets[p.target]
        t = p.value * scale
        y0 = a.y + out_used[p.source]
        y1 = b.y + in_used[p.target]
        out_used[p.source] += t
        in_used[p.target] += t
        x0, x1 = a.x + NODE_WIDTH, b.x
        mid = (x0 + x1) / 2
        path = (f"M{x0:.1f},{y0:.1f} C{mid:.1f},{y0:.1f} {mid:.1f},{y1:.1f} {x1:.1f},{y1:.1f} "
                f"L{x1:.1f},{y1 + t:.1f} C{mid:.1f},{y1 + t:.1f} {mid:.1f},{y0 + t:.1f} {x0:.1f},{y0 + t:.1f} Z")
        s.links.append(Link(p.source, p.target, p.value, path, t, p.colour, p.href, p.title))
    s.sources, s.targets = list(sources.values()), list(targets.values())
    s.empty = False
    return s
