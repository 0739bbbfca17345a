"""Geometry of an inline SVG stacked area chart (pure: rates in, shapes and labels out).

Each layer is one series of per-second rates over the same steps; layers are stacked in the order
given (the biggest first, at the bottom; "Other" last, on top). Each step is drawn flat from its
start to its end, so a band's area is the traffic of its step and the stack's top is the total.
A band's shape runs from the axis up to its upper edge, and the template paints the bands top
layer first, so each lower band covers the part of the ones above that is not theirs: a band needs
only its upper edge (half the points), as a path of H/V moves (a run of equal steps is one move).
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Sequence

from . import formatters as fmt
from .chart import Frame, nice_ceiling

# Distinct colours, told apart by most colour-blind readers too (Tableau 10, then four more);
# beyond them the hue turns by the golden angle. Other is a neutral grey.
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#499894", "#86bcb6", "#d37295", "#a0cbe8", "#8cd17d")
OTHER_COLOUR = "#bac2cc"


def colour(index: int) -> str:
    """The colour of the ``index``-th series (0-based)."""
    if index < len(PALETTE):
        return PALETTE[index]
    hue = (index * 137.508) % 360
    return f"hsl({hue:.0f}, 55%, {48 + (index % 3) * 8}%)"


@dataclass
class Layer:
    label: str
    values: Sequence[float]        # per-second rates, one per step
    colour: str
    href: str | None = None        # where a click on the band goes
    title: str = ""                # the band's tooltip


@dataclass
class Band:
    label: str
    colour: str
    href: str | None
    title: str
    path: str                      # SVG path from the axis up to the band's upper edge and back
    tops: list[float]              # y of the band's upper edge per step (pixels)
    bottoms: list[float]           # y of its lower edge per step


@dataclass
class StackChart(Frame):
    bands: list[Band] = field(default_factory=list)
    axis_top: float = 1.0          # the rate at the top of the y axis (peak: the highest total rate)


# No finer than a minute (the steps are a minute at least), up to a fortnight (a 30 d range).
TICK_STEPS_MS = tuple(s * 1000 for s in (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
                                         2 * 86400, 7 * 86400, 14 * 86400))
X_TICKS_MOST = 6


def tick_label(ms: int, step_ms: int, span_ms: int) -> str:
    t = fmt.utc(ms)
    if t is None:
        return fmt.iso_time(ms)
    if step_ms >= 86_400_000:
        return t.strftime("%m-%d")
    if span_ms > 86_400_000:
        return t.strftime("%m-%d %H:%M")
    return fmt.clock_time(ms)


def stacked_chart(times_ms: Sequence[int], step_ms: int, layers: Sequence[Layer], unit: str, since_ms: int,
                  until_ms: int, width: int = 900, height: int = 300, y_ticks: int = 4) -> StackChart:
    """Stack ``layers`` (rates per step starting at ``times_ms``) over [since_ms, until_ms]."""
    c = StackChart(width, height, left=72, right=16, top=10, bottom=26, unit=unit)
    pw, ph = c.plot_width, c.plot_height
    span = max(1, until_ms - since_ms)
    n = len(times_ms)
    for layer in layers:
        if len(layer.values) != n:
            raise ValueError(f"series {layer.label!r} has {len(layer.values)} values for {n} steps")
    totals = [sum(float(layer.values[i]) for layer in layers) for i in range(n)]
    peak = max(totals) if totals else 0.0
    c.axis_top = nice_ceiling(peak)
    c.peak = fmt.human_rate(peak, unit)
    c.draw_axes(c.axis_top, since_ms, until_ms, y_ticks, X_TICKS_MOST, TICK_STEPS_MS, tick_label)

    def x_of(t: int) -> float:
        return c.left + pw * (min(max(t, since_ms), until_ms) - since_ms) / span

    def y_of(v: float) -> float:
        return c.top + ph - ph * v / c.axis_top

    base = [0.0] * n
    for layer in layers:
        upper = [base[i] + float(layer.values[i]) for i in range(n)]
        tops = [y_of(v) for v in upper]
        bottoms = [y_of(v) for v in base]
        c.bands.append(Band(layer.label, layer.colour, layer.href, layer.title or layer.label,
                            _edge_path(times_ms, step_ms, tops, x_of, c.top + ph), tops, bottoms))
        base = upper
    c.empty = not n or peak <= 0
    return c


def _edge_path(times_ms: Sequence[int], step_ms: int, ys: list[float], x_of, base_y: float) -> str:
    """'M x,base V y H x V y H x ... V base Z': up from the axis, along the stepped edge, back down."""
    if not times_ms:
        return ""
    parts = [f"M{x_of(int(times_ms[0])):.1f},{base_y:.1f}"]
    last_y = None
    for t, y in zip(times_ms, ys):
        yt = f"{y:.1f}"
        x1 = f"H{x_of(int(t) + step_ms):.1f}"
        if yt == last_y:
            parts[-1] = x1  # the same level goes on: one longer move
        else:
            parts += [f"V{yt}", x1]
            last_y = yt
    parts.append(f"V{base_y:.1f}Z")
    return "".join(parts)


def when_label(ms: int) -> str:
    """'2026-11-24 14:30' for a table or a caption."""
    t = fmt.utc(ms)
    return t.strftime("%Y-%m-%d %H:%M") if isinstance(t, _dt.datetime) else fmt.iso_time(ms)
