"""Geometry for the inline SVG line charts (pure: numbers in, coordinates and labels out)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from . import formatters as fmt


@dataclass
class Chart:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    points: str = ""               # SVG polyline "x,y x,y ..."
    area: str = ""                 # closed polygon under the line
    y_ticks: list = field(default_factory=list)   # [(y, label)]
    x_ticks: list = field(default_factory=list)   # [(x, label)]
    current: str = "-"             # latest value, human units
    current_exact: str = ""
    peak: str = "-"
    unit: str = ""
    empty: bool = True

    @property
    def plot_right(self) -> int:
        return self.width - self.right

    @property
    def plot_bottom(self) -> int:
        return self.height - self.bottom


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


def time_ticks(since_ms: int, until_ms: int, most: int = 5) -> list[int]:
    """Round times in [since, until] for axis labels (whole minutes, 5 minutes, hours...): the finest
    step from TICK_STEPS_MS that gives at most ``most`` + 1 ticks."""
    span = max(1, until_ms - since_ms)
    step = next((s for s in TICK_STEPS_MS if span / s <= most), TICK_STEPS_MS[-1])
    first = -(-since_ms // step) * step
    return list(range(first, until_ms + 1, step))


def tick_label(t_ms: int, span_ms: int) -> str:
    """'14:30' within a day and a half; beyond, the date too ('12-05 14:00', or '12-05' at midnight)."""
    if span_ms <= 36 * 3_600_000:
        return fmt.clock_time(t_ms)
    text = fmt.iso_time(t_ms)  # 2026-12-05T14:00:00.000Z
    return text[5:10] if text[11:16] == "00:00" else f"{text[5:10]} {text[11:16]}"


def line_chart(times_ms: list[int], values: list[float], unit: str, since_ms: int, until_ms: int,
               width: int = 560, height: int = 180, y_ticks: int = 4, x_ticks: int = 5) -> Chart:
    """A chart of values (per second, ``unit`` like 'bps') over [since_ms, until_ms]."""
    c = Chart(width, height, left=64, right=30, top=10, bottom=26, unit=unit)
    pw = width - c.left - c.right
    ph = height - c.top - c.bottom
    span = max(1, until_ms - since_ms)
    top = nice_ceiling(max(values) if values else 0.0)
    for i in range(y_ticks + 1):
        v = top * i / y_ticks
        y = c.top + ph - ph * i / y_ticks
        c.y_ticks.append((round(y, 1), fmt.human_rate(v, unit)))
    for t in time_ticks(since_ms, until_ms, x_ticks):
        x = c.left + pw * (t - since_ms) / span
        c.x_ticks.append((round(x, 1), tick_label(t, span)))
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
