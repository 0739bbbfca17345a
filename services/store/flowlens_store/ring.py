"""The hot ring: the newest flows in fixed-capacity numpy columns, overwriting the oldest.

Rows sit in arrival order, each with the store's sequence number (``seq``), the same key the
SQLite tier uses, so a query answered here and one answered from SQLite agree row for row. The
ring remembers the newest ``time_end`` it ever overwrote: a window starting after that time is
complete in memory, which is the rule the query planner uses to choose the ring.
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np

from flowmodel.schema import FLOW_COLUMNS, FlowBatch

SEQ_DTYPE = np.dtype("<i8")


class Ring:
    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError("ring capacity must be positive")
        self.capacity = capacity
        self.columns: dict[str, np.ndarray] = {name: np.zeros(capacity, dt) for name, (dt, _d) in FLOW_COLUMNS.items()}
        self.columns["seq"] = np.zeros(capacity, SEQ_DTYPE)
        self.head = 0          # next slot to write
        self.size = 0          # rows held
        self.appended = 0      # rows ever appended
        self.evicted_max_time_end: int | None = None  # newest time_end ever overwritten (or skipped)
        self.lock = threading.Lock()

    def _spans(self, start: int, length: int) -> list[slice]:
        """Slot ranges of ``length`` rows starting at slot ``start``, split at the end of the buffer."""
        start %= self.capacity
        first = min(length, self.capacity - start)
        spans = [slice(start, start + first)]
        if length > first:
            spans.append(slice(0, length - first))
        return spans

    def append(self, batch: FlowBatch, seq_start: int) -> None:
        n = batch.count
        if n == 0:
            return
        cap = self.capacity
        with self.lock:
            evicted_max = None
            skip = 0
            if n > cap:  # only the newest `cap` rows can stay; the rest count as evicted at once
                skip = n - cap
                evicted_max = int(batch["time_end"][:skip].max())
            keep = n - skip
            overflow = self.size + keep - cap
            if overflow > 0:
                oldest = (self.head - self.size) % cap
                te = self.columns["time_end"]
                m = max(int(te[s].max()) for s in self._spans(oldest, overflow))
                evicted_max = m if evicted_max is None else max(evicted_max, m)
            pos = 0
            for s in self._spans(self.head, keep):
                length = s.stop - s.start
                src = slice(skip + pos, skip + pos + length)
                for name in FLOW_COLUMNS:
                    self.columns[name][s] = batch[name][src]
                self.columns["seq"][s] = np.arange(seq_start + skip + pos, seq_start + skip + pos + length, dtype=SEQ_DTYPE)
                pos += length
            self.head = (self.head + keep) % cap
            self.size = min(cap, self.size + keep)
            self.appended += n
            if evicted_max is not None:
                self.evicted_max_time_end = (evicted_max if self.evicted_max_time_end is None
                                             else max(self.evicted_max_time_end, evicted_max))

    def covers(self, since_ms: int | None) -> bool:
        """True when every flow ever appended with time_end >= since_ms is still here."""
        if since_ms is None:
            return False
        return self.evicted_max_time_end is None or since_ms > self.evicted_max_time_end

    def _valid(self) -> slice:
        return slice(0, self.size) if self.size < self.capacity else slice(0, self.capacity)

    def select(self, mask_of: Callable[[dict[str, np.ndarray]], np.ndarray],
               pick: Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray] | None = None,
               columns: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """Copies of the rows for which ``mask_of(columns)`` is true (plus ``seq``). ``pick(cols, idx)``
        may narrow and order the matching slot indexes before anything is copied; ``columns`` limits
        which columns are copied."""
        with self.lock:
            v = self._valid()
            cols = {name: arr[v] for name, arr in self.columns.items()}
            idx = np.flatnonzero(mask_of(cols))
            if pick is not None:
                idx = pick(cols, idx)
            names = columns or tuple(cols)
            return {name: cols[name][idx] for name in names}

    def time_bounds(self) -> tuple[int | None, int | None]:
        """Oldest and newest time_end held."""
        with self.lock:
            if self.size == 0:
                return None, None
            te = self.columns["time_end"][self._valid()]
            return int(te.min()), int(te.max())
