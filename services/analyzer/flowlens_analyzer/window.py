"""Sliding windows in flow time: the analyzer's flows as columnar numpy chunks.

Flows are placed by their own time_end, not by arrival, so a replayed capture folds like live
traffic. The flow clock is the newest time_end seen minus analysis.watermark; when no flows have
arrived for analysis.idle_after (wall clock), it moves on with the wall clock so that windows still
close and advisories still resolve. Runs end on multiples of analysis.interval (epoch-aligned); a
flow that arrives for a window that already ran is late and counted, never re-analysed. The number
of flows kept is bounded by analysis.max_window_flows; the oldest are dropped first (counted).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from flowmodel.schema import FlowBatch

from .common import WINDOW_COLUMNS, WindowView, window_columns

MAX_LATE_EXPORTERS = 1024
FUTURE_TOLERANCE_MS = 600_000  # flows ending this far after the wall clock are an exporter clock bug


class FlowWindow:
    def __init__(self, window_ms: int, interval_ms: int, watermark_ms: int, max_flows: int, idle_after_ms: int):
        self.window_ms = int(window_ms)
        self.interval_ms = int(interval_ms)
        self.watermark_ms = int(watermark_ms)
        self.max_flows = int(max_flows)
        self.idle_after_ms = int(idle_after_ms)
        self.chunks: list[dict[str, np.ndarray]] = []
        self.size = 0
        self.max_end: int | None = None  # newest time_end seen
        self.clock: int | None = None  # flow time up to which windows may close
        self.next_end: int | None = None  # end of the next run
        self.closed_until: int | None = None  # end of the last run: older flows are late
        self.last_arrival_wall: int | None = None
        self.counters = {"flows": 0, "late": 0, "future": 0, "overflow": 0, "runs": 0}
        self.late_by_exporter: dict[bytes, int] = {}  # cumulative; bounded to MAX_LATE_EXPORTERS keys

    @classmethod
    def from_config(cls, cfg) -> "FlowWindow":
        return cls(int(cfg["analysis.window"] * 1000), int(cfg["analysis.interval"] * 1000),
                   int(cfg["analysis.watermark"] * 1000), cfg["analysis.max_window_flows"],
                   int(cfg["analysis.idle_after"] * 1000))

    # ---------------------------------------------------------------- input

    def add(self, batch: FlowBatch, wall_ms: int | None = None) -> int:
        """Keep a batch's flows (copied); returns how many were accepted."""
        if not batch.count:
            return 0
        cols = window_columns(batch)
        end = cols["time_end"]
        keep = np.ones(len(end), dtype=bool)
        if wall_ms is not None:
            future = end > wall_ms + FUTURE_TOLERANCE_MS
            self.counters["future"] += int(future.sum())
            keep &= ~future
        if self.closed_until is not None:
            late = keep & (end < self.closed_until)
            n_late = int(late.sum())
            if n_late:
                self.counters["late"] += n_late
                self._count_late(cols["exporter"][late])
            keep &= ~late
        if not keep.all():
            cols = {k: v[keep] for k, v in cols.items()}
            end = cols["time_end"]
        n = len(end)
        if wall_ms is not None:
            self.last_arrival_wall = wall_ms
        if not n:
            return 0
        newest = int(end.max())
        if self.next_end is None:
            self.next_end = (int(end.min()) // self.interval_ms + 1) * self.interval_ms
        self.max_end = newest if self.max_end is None else max(self.max_end, newest)
        self._advance(self.max_end - self.watermark_ms)
        self.chunks.append(cols)
        self.size += n
        self.counters["flows"] += n
        if self.size > self.max_flows:
            self._shed(self.size - self.max_flows)
        return n

    def _count_late(self, exporters: np.ndarray) -> None:
        uniq, counts = np.unique(exporters.view("S16"), return_counts=True)
        for e, c in zip(uniq.tolist(), counts.tolist()):
            e = e.ljust(16, b"\x00")  # S16 drops trailing zero bytes
            if e in self.late_by_exporter or len(self.late_by_exporter) < MAX_LATE_EXPORTERS:
                self.late_by_exporter[e] = self.late_by_exporter.get(e, 0) + int(c)

    def _advance(self, t: int) -> None:
        self.clock = t if self.clock is None else max(self.clock, t)

    def _shed(self, excess: int) -> None:
        """Drop the oldest-arrived flows beyond the bound."""
        self.counters["overflow"] += excess
        while excess > 0 and self.chunks:
            first = self.chunks[0]
            n = len(first["time_end"])
            if n <= excess:
                self.chunks.pop(0)
                self.size -= n
                excess -= n
            else:
                self.chunks[0] = {k: v[excess:] for k, v in first.items()}
                self.size -= excess
                excess = 0

    def tick(self, wall_ms: int) -> None:
        """Advance flow time with the wall clock when no flows have arrived for idle_after."""
        if self.max_end is None or self.last_arrival_wall is None:
            return
        idle = wall_ms - self.last_arrival_wall
        if idle >= self.idle_after_ms:
            self._advance(self.max_end - self.watermark_ms + idle)

    def advance_to(self, t: int) -> None:
        """Move the flow clock to t (offline analysis of a stored range: everything has arrived)."""
        self._advance(int(t))

    # ---------------------------------------------------------------- runs

    def due(self) -> Iterator[int]:
        """Ends of the runs that may happen now, oldest first (the caller runs each, then the next)."""
        while self.next_end is not None and self.clock is not None and self.next_end <= self.clock:
            earliest = self._earliest_end()
            if earliest is None or earliest >= self.next_end:
                # Nothing in this window: jump over the empty stretch, keeping one empty run at the
                # last boundary before the data (or the clock), where absent conditions resolve.
                target = self.clock if earliest is None else min(self.clock, earliest)
                skip_to = (target // self.interval_ms) * self.interval_ms
                if skip_to > self.next_end:
                    self.next_end = skip_to
            end = self.next_end
            self.next_end = end + self.interval_ms
            self.closed_until = end
            self.counters["runs"] += 1
            yield end

    def _earliest_end(self) -> int | None:
        """The oldest time_end that the next run (or a later one) will still look at."""
        lo = self.next_end - self.window_ms
        found = None
        for c in self.chunks:
            end = c["time_end"]
            end = end[end >= lo]
            if len(end):
                m = int(end.min())
                found = m if found is None else min(found, m)
        return found

    def view(self, end_ms: int) -> WindowView:
        """The flows with time_end in [end - window, end), after dropping what no later run needs."""
        start = end_ms - self.window_ms
        self._compact(keep_from=end_ms + self.interval_ms - self.window_ms, also_from=start)
        if not self.chunks:
            return WindowView({name: np.zeros(0, dtype=_dtype(name)) for name in WINDOW_COLUMNS}, start, end_ms)
        cols = self.chunks[0]
        end = cols["time_end"]
        mask = (end >= start) & (end < end_ms)
        if mask.all():
            return WindowView(dict(cols), start, end_ms)
        return WindowView({k: v[mask] for k, v in cols.items()}, start, end_ms)

    def _compact(self, keep_from: int, also_from: int) -> None:
        """Merge the chunks into one and drop flows older than any run still to come needs."""
        lo = min(keep_from, also_from)
        if not self.chunks:
            return
        if len(self.chunks) == 1:
            merged = self.chunks[0]
        else:
            merged = {k: np.concatenate([c[k] for c in self.chunks]) for k in WINDOW_COLUMNS}
        keep = merged["time_end"] >= lo
        if not keep.all():
            merged = {k: v[keep] for k, v in merged.items()}
        self.size = len(merged["time_end"])
        self.chunks = [merged] if self.size else []


def _dtype(name: str) -> np.dtype:
    from flowmodel.schema import FLOW_COLUMNS

    return FLOW_COLUMNS[name][0]
