"""Geometry for the inline SVG line charts (pure: numbers in, coordinates and labels out), and the
frame and axes every SVG chart shares (stackchart.py draws its stacked areas in the same frame)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

from . import formatters as fmt


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 x 10^n that is >= value (for a readable axis top)."""
    if value <= 0:
        return 1.0
    exp = math.floor(math.log10(value))
    for m in (1, 2, 2.5, 5, 10):
        top = m * 10 ** exp
        if top >= value * (1 - 1e-9):
            return float(top)
    return float(10 ** (exp + 1))


TICK_STEPS_MS = tuple(s * 1000 for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
                                         10800, 21600, 43200, 86400, 172800, 345600, 604800))


def tick_step(span_ms: int, most: int, steps_ms: Sequence[int] = TICK_STEPS_MS) -> int:
    """The finest of ``steps_ms`` that puts at most ``most`` + 1 ticks on ``span_ms``."""
    return next((s for s in steps_ms if span_ms / s <= most), steps_ms[-1])


def time_ticks(since_ms: int, until_ms: int, most: int = 5, steps_ms: Sequence[int] = TICK_STEPS_MS) -> list[int]:
    """Round times in [since, until] for axis labels (whole minutes, 5 minutes, hours...): the finest
    step from ``steps_ms`` that gives at most ``most`` + 1 ticks."""
    step = tick_step(max(1, until_ms - since_ms), most, steps_ms)
    first = -(-since_ms // step) * step
    return list(range(first, until_ms + 1, step))


@dataclass
class Frame:
    """A chart's plot area inside its margins (pixels), and its axes' ticks."""
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    unit: str = ""
    y_ticks: list = field(default_factory=list)   # [(y, label)]
    x_ticks: list = field(default_factory=list)   # [(x, label)]
    peak: str = "-"                # highest value, human units
    empty: bool = True

    @property
    def plot_right(self) -> int:
        return self.width - self.right

    @property
    def plot_bottom(self) -> int:
        return self.height - self.bottom

    @property
    def plot_width(self) -> int:
        return self.width - self.left - self.right

    @property
    def plot_height(self) -> int:
        return self.height - self.top - self.bottom

    def draw_axes(self, axis_top: float, since_ms: int, until_ms: int, y_ticks: int, x_most: int,
                  steps_ms: Sequence[int], label: Callable[[int, int, int], str]) -> None:
        """``y_ticks`` + 1 rates from 0 to ``axis_top`` up the left; round times along the bottom,
        each worded by ``label(t_ms, step_ms, span_ms)``."""
        pw, ph = self.plot_width, self.plot_height
        self.y_ticks = [(round(self.top + ph - ph * i / y_ticks, 1), fmt.human_rate(axis_top * i / y_ticks, self.unit))
                        for i in range(y_ticks + 1)]
        span = max(1, until_ms - since_ms)
        step = tick_step(span, x_most, steps_ms)
        self.x_ticks = [(round(self.left + pw * (t - since_ms) / span, 1), label(t, step, span))
                        for t in time_ticks(since_ms, until_ms, x_most, steps_ms)]


@dataclass
class Chart(Frame):
    points: str = ""               # SVG polyline "x,y x,y ..."
    area: str = ""                 # closed polygon under the line
    current: str = "-"             # latest value, human units
    current_exact: str = ""


def tick_label(t_ms: int, _step_ms: int, span_ms: int) -> str:
    """'14:30' within a day and a half; beyond, the date too ('12-05 14:00', or '12-05' at midnight)."""
    if span_ms <= 36 * 3_600_000:
        return fmt.clock_time(t_ms)
    text = fmt.iso_time(t_ms)  # 2026-12-05T14:00:00.000Z
    return text[5:10] if text[11:16] == "00:00" else f"{text[5:10]} {text[11:16]}"


def line_chart(times_ms: list[int], values: list[float], unit: str, since_ms: int, until_ms: int,
               width: int = 560, height: int = 180, y_ticks: int = 4, x_ticks: int = 5) -> Chart:
    """A chart of values (per second, ``unit`` like 'bps') over [since_ms, until_ms]."""
    c = Chart(width, height, left=64, right=30, top=10, bottom=26, unit=unit)
    pw, ph = c.plot_width, c.plot_height
    span = max(1, until_ms - since_ms)
    top = nice_ceiling(max(values) if values else 0.0)
    c.draw_axes(top, since_ms, until_ms, y_ticks, x_ticks, TICK_STEPS_MS, tick_label)
    pts = []
    for t, v in zip(times_ms, values):
        if t < since_ms or t > until_ms:
            continue
        x = c.left + pw * (t - since_ms) / span
        y = c.top + ph - ph * (v / top)
        pts.append(f"{x:.1f},{y:.1f}")
    if pts:
        c.empty = False
        c.points = " ".join(pts)
        first_x = pts[0].split(",")[0]
        last_x = pts[-1].split(",")[0]
        base = f"{c.top + ph:.1f}"
        c.area = f"{first_x},{base} " + c.points + f" {last_x},{base}"
        c.current = fmt.human_rate(values[-1], unit)
        c.current_exact = fmt.exact(round(values[-1]))
        c.peak = fmt.human_rate(max(values), unit)
    return c
