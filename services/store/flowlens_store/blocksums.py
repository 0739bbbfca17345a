"""A bounded cache of the overview's per-block group sums over the ring's sealed blocks.

The dashboard asks the ring's overview every few seconds; each time, grouping every block's rows by
source, destination and protocol was about 40 % of the op's CPU. A sealed block never changes until
it is evicted, so the groups of a block read whole (no row cut by the window or a filter) stay right:
they are kept here and merged instead of the rows. uint64 sums merge exactly in any order, so an
answer from cached groups is the answer from rows. Beyond ``max_bytes`` a block is not kept: the
overview reads every block in turn, so dropping the least recently used would drop each block just
before it is read again; the ring drops an evicted block's entry, which makes room for new blocks.
Has its own lock: the ring's scan, which reads it, runs outside the ring's lock.
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np

from flowmodel.addr import ADDR, ipv4_column

from .blockread import GroupSums

# one block's groups: by -> (key columns, bytes, packets, flows), each a numpy array per group
BlockGroups = dict[str, tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]]
OVERVIEW_KEYS = {"src": ("src_addr",), "dst": ("dst_addr",), "protocol": ("protocol",)}  # the groups kept


def block_groups(cols: dict) -> BlockGroups:
    """One block's scaled sums per source, destination and protocol (``cols``: the key columns and
    bytes and packets already times the sampling rate), as the cache keeps them."""
    out = {}
    for by, keys in OVERVIEW_KEYS.items():
        g = GroupSums(keys)
        g.add(cols, cols["bytes"], cols["packets"])
        out[by] = g.result()
    return out


def kept_groups(ring, block, cols, idx, keyed: Callable[[], dict]) -> BlockGroups | None:
    """The groups of a sealed ring block read whole (``block`` and ``idx`` as Ring.scan_parts gives
    them): the kept ones, else grouped from ``keyed()`` (see block_groups) and kept if they fit. None
    for a part cut by the window or a filter, or with no cache: the caller groups its rows."""
    if block is None or ring.block_sums is None or (idx is not None and len(idx) != cols.rows):
        return None
    got = ring.block_sums.get(block)
    return got if got is not None else ring.keep_block_sums(block, block_groups(keyed()))


def add_kept(compact: GroupSums, full: GroupSums, part: tuple) -> None:
    """Add one key's kept groups: IPv4 keys to ``compact`` (merged as integers, widened once at the
    end by ``finish_kept``), others to ``full``."""
    if is_compact(part):
        compact.add_grouped(*part)
    else:
        full.add_grouped(*expand(part))


def finish_kept(compact: GroupSums, full: GroupSums) -> GroupSums:
    full.add_grouped(*expand(compact.result()))
    return full


def groups_nbytes(groups: BlockGroups) -> int:
    return sum(sum(k.nbytes for k in keys.values()) + b.nbytes + p.nbytes + n.nbytes
               for keys, b, p, n in groups.values())


def ipv4_integers(k: np.ndarray) -> np.ndarray | None:
    """An address key column that holds only IPv4-mapped addresses, as uint32 integers (whose order
    is the 16 bytes' order, as grouping needs; flowmodel.addr.ipv4_column gives it back); else None."""
    if k.dtype != ADDR:
        return None
    words = np.ascontiguousarray(k).view("<u4").reshape(len(k), 4)
    if words[:, 0].any() or words[:, 1].any() or (words[:, 2] != 0xFFFF0000).any():
        return None
    return words[:, 3].byteswap()


def _compact(groups: BlockGroups) -> BlockGroups:
    """IPv4-mapped address keys as uint32 integers and flow counts (at most a block's rows) as
    uint32: a block of one destination per flow keeps 24 bytes a group instead of 40."""
    out = {}
    for by, (keys, b, p, n) in groups.items():
        small = {}
        for name, k in keys.items():
            v4 = ipv4_integers(k)
            small[name] = k if v4 is None else v4
        out[by] = (small, b, p, n.astype(np.uint32) if n.max(initial=0) < 1 << 32 else n)
    return out


def is_compact(part: tuple) -> bool:
    """True when a block's groups for one key (as ``get`` gives them) hold no 16-byte address: they
    merge with other compact ones as they are, and ``expand`` once after (cheaper than 16-byte keys)."""
    return all(k.dtype != ADDR for k in part[0].values())


def expand(part: tuple) -> tuple:
    """One key's groups as they were put: the exact address bytes and uint64 counts."""
    keys, b, p, n = part
    return ({name: ipv4_column(k) if k.dtype == np.uint32 else k for name, k in keys.items()},
            b, p, n.astype(np.uint64))


class BlockSums:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._entries: dict[int, tuple[object, BlockGroups, int]] = {}

    def get(self, block) -> BlockGroups | None:
        """A block's groups as kept: compact keys and counts (``expand`` gives them back as put)."""
        with self._lock:
            entry = self._entries.get(id(block))
            if entry is None or entry[0] is not block:  # an id reused by a newer block is a miss
                self.misses += 1
                return None
            self.hits += 1
            return entry[1]

    def put(self, block, groups: BlockGroups, keep: bool = True) -> BlockGroups:
        """Keep a block's groups (made read-only: callers share them) if ``keep`` and they fit in the
        bound; returns them as ``get`` would, kept or not."""
        groups = _compact(groups)
        size = groups_nbytes(groups)
        for keys, b, p, n in groups.values():
            for a in (*keys.values(), b, p, n):
                a.flags.writeable = False
        with self._lock:
            old = self._entries.pop(id(block), None)
            if old is not None:
                self.nbytes -= old[2]
            if keep and self.nbytes + size <= self.max_bytes:
                self._entries[id(block)] = (block, groups, size)
                self.nbytes += size
        return groups

    def drop(self, block) -> None:
        """Forget an evicted block's groups (it can never be read again)."""
        with self._lock:
            entry = self._entries.get(id(block))
            if entry is not None and entry[0] is block:
                self.nbytes -= self._entries.pop(id(block))[2]
