"""Grouped sums of a partition's whole blocks, kept and grown block by block: the hot hour's answer.

The open hour has no rollups until it is sealed, so a dashboard over the last hour or day reads its
flows raw; at a busy site that is a million flows in 30 blocks, decoded and grouped again on every
refresh (~100 ms a top). Blocks never change once written, and the hour only gains blocks, so the
sums a query grouped from a partition's blocks read whole (time range inside a plain time window)
are kept as one merged run per (partition, question); the next query merges that run with the
blocks written since and keeps the larger run. uint64 sums merge exactly in any order, so the answer
equals a fresh read. A run is used only when every block it holds is still among the blocks read
whole, identified by id, rows and time range (a pruned partition's run no longer matches and is
read afresh). Bounded in bytes; the least recently used runs go first. Shared by the query workers.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable

import numpy as np

from flowmodel.addr import ipv4_column

from . import blockread as B
from .blocksums import ipv4_integers

Grouped = tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]  # keys, bytes, packets, flows


class BlockRuns:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = 0      # runs reused (grown or as they were)
        self.misses = 0    # runs grouped from every block
        self.blocks_merged = 0  # blocks whose groups came from a kept run instead of their rows
        self._lock = threading.Lock()
        self._runs: OrderedDict[tuple, tuple[frozenset, tuple, int]] = OrderedDict()

    def get(self, key: tuple, blocks: frozenset) -> tuple[frozenset, Grouped] | None:
        """The kept run of ``key`` if every block it holds is in ``blocks``: (its blocks, its sums)."""
        with self._lock:
            entry = self._runs.get(key)
            if entry is None or not entry[0] <= blocks:
                self.misses += 1
                return None
            self._runs.move_to_end(key)
            self.hits += 1
            self.blocks_merged += len(entry[0])
        return entry[0], _expand(entry[1])

    def put(self, key: tuple, blocks: frozenset, sums: Grouped) -> None:
        """Keep ``sums`` as the run of ``key`` unless a larger one is kept already (another worker's)."""
        kept = _compact(sums)
        size = sum(a.nbytes for a in (*kept[0].values(), *kept[1:4]))
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._runs.get(key)
            if old is not None:
                if len(old[0]) > len(blocks) and old[0] >= blocks:
                    return
                self.nbytes -= self._runs.pop(key)[2]
            self._runs[key] = (blocks, kept, size)
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                _k, (_b, _g, dropped) = self._runs.popitem(last=False)
                self.nbytes -= dropped

    def stats(self) -> dict:
        with self._lock:
            return {"runs": len(self._runs), "bytes": self.nbytes, "hits": self.hits, "misses": self.misses,
                    "blocks_merged": self.blocks_merged}


def _compact(sums: Grouped) -> tuple:
    """IPv4-mapped address keys kept as uint32 (24 bytes a destination instead of 40) and flow counts
    as uint32 where they fit; the names of the narrowed keys go along, so ``_expand`` restores exactly."""
    keys, b, p, n = sums
    small, narrowed = {}, []
    for name, k in keys.items():
        v4 = ipv4_integers(k) if len(k) else None
        if v4 is not None:
            narrowed.append(name)
        small[name] = k.copy() if v4 is None else v4  # read-only below: not the caller's array
    out = (small, b.copy(), p.copy(), n.astype(np.uint32) if n.max(initial=0) < 1 << 32 else n.copy(), tuple(narrowed))
    for a in (*small.values(), *out[1:4]):
        a.flags.writeable = False
    return out


def _expand(kept: tuple) -> Grouped:
    keys, b, p, n, narrowed = kept
    return {name: ipv4_column(k) if name in narrowed else k for name, k in keys.items()}, b, p, n.astype(np.uint64)


def _whole(block: B.Block, f: dict) -> bool:
    return f.get("since", -(1 << 62)) <= block.time_lo and block.time_hi < f.get("until", 1 << 62)


def grouped_blocks(db, f: dict, question: tuple, key_names: tuple[str, ...], names: tuple[str, ...],
                   keys_of: Callable[[dict], tuple[dict, np.ndarray, np.ndarray]], runs: BlockRuns | None,
                   counters: B.BlockCounters, check: Callable[[], None]) -> Grouped:
    """The sums of ``f``'s rows in sealed blocks grouped by ``keys_of(columns) -> (keys, bytes,
    packets)`` (reading the columns ``names``), as one GroupSums result. ``question`` names what is
    grouped (e.g. ("top", "dst", True)): under a plain time window, each partition's blocks read whole
    are summed through ``runs``; blocks cut by the window or a filter are grouped from their rows."""
    acc = B.GroupSums(key_names)
    times_only = runs is not None and set(f) <= {"since", "until"}
    whole: dict[str, list[B.Block]] = {}
    for block in B.blocks_for(db, f, counters):
        if times_only and _whole(block, f):
            whole.setdefault(block.part, []).append(block)
            continue
        check()
        m, cols, _blobs = B.probe(db, block, f, names, counters)
        if m.any():
            acc.add(*keys_of(cols if m.all() else {k: cols[k][m] for k in names}))
    for part, blocks in whole.items():
        ids = frozenset((b.id, b.rows, b.time_lo, b.time_hi) for b in blocks)
        key = (part, *question)
        kept = runs.get(key, ids)
        run = B.GroupSums(key_names)
        done: frozenset = frozenset()
        if kept is not None:
            done, sums = kept
            run.add_grouped(*sums)
        for block in blocks:
            if (block.id, block.rows, block.time_lo, block.time_hi) in done:
                continue
            check()
            run.add(*keys_of(B.read_block(db, block, names, counters)))
        sums = run.result()
        if ids != done:
            runs.put(key, ids, sums)
        acc.add_grouped(*sums)
    return acc.result()
