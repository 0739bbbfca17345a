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


PARTIAL_STEP_S = 10.0  # a step's part inside the range shorter than this is rated over the whole step


def step_seconds(times_ms: Sequence[int], step_ms: int, since_ms: int, until_ms: int,
                 least_s: float = PARTIAL_STEP_S) -> list[float]:
    """Each step's seconds inside [since, until]: the first and last steps may reach past the range,
    and the last one may still be filling (its rate so far, as the dashboard draws it). A part
    shorter than ``least_s`` counts as the whole step, so a few seconds' flows make no spike."""
    out = []
    for t in times_ms:
        inside = (min(until_ms, t + step_ms) - max(since_ms, t)) / 1000
        out.append(inside if inside >= least_s else step_ms / 1000)
    return out


def rates(sums: Sequence[float], step_s: float | Sequence[float], factor: float = 1.0) -> list[float]:
    """Per-second rates of per-step sums over ``step_s`` (one length, or one per step); ``factor`` 8
    turns bytes into bits."""
    lengths = [float(step_s)] * len(sums) if isinstance(step_s, (int, float)) else [float(x) for x in step_s]
    if len(lengths) != len(sums):
        raise ValueError(f"{len(lengths)} step lengths for {len(sums)} steps")
    if any(x <= 0 for x in lengths):
        raise ValueError(f"a step length in {step_s!r} s is not positive")
    return [float(v) * factor / x for v, x in zip(sums, lengths)]


def series_stats(sums: Sequence[float], step_s: float | Sequence[float], factor: float = 1.0,
                 window_s: float | None = None) -> SeriesStats:
    """Total, average, 95th percentile and maximum of a series of per-step sums (``step_s``: one
    length or one per step). The average is over ``window_s`` (the time asked about), by default
    the steps' total length."""
    per_s = rates(sums, step_s, factor)
    total = float(sum(float(v) for v in sums))
    if window_s is None or window_s <= 0:
        window_s = float(step_s) * len(sums) if isinstance(step_s, (int, float)) else float(sum(step_s))
    return SeriesStats(total=total, average=total * factor / window_s if window_s else 0.0,
                       p95=percentile(per_s, 95), maximum=max(per_s) if per_s else 0.0)


def utilisation(rate_bps: float, speed_bps: float | int | None) -> float | None:
    """``rate_bps`` as a percentage of an interface's speed; None when the speed is unknown (0)."""
    if not speed_bps or speed_bps <= 0:
        return None
    return 100.0 * float(rate_bps) / float(speed_bps)
