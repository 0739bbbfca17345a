"""The window's flows in arrival order, in one set of preallocated columns that are reused.

A list of per-batch chunks, merged into one array per column when a window runs, costs up to three
copies of the window at that moment (the chunks, the merged columns, the kept part); and a chunk
trimmed from the front keeps its whole base array alive. Here the rows sit in ``[head, tail)`` of
columns sized for the window's bound: dropping the oldest rows moves ``head``, appending writes at
``tail`` (the rows are moved to the front first when there is no room behind), and dropping the
rows no run needs any more compacts them in place, a block at a time, so no step holds more than a
block of extra rows.

Exporters are kept as ids (uint32) into a table of their addresses instead of 16 bytes a flow; the
table is rebuilt from the ids still present when it has grown well past them.
"""
from __future__ import annotations

import numpy as np

from flowmodel.schema import ADDR, FLOW_COLUMNS

from .common import WINDOW_COLUMNS

BLOCK = 1 << 16          # rows moved or compacted per step (the largest temporary: a block of one column)
MIN_CAPACITY = 1 << 14   # rows allocated at first
SHRINK_BELOW = 4         # capacity released when the rows fill less than a quarter of it
SLACK = 8                # room beyond max_rows (1/SLACK of it): at the bound, rows move to the front once per
                         # that many appended rows, not at every batch


def column_dtype(name: str) -> np.dtype:
    return np.dtype(np.uint32) if name == "exporter" else np.dtype(FLOW_COLUMNS[name][0])


class FlowBuffer:
    """Rows of WINDOW_COLUMNS (exporter as an id into ``exporters``), oldest-arrived first."""

    def __init__(self, max_rows: int):
        self.max_rows = int(max_rows)
        self.cols: dict[str, np.ndarray] = {}
        self.capacity = 0
        self.head = self.tail = 0
        self.exporters = np.zeros(0, ADDR)  # id -> address
        self._exporter_ids: dict[bytes, int] = {}

    def __len__(self) -> int:
        return self.tail - self.head

    def column(self, name: str) -> np.ndarray:
        """The live rows of a column (a view: valid until the buffer changes)."""
        return self.cols[name][self.head:self.tail] if self.capacity else np.zeros(0, column_dtype(name))

    # ---------------------------------------------------------------- changes

    def append(self, cols: dict[str, np.ndarray], exporter_ids: bool = False) -> None:
        """Rows after those held: a batch's (exporter as 16-byte addresses) or, with exporter_ids, rows
        taken from this buffer."""
        n = len(cols["time_end"])
        if not n:
            return
        if self.tail + n > self.capacity:
            self._pack()
            if self.tail + n > self.capacity:
                limit = self.max_rows + max(self.max_rows // SLACK, BLOCK)
                self._resize(max(self.tail + n, min(self.capacity * 2, limit), MIN_CAPACITY))
        at = slice(self.tail, self.tail + n)
        for name in WINDOW_COLUMNS:
            if name == "exporter" and not exporter_ids:
                self.cols[name][at] = self._ids(cols[name])
            else:
                self.cols[name][at] = cols[name]
        self.tail += n

    def drop_oldest(self, n: int) -> None:
        self.head += min(int(n), len(self))
        if self.head == self.tail:
            self.head = self.tail = 0

    def keep(self, mask: np.ndarray, shrink: bool = True) -> None:
        """Keep only the rows where mask (over the live rows) is true, in their order (then, with
        shrink, give back most of the room when they fill little of it)."""
        n = len(self)
        write = 0
        for lo in range(0, n, BLOCK):
            m = mask[lo:lo + BLOCK]
            k = int(np.count_nonzero(m))
            src = slice(self.head + lo, self.head + lo + len(m))
            if k:
                for col in self.cols.values():
                    col[write:write + k] = col[src][m]  # a copy of at most a block, then written at or before src
            write += k
        self.head, self.tail = 0, write
        if shrink and self.capacity > MIN_CAPACITY and write * SHRINK_BELOW < self.capacity:
            self._resize(max(MIN_CAPACITY, 2 * write))
        self._reintern()

    def partition(self, first: np.ndarray) -> int:
        """Reorder the live rows: those where ``first`` is true at the front, then the others, each
        part in its own order; returns the size of the first part. Costs a copy of the others only."""
        rest = ~first
        others = self.rows(rest)
        self.keep(first, shrink=False)
        n = len(self)
        self.append(others, exporter_ids=True)  # fits: the room the others had
        return n

    def rows(self, mask: np.ndarray | slice | None = None) -> dict[str, np.ndarray]:
        """The live rows: views (all of them, or a slice of them), or copies of those where a boolean
        mask is true."""
        if mask is None:
            return {name: self.column(name) for name in WINDOW_COLUMNS}
        if isinstance(mask, slice):
            return {name: self.column(name)[mask] for name in WINDOW_COLUMNS}
        return {name: self.column(name)[mask] for name in WINDOW_COLUMNS}

    # ---------------------------------------------------------------- storage

    def _pack(self) -> None:
        """Move the live rows to the front, a block at a time (each block lands before its source)."""
        if not self.head:
            return
        n = len(self)
        for lo in range(0, n, BLOCK):
            hi = min(lo + BLOCK, n)
            for col in self.cols.values():
                col[lo:hi] = col[self.head + lo:self.head + hi]  # numpy buffers an overlapping block
        self.head, self.tail = 0, n

    def _resize(self, capacity: int) -> None:
        self._pack()
        n = len(self)
        for name in WINDOW_COLUMNS:
            new = np.empty(capacity, column_dtype(name))
            if n:
                new[:n] = self.cols[name][:n]
            self.cols[name] = new  # one column at a time: at most one old column beside the new ones
        self.capacity = capacity

    def _ids(self, exporters: np.ndarray) -> np.ndarray:
        raw = exporters.view("S16")
        if len(raw) and (raw == raw[0]).all():  # one exporter per batch, the usual case
            return np.full(len(raw), self._id(bytes(exporters[0])), np.uint32)
        uniq, inv = np.unique(raw, return_inverse=True)
        table = np.array([self._id(u.ljust(16, b"\x00")) for u in uniq.tolist()], np.uint32)  # S16 drops trailing zeros
        return table[inv.reshape(-1)]

    def _id(self, e: bytes) -> int:
        i = self._exporter_ids.get(e)
        if i is None:
            i = self._exporter_ids[e] = len(self._exporter_ids)
            if i >= len(self.exporters):
                grown = np.zeros(max(16, 2 * len(self.exporters)), ADDR)
                grown[:len(self.exporters)] = self.exporters
                self.exporters = grown
            self.exporters[i] = np.frombuffer(e, ADDR)[0]
        return i

    def _reintern(self) -> None:
        """Renumber the exporters still present when the table is much larger than they are."""
        if len(self._exporter_ids) <= 1024:
            return
        ids = self.column("exporter")
        present = np.flatnonzero(np.bincount(ids, minlength=len(self._exporter_ids)))
        if 4 * len(present) > len(self._exporter_ids):
            return
        remap = np.zeros(len(self._exporter_ids), np.uint32)
        remap[present] = np.arange(len(present), dtype=np.uint32)
        ids[:] = remap[ids]
        kept = self.exporters[present]
        self.exporters = np.zeros(max(16, 2 * len(kept)), ADDR)
        self.exporters[:len(kept)] = kept
        self._exporter_ids = {bytes(a): i for i, a in enumerate(kept)}
