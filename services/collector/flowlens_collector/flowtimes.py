"""Flow times that cannot be real: a flow ending more than a day after the collector's clock.

A broken or spoofed exporter clock writes any 64-bit time (flowEndMilliseconds 9151314449241600000
is the year 289,995,580); stored, such a flow opens a partition nothing ever expires. The collector
drops it and counts it per exporter and reason ``time_in_future`` (in flows), with how far ahead the
furthest one was. Old times are kept: a replayed 2009 capture and records at time 0 are legitimate.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from flowmodel import addr
from flowmodel.schema import FlowBatch

# How far past the collector's clock a flow may end. Exporter clocks drift by seconds, not days; a
# day is also the store's out_of_range bound (WarmWriter.future_ms). A config key could replace it.
MAX_AHEAD_MS = 86_400_000
REASON = "time_in_future"


def drop_future(batch: FlowBatch, now_ms: int, stats_of: Callable[[str, int], object],
                max_ahead_ms: int = MAX_AHEAD_MS) -> FlowBatch:
    """``batch`` without the flows ending more than ``max_ahead_ms`` after ``now_ms``, counted on
    ``stats_of(exporter text, observation domain)`` (an ExporterStats with ``time_ahead_max_s``).
    One comparison over the column; Python runs only per distinct (exporter, domain) dropped."""
    if not batch.count:
        return batch
    time_end = batch.columns["time_end"]
    ahead = time_end > now_ms + max_ahead_ms
    if not ahead.any():
        return batch
    keys = np.empty(int(ahead.sum()), dtype=[("exporter", batch.columns["exporter"].dtype), ("domain", np.uint32)])
    keys["exporter"] = batch.columns["exporter"][ahead]
    keys["domain"] = batch.columns["observation_domain"][ahead]
    uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    furthest = np.full(len(uniq), np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(furthest, inverse.reshape(-1), time_end[ahead])
    for key, n, end in zip(uniq.tolist(), counts.tolist(), furthest.tolist()):
        stats = stats_of(addr.to_text(bytes(key[0])), int(key[1]))
        stats.time_ahead_max_s = max(stats.time_ahead_max_s, (end - now_ms) // 1000)
        stats.error(REASON, n)
    return batch.select(~ahead)
