"""Reading sealed flows: the column blocks (layout.py) a window and a filter need, decoded column by
column, one block at a time, so memory stays bounded by a block whatever the window.

A block is skipped on its time range (``blocks`` table), then on its statistics when the filter names
an address, port, protocol or exporter (``block_stats``, blockstats.block_may_match: a Bloom filter
for hosts). Only the columns a query needs are read and decoded (blocks.blobs_needed); a host filter
is tested on the encoded address columns (blockmatch.py), which are decoded only when asked for.
Readers count what they read and skip (``BlockCounters``) so tests and status can show the pruning.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import msgpack
import numpy as np

from flowmodel.schema import FLOW_COLUMNS

from . import groupby as G
from . import planner as P
from .blockmatch import host_rows
from .blocks import blobs_needed, block_may_match, decode_block, decode_rows

STATS_FILTERS = ("src", "dst", "addr", "exporter", "port", "src_port", "dst_port", "protocol")
FILTER_COLUMNS = {"src": ("src_addr",), "dst": ("dst_addr",), "addr": ("src_addr", "dst_addr"),
                  "exporter": ("exporter",), "port": ("src_port", "dst_port"), "src_port": ("src_port",),
                  "dst_port": ("dst_port",), "protocol": ("protocol",), "tcp_flags": ("tcp_flags",),
                  "since": ("time_end",), "until": ("time_end",), "input_if": ("input_if",),
                  "output_if": ("output_if",), "src_as": ("src_as",), "dst_as": ("dst_as",),
                  "as": ("src_as", "dst_as"), "dscp": ("tos",), "src_country": ("src_country",),
                  "dst_country": ("dst_country",), "country": ("src_country", "dst_country")}
ALL_COLUMNS = tuple(FLOW_COLUMNS) + ("seq",)
REGROUP_ROWS = 1 << 18  # groups gathered from blocks are merged again beyond this many rows (or twice
                        # what the last merge kept, when more)


@dataclass
class BlockCounters:
    listed: int = 0   # blocks whose time range met a window
    pruned: int = 0   # of those, skipped on their statistics
    read: int = 0     # decoded


@dataclass(frozen=True)
class Block:
    id: int
    part: str
    rows: int
    time_lo: int
    time_hi: int


def filter_columns(f: dict) -> set[str]:
    """The columns planner.ring_mask reads for the filter ``f``."""
    out = {"time_end"}
    for k in f:
        out.update(FILTER_COLUMNS.get(k, ()))
    return out


def blocks_for(db, f: dict, counters: BlockCounters, newest_first: bool = True, lo: int | None = None,
               hi: int | None = None) -> Iterator[Block]:
    """Blocks that can hold rows of ``f`` with time_end in [lo, hi] too, newest time_hi first (or oldest
    time_lo first). Lazy: a page that fills from the newest blocks never tests the older ones' stats."""
    since = max(v for v in (f.get("since"), lo, -(1 << 62)) if v is not None)
    until = min(v for v in (f.get("until"), None if hi is None else hi + 1, 1 << 62) if v is not None)
    order = "b.time_hi DESC" if newest_first else "b.time_lo ASC"
    use_stats = any(k in f for k in STATS_FILTERS)
    stats = "s.stats" if use_stats else "NULL"
    join = "LEFT JOIN block_stats s ON s.block = b.id" if use_stats else ""
    rows = db.execute(f"SELECT b.id, b.part, b.rows, b.time_lo, b.time_hi, {stats} FROM blocks b {join} "
                      f"WHERE b.time_hi >= ? AND b.time_lo < ? ORDER BY {order}, b.id", (since, until))
    for *head, raw in rows:
        counters.listed += 1
        if use_stats and raw is not None and not block_may_match(msgpack.unpackb(raw, raw=False), f):
            counters.pruned += 1
            continue
        yield Block(*head)


def read_block(db, block: Block, names, counters: BlockCounters, have: dict | None = None) -> dict[str, np.ndarray]:
    """The named columns of a block; ``have``: columns already decoded from it (not read again)."""
    have = have or {}
    names = set(names) - set(have)
    want = sorted(blobs_needed(names))
    if not have:
        counters.read += 1
    if not want:
        return {**have}
    marks = ",".join("?" * len(want))
    blobs = dict(db.execute(f"SELECT name, data FROM block_columns WHERE block = ? AND name IN ({marks})",
                            [block.id, *want]).fetchall())
    return {**decode_block(blobs, names, block.rows), **have}


def probe(db, block: Block, f: dict, names, counters: BlockCounters) -> tuple[np.ndarray, dict, dict]:
    """(the rows of ``block`` that match ``f``, as a mask; the columns ``names`` decoded whole; the
    blobs read). An address filter of one host is tested on the encoded address columns
    (blockmatch.host_rows): they are read but decoded only when ``names`` asks for them."""
    hosts = {key: bytes(f[key][0]) for key in P.ADDR_FILTERS if key in f and bytes(f[key][0]) == bytes(f[key][1])}
    rest = {k: v for k, v in f.items() if k not in hosts}
    decode = filter_columns(rest) | set(names)
    encoded = {c for key in hosts for c in P.ADDR_FILTERS[key]}
    blobs = _fetch(db, block, blobs_needed(decode | encoded))
    counters.read += 1
    cols = decode_block(blobs, decode, block.rows)
    m = P.ring_mask(cols, rest)
    for key, host in hosts.items():
        hit = None
        for c in P.ADDR_FILTERS[key]:
            got = host_rows(blobs, c, block.rows, host)
            if got is None:  # an encoding blockmatch does not read: decode and compare
                got = P.addr_in_range(cols[c] if c in cols else decode_block(blobs, (c,), block.rows)[c], host, host)
            hit = got if hit is None else hit | got
        m &= hit
    return m, cols, blobs


def _fetch(db, block: Block, names) -> dict[str, bytes]:
    want = sorted(names)
    if not want:
        return {}
    marks = ",".join("?" * len(want))
    return dict(db.execute(f"SELECT name, data FROM block_columns WHERE block = ? AND name IN ({marks})",
                           [block.id, *want]).fetchall())


def read_rows(db, block: Block, names, idx: np.ndarray, have: dict[str, np.ndarray],
              blobs: dict[str, bytes] | None = None) -> dict[str, np.ndarray]:
    """The named columns of a block at rows ``idx``; ``have``: whole columns already decoded from it,
    ``blobs``: blobs already read from it. The other blobs are decompressed but only those rows
    unpacked (blocks.decode_rows): a page of 50 flows from a 32,768-row block no longer unpacks every
    row of 25 columns."""
    known = {k: v[idx] for k, v in have.items()}
    rest = set(names) - set(known)
    blobs = dict(blobs or {})
    blobs.update(_fetch(db, block, blobs_needed(rest) - set(known) - set(blobs)))
    out = decode_rows(blobs, rest, block.rows, idx, known)
    return {k: out[k] if k in out else known[k] for k in names}


def scan(db, f: dict, names, counters: BlockCounters, check: Callable[[], None]) -> Iterator[dict[str, np.ndarray]]:
    """The rows of ``f`` in sealed blocks, block by block, as the named columns (only matching rows)."""
    for block in blocks_for(db, f, counters):
        check()
        m, cols, _blobs = probe(db, block, f, names, counters)
        if m.all():
            yield {k: cols[k] for k in names}
        elif m.any():
            yield {k: cols[k][m] for k in names}


def page(db, f: dict, cursor, older: bool, want: int, counters: BlockCounters,
         check: Callable[[], None]) -> dict[str, np.ndarray] | None:
    """Up to ``want`` sealed rows nearest the cursor, in (time_end, seq) order (newest first when
    ``older``), every column; None when no block holds any."""
    lo = hi = None
    if cursor is not None:
        hi, lo = (cursor[0], None) if older else (None, cursor[0])
    best: dict[str, np.ndarray] | None = None
    for block in blocks_for(db, f, counters, newest_first=older, lo=lo, hi=hi):
        if best is not None and len(best["seq"]) >= want:
            bound = int(best["time_end"][want - 1])
            if (block.time_hi < bound) if older else (block.time_lo > bound):
                break
        check()
        # seq is needed whole only to compare with a cursor; else read_rows unpacks it at the hits
        m, have, blobs = probe(db, block, f, {"seq"} if cursor is not None else (), counters)
        if cursor is not None:
            t, s = cursor
            te, sq = have["time_end"], have["seq"]
            m &= ((te < t) | ((te == t) & (sq < s))) if older else ((te > t) | ((te == t) & (sq > s)))
        idx = np.flatnonzero(m)
        if not len(idx):
            continue
        got = read_rows(db, block, ALL_COLUMNS, idx, have, blobs)
        best = got if best is None else {k: np.concatenate([best[k], got[k]]) for k in best}
        order = np.lexsort((best["seq"], best["time_end"]))
        if older:
            order = order[::-1]
        best = {k: v[order[:want]] for k, v in best.items()}
    return best


class GroupSums:
    """Sums of bytes, packets and flows per key, gathered block by block in numpy: each block's groups
    are appended and merged again once REGROUP_ROWS rows, or twice what the last merge kept, have
    gathered, so memory follows the number of distinct keys, not rows: a full ring's 65,536
    destinations held 600,000 gathered rows (24 MB) at 1M rows a merge, at most 300,000 now; a key per row
    costs each merge's rows once more at most (the threshold doubles with them)."""

    def __init__(self, key_names: tuple[str, ...]):
        self.key_names = key_names
        self.parts: list[tuple[dict, np.ndarray, np.ndarray, np.ndarray]] = []
        self.rows = 0
        self.merged = 0  # rows the last merge kept

    def add(self, keys: dict[str, np.ndarray], b: np.ndarray, p: np.ndarray, n: np.ndarray | None = None) -> None:
        if not len(b):
            return
        rep, (bs, ps, ns), _count = G.group_rows(G.key_words(*(keys[k] for k in self.key_names)), b, p,
                                                 np.ones(len(b), np.uint64) if n is None else n)
        self.parts.append(({k: keys[k][rep] for k in self.key_names}, bs, ps, ns))
        self.rows += len(rep)
        if self.rows > max(REGROUP_ROWS, 2 * self.merged):
            self._merge()

    def add_grouped(self, keys: dict[str, np.ndarray], b: np.ndarray, p: np.ndarray, n: np.ndarray) -> None:
        """Add sums already grouped (each key once, as ``result`` gives them): kept as they are until
        the next merge, not grouped again."""
        if not len(b):
            return
        self.parts.append((keys, b, p, n))
        self.rows += len(b)
        if self.rows > max(REGROUP_ROWS, 2 * self.merged):
            self._merge()

    def _merge(self) -> None:
        if len(self.parts) <= 1:
            return
        keys = {k: np.concatenate([part[0][k] for part in self.parts]) for k in self.key_names}
        b, p, n = (np.concatenate([part[i] for part in self.parts]) for i in (1, 2, 3))
        self.parts = []
        self.rows = 0
        self.add(keys, b, p, n)
        self.merged = self.rows

    def result(self) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
        self._merge()
        if not self.parts:
            return {}, np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0, np.uint64)
        return self.parts[0]
