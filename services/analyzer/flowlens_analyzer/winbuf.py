"""The window's flows in arrival order, in one set of preallocated columns that are reused.

A list of per-batch chunks, merged into one array per column when a window runs, costs up to three
copies of the window at that moment (the chunks, the merged columns, the kept part); and a chunk
trimmed from the front keeps its whole base array alive. Here the rows sit in ``[head, tail)`` of
columns sized for the window's bound: dropping the oldest rows moves ``head``, appending writes at
``tail`` (the rows are moved to the front first when there is no room behind), and dropping the
rows no run needs any more compacts them in place, a block at a time, so no step holds more than a
block of extra rows.

Addresses are kept compact: an IPv4(-mapped) source or destination as its 32 bits (uint32) with a
bool column saying which rows are not IPv4 ("wide"); while any kept row is, a 16-byte column beside
each (``src_addr_v6``, ``dst_addr_v6``) holds the addresses, row for row, so IPv6 costs what it did
before and IPv4 alone 24 bytes less a flow. Exporters (few) are ids (uint32) into a table of their
addresses, each once, rebuilt from the ids still used when it has grown well past them. 60 bytes a
flow instead of 94 (92 while IPv6 rows are kept).
"""
from __future__ import annotations

import numpy as np

from flowmodel.schema import ADDR, FLOW_COLUMNS

from .common import ADDRESS_PAIR, V4_MAPPED, WINDOW_COLUMNS, expand_addresses, v6_name, wide_name

BUFFER_COLUMNS = WINDOW_COLUMNS + tuple(wide_name(a) for a in ADDRESS_PAIR)

BLOCK = 1 << 16          # rows moved or compacted per step (the largest temporary: a block of one column)
MIN_CAPACITY = 1 << 14   # rows allocated at first
SHRINK_BELOW = 4         # capacity released when the rows fill less than a quarter of it
SLACK = 8                # room beyond max_rows (1/SLACK of it): at the bound, rows move to the front once per
                         # that many appended rows, not at every batch


def column_dtype(name: str) -> np.dtype:
    if name == "exporter" or name in ADDRESS_PAIR:
        return np.dtype(np.uint32)
    if name.endswith("_wide"):
        return np.dtype(bool)
    if name.endswith("_v6"):
        return ADDR
    return np.dtype(FLOW_COLUMNS[name][0])


class Interned:
    """16-byte addresses as small ids: id -> address in ``table``, each address once."""

    def __init__(self):
        self.table = np.zeros(0, ADDR)
        self.ids: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def id(self, e: bytes) -> int:
        i = self.ids.get(e)
        if i is None:
            i = self.ids[e] = len(self.ids)
            if i >= len(self.table):
                grown = np.zeros(max(16, 2 * len(self.table)), ADDR)
                grown[:len(self.table)] = self.table
                self.table = grown
            self.table[i] = np.frombuffer(e, ADDR)[0]
        return i

    def of(self, addresses: np.ndarray) -> np.ndarray:
        """Ids (uint32) of an ADDR column."""
        raw = addresses.view("S16")
        if len(raw) and (raw == raw[0]).all():  # one address (an exporter per batch, the usual case)
            return np.full(len(raw), self.id(bytes(addresses[0])), np.uint32)
        uniq, inv = np.unique(raw, return_inverse=True)
        table = np.array([self.id(u.ljust(16, b"\x00")) for u in uniq.tolist()], np.uint32)  # S16 drops trailing zeros
        return table[inv.reshape(-1)]

    def renumber(self, ids: np.ndarray) -> None:
        """Keep only the ids present in ``ids`` (renumbered in place) when the table has grown to four
        times as many or more (and past 1024)."""
        if len(self.ids) <= 1024:
            return
        present = np.flatnonzero(np.bincount(ids, minlength=len(self.ids)))
        if 4 * len(present) > len(self.ids):
            return
        remap = np.zeros(len(self.ids), np.uint32)
        remap[present] = np.arange(len(present), dtype=np.uint32)
        ids[:] = remap[ids]
        kept = self.table[present]
        self.table = np.zeros(max(16, 2 * len(kept)), ADDR)
        self.table[:len(kept)] = kept
        self.ids = {bytes(a): i for i, a in enumerate(kept)}


class FlowBuffer:
    """Rows of WINDOW_COLUMNS in the compact form (see the module docstring), oldest-arrived first."""

    def __init__(self, max_rows: int):
        self.max_rows = int(max_rows)
        self.cols: dict[str, np.ndarray] = {}
        self.capacity = 0
        self.head = self.tail = 0
        self.exporter_ids = Interned()

    @property
    def exporters(self) -> np.ndarray:
        return self.exporter_ids.table

    def addresses(self, name: str) -> np.ndarray:
        """The live rows of an address column as 16-byte addresses."""
        v6 = self.column(v6_name(name)) if v6_name(name) in self.cols else None
        return expand_addresses(self.column(name), self.column(wide_name(name)), v6)

    def __len__(self) -> int:
        return self.tail - self.head

    def column(self, name: str) -> np.ndarray:
        """The live rows of a column (a view: valid until the buffer changes)."""
        return self.cols[name][self.head:self.tail] if self.capacity else np.zeros(0, column_dtype(name))

    # ---------------------------------------------------------------- changes

    def append(self, cols: dict[str, np.ndarray], own: bool = False) -> None:
        """Rows after those held: a batch's (WINDOW_COLUMNS) or, with own, rows taken from this buffer."""
        n = len(cols["time_end"])
        if not n:
            return
        if self.tail + n > self.capacity:
            self._pack()
            if self.tail + n > self.capacity:
                limit = self.max_rows + max(self.max_rows // SLACK, min(BLOCK, self.max_rows))
                self._resize(max(self.tail + n, min(self.capacity * 2, limit), min(MIN_CAPACITY, limit)))
        at = slice(self.tail, self.tail + n)
        for name in (list(self.cols) if own else BUFFER_COLUMNS):
            if own:
                self.cols[name][at] = cols[name]
            elif name == "exporter":
                self.cols[name][at] = self.exporter_ids.of(cols[name])
            elif name in ADDRESS_PAIR:
                self._put_addresses(name, cols[name], at)
            elif not name.endswith("_wide"):
                self.cols[name][at] = cols[name]
        self.tail += n

    def _put_addresses(self, name: str, column: np.ndarray, at: slice) -> None:
        words = np.ascontiguousarray(column).view(">u8").reshape(len(column), 2)
        lo = words[:, 1].astype(np.uint64)
        wide = (words[:, 0] != 0) | ((lo & ~np.uint64(0xFFFFFFFF)) != V4_MAPPED)
        out = self.cols[name][at]
        out[:] = lo & np.uint64(0xFFFFFFFF)
        self.cols[wide_name(name)][at] = wide
        if wide.any():
            if v6_name(name) not in self.cols:
                for a in ADDRESS_PAIR:  # both, so rows always move with the same columns
                    self.cols[v6_name(a)] = np.zeros(self.capacity, ADDR)
            self.cols[v6_name(name)][at] = column

    def drop_oldest(self, n: int) -> None:
        self.head += min(int(n), len(self))
        if self.head == self.tail:
            self.head = self.tail = 0

    def keep(self, mask: np.ndarray, tidy: bool = True) -> None:
        """Keep only the rows where mask (over the live rows) is true, in their order; then, with tidy,
        give back most of the room when they fill little of it, and renumber the tables' ids."""
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
        if not tidy:
            return
        if self.capacity > MIN_CAPACITY and write * SHRINK_BELOW < self.capacity:
            self._resize(max(MIN_CAPACITY, 2 * write))
        self._reintern()

    def partition(self, first: np.ndarray) -> int:
        """Reorder the live rows: those where ``first`` is true at the front, then the others, each
        part in its own order; returns the size of the first part. Costs a copy of the others only."""
        rest = ~first
        others = self.rows(rest)
        self.keep(first, tidy=False)  # the others hold ids too: no renumbering
        n = len(self)
        self.append(others, own=True)  # fits: the room the others had
        return n

    def rows(self, mask: np.ndarray | slice | None = None) -> dict[str, np.ndarray]:
        """The live rows: views (all of them, or a slice of them), or copies of those where a boolean
        mask is true."""
        if mask is None:
            return {name: self.column(name) for name in self.cols}
        return {name: self.column(name)[mask] for name in self.cols}

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
        for name in list(self.cols) or BUFFER_COLUMNS:
            new = np.empty(capacity, column_dtype(name))
            if n:
                new[:n] = self.cols[name][:n]
            self.cols[name] = new  # one column at a time: at most one old column beside the new ones
        self.capacity = capacity

    def _reintern(self) -> None:
        """Renumber the exporters still present when their table outgrew them; drop the 16-byte address
        columns once no kept row needs them."""
        self.exporter_ids.renumber(self.column("exporter"))
        if v6_name(ADDRESS_PAIR[0]) in self.cols and not any(self.column(wide_name(a)).any() for a in ADDRESS_PAIR):
            for a in ADDRESS_PAIR:
                del self.cols[v6_name(a)]
