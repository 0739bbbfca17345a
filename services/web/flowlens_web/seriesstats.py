"""Statistics of one series of per-step sums, as rates (pure: numbers in, numbers out).

A series from the store's explore op is a metric's sum per step (bytes, packets or flows). The
pages show it as a rate: sum / step seconds, times 8 for bits. The 95th percentile is the
nearest-rank one that burstable billing uses: sort the per-step rates, drop the top 5 %, take the
highest left.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class SeriesStats:
    total: float      # the metric's sum over the window (bytes, packets or flows)
    average: float    # rate per second over the whole window
    p95: float        # 95th percentile of the per-step rates
    maximum: float    # highest per-step rate


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank ``pct`` percentile (0 < pct <= 100) of ``values``; 0 for none."""
    if not 0 < pct <= 100:
        raise ValueError(f"percentile {pct!r} is outside (0, 100]")
    if not values:
        return 0.0
    ordered = sorted(float(v) for v in values)
    rank = math.ceil(pct / 100 * len(ordered))  # 1-based
    return ordered[max(1, rank) - 1]


def rates(sums: Sequence[float], step_s: float, factor: float = 1.0) -> list[float]:
    """Per-second rates of per-step sums (``factor`` 8 turns bytes into bits)."""
    if step_s <= 0:
        raise ValueError(f"step {step_s!r} s is not positive")
    return [float(v) * factor / step_s for v in sums]


def series_stats(sums: Sequence[float], step_s: float, factor: float = 1.0,
                 window_s: float | None = None) -> SeriesStats:
    """Total, average, 95th percentile and maximum of a series of per-step sums. The average is over
    ``window_s`` (the time asked about: the first and last steps may reach past it), by default
    the steps' whole span."""
    per_s = rates(sums, step_s, factor)
    total = float(sum(float(v) for v in sums))
    if window_s is None or window_s <= 0:
        window_s = step_s * len(sums)
    return SeriesStats(total=total, average=total * factor / window_s if window_s else 0.0,
                       p95=percentile(per_s, 95), maximum=max(per_s) if per_s else 0.0)


def utilisation(rate_bps: float, speed_bps: float | int | None) -> float | None:
    """``rate_bps`` as a percentage of an interface's speed; None when the speed is unknown (0)."""
    if not speed_bps or speed_bps <= 0:
        return None
    return 100.0 * float(rate_bps) / float(speed_bps)
