"""A bounded cache of whole columns decoded from the ring's compressed blocks.

A host's flow page tests the newest block or two of the ring on every call, decoding their
time_end and address columns (~1 ms of zstd and unpacking per page); paging, refreshing and
drill-downs ask the same blocks again. Blocks never change once encoded, so a decoded column stays
right for as long as its block lives; the least recently used go first beyond ``max_bytes``.
Used under the ring's lock (no lock of its own).
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np


class DecodedColumns:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._cols: OrderedDict[tuple[int, str], tuple[object, np.ndarray]] = OrderedDict()

    def get(self, block, name: str) -> np.ndarray | None:
        entry = self._cols.get((id(block), name))
        if entry is None or entry[0] is not block:  # an id reused by a newer block is a miss
            self.misses += 1
            return None
        self._cols.move_to_end((id(block), name))
        self.hits += 1
        return entry[1]

    def put(self, block, name: str, col: np.ndarray) -> None:
        """Keep ``col`` (made read-only: callers share it) unless it alone exceeds the bound."""
        if col.nbytes > self.max_bytes:
            return
        col.flags.writeable = False
        key = (id(block), name)
        old = self._cols.pop(key, None)
        if old is not None:
            self.nbytes -= old[1].nbytes
        self._cols[key] = (block, col)
        self.nbytes += col.nbytes
        while self.nbytes > self.max_bytes:
            _key, (_b, dropped) = self._cols.popitem(last=False)
            self.nbytes -= dropped.nbytes

    def drop(self, block) -> None:
        """Forget an evicted block's columns (they can never be asked for again)."""
        for key in [k for k, (b, _c) in self._cols.items() if b is block]:
            self.nbytes -= self._cols.pop(key)[1].nbytes
