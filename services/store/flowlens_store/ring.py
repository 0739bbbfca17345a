"""The hot ring: the newest flows in memory, overwriting the oldest, in the warm tier's block encoding.

Rows sit in arrival order, each with the store's sequence number (``seq``), the same key the
SQLite tier uses, so a query answered here and one answered from SQLite agree row for row. The
ring remembers the newest ``time_end`` it ever overwrote: a window starting after that time is
complete in memory, which is the rule the query planner uses to choose the ring.

The newest rows fill an open segment of plain numpy columns; once it holds ``segment_rows`` it is
encoded as one block of the warm tier's column codec (blocks.encode_columns: narrow integers,
deltas, byte shuffle, lz4, one blob per column) and a fresh open segment starts. A full
ring of 600,000 flows then takes about 23 MiB instead of 82 (143 bytes a flow as plain columns),
for about 5 ms of encoding per 32,768 flows on the receive thread. Eviction drops the oldest rows
of the oldest block (a count of rows to skip) and the block once all of its rows are gone.
``select`` decodes block by block only the columns the query touches, and the rest only for the
rows it returns (the blocks and column views: ringblock.py).
"""
from __future__ import annotations

import threading
from typing import Callable, Iterator, Mapping

import numpy as np

from flowmodel.schema import FLOW_COLUMNS, FlowBatch

from .blocks import BLOCK_ROWS, decode_block
from .blocksums import BlockSums
from .ringblock import DTYPES, NAMES, SEQ_DTYPE, GatheredRows, RingBlock, SegmentColumns, concat_parts  # noqa: F401
from .ringcache import DecodedColumns

MIN_SEGMENTS = 8  # a small ring still keeps this many segments, so eviction never reaches the open one


class Ring:
    def __init__(self, capacity: int, segment_rows: int | None = None, decoded_cache_bytes: int = 0,
                 block_sums_bytes: int = 0):
        if capacity <= 0:
            raise ValueError("ring capacity must be positive")
        self.capacity = capacity
        self.segment_rows = segment_rows or max(1, min(BLOCK_ROWS, capacity // MIN_SEGMENTS))
        if not 0 < self.segment_rows <= min(BLOCK_ROWS, capacity):
            raise ValueError(f"segment_rows must be 1..{min(BLOCK_ROWS, capacity)}")
        self._blocks: list[RingBlock] = []   # oldest first
        self._skip = 0                    # rows of the oldest block already evicted
        self._oldest_te: np.ndarray | None = None  # the oldest block's time_end, decoded for eviction
        self._open = self._new_open()
        self._open_rows = 0
        self.size = 0          # rows held
        self.appended = 0      # rows ever appended
        self.evicted_max_time_end: int | None = None  # newest time_end ever overwritten (or skipped)
        self.lock = threading.Lock()
        # whole columns decoded from blocks, kept for the next query (ringcache.py); None: off
        self.decoded = DecodedColumns(decoded_cache_bytes) if decoded_cache_bytes > 0 else None
        # the overview's group sums per whole block (blocksums.py); None: off
        self.block_sums = BlockSums(block_sums_bytes) if block_sums_bytes > 0 else None

    def _new_open(self) -> dict[str, np.ndarray]:
        # a new buffer each time, never refilled: a block is encoded from it and it is dropped
        return {name: np.empty(self.segment_rows, dt) for name, dt in DTYPES.items()}

    @property
    def nbytes(self) -> int:
        """Bytes the rows take: the encoded blocks and the open segment's buffer."""
        return sum(b.nbytes for b in self._blocks) + sum(a.nbytes for a in self._open.values())

    def append(self, batch: FlowBatch, seq_start: int) -> None:
        n = batch.count
        if n == 0:
            return
        with self.lock:
            skip = max(0, n - self.capacity)  # only the newest `capacity` rows can stay
            evicted_max = int(batch["time_end"][:skip].max()) if skip else None
            pos = skip
            while pos < n:
                take = min(n - pos, self.segment_rows - self._open_rows)
                dst = slice(self._open_rows, self._open_rows + take)
                for name in FLOW_COLUMNS:
                    self._open[name][dst] = batch[name][pos:pos + take]
                self._open["seq"][dst] = np.arange(seq_start + pos, seq_start + pos + take, dtype=SEQ_DTYPE)
                self._open_rows += take
                pos += take
                if self._open_rows == self.segment_rows:
                    self._blocks.append(RingBlock(self._open))
                    self._open = self._new_open()
                    self._open_rows = 0
            self.size += n - skip
            self.appended += n
            m = self._evict()
            if m is not None:
                evicted_max = m if evicted_max is None else max(evicted_max, m)
            if evicted_max is not None:
                self.evicted_max_time_end = (evicted_max if self.evicted_max_time_end is None
                                             else max(self.evicted_max_time_end, evicted_max))

    def _evict(self) -> int | None:
        """Drop the oldest rows beyond capacity (never from the open segment: it holds at most
        segment_rows <= capacity rows); the newest time_end dropped."""
        newest = None
        while self.size > self.capacity:
            block = self._blocks[0]
            if self._oldest_te is None:
                self._oldest_te = decode_block(block.blobs, ("time_end",), block.rows)["time_end"]
            drop = min(self.size - self.capacity, block.rows - self._skip)
            m = int(self._oldest_te[self._skip:self._skip + drop].max())
            newest = m if newest is None else max(newest, m)
            self._skip += drop
            self.size -= drop
            if self._skip == block.rows:
                gone = self._blocks.pop(0)
                if self.decoded is not None:
                    self.decoded.drop(gone)
                if self.block_sums is not None:
                    self.block_sums.drop(gone)
                self._skip = 0
                self._oldest_te = None
        return newest

    def covers(self, since_ms: int | None) -> bool:
        """True when every flow ever appended with time_end >= since_ms is still here."""
        if since_ms is None:
            return False
        return self.evicted_max_time_end is None or since_ms > self.evicted_max_time_end

    def _segments(self, filters: dict | None = None) -> list[SegmentColumns]:
        """Every segment's live rows, oldest first, less the blocks ``filters`` rule out (call under
        the lock)."""
        segs = [SegmentColumns(b, None, self._skip if i == 0 else 0, b.rows - (self._skip if i == 0 else 0),
                         self.decoded)
                for i, b in enumerate(self._blocks) if filters is None or b.may_match(filters)]
        if self._open_rows or not segs:  # mask_of is called at least once (it may read ring state)
            segs.append(SegmentColumns(None, self._open, 0, self._open_rows))
        return segs

    def select(self, mask_of: Callable[[Mapping[str, np.ndarray]], np.ndarray],
               pick: Callable[[Mapping[str, np.ndarray], np.ndarray], np.ndarray] | None = None,
               columns: tuple[str, ...] | None = None, filters: dict | None = None,
               nearest: tuple[int, bool] | None = None) -> dict[str, np.ndarray]:
        """Copies of the rows for which ``mask_of(columns)`` is true (plus ``seq``), oldest first.
        ``pick(cols, idx)`` may narrow and order the matching indexes before anything is copied; it
        must keep rows by an order of the rows themselves (the ``want`` nearest a cursor), as it is
        applied to each segment and then once more to what the segments kept. ``columns`` limits
        which columns are copied. Both callables get a mapping of a segment's columns, decoded as they
        are read; the whole select runs under the ring's lock, as one consistent view. ``filters``,
        the planner's filter dict that ``mask_of`` applies (planner.ring_mask), lets whole blocks be
        skipped undecoded. ``nearest`` = (want, newest_first) says that ``pick`` keeps the ``want`` rows
        with the highest (newest_first) or lowest time_end: segments are then read from that end, and
        those whose time range cannot reach past the want-th row kept are not read at all (a page
        of 50 flows of one host reads the newest block or two, not the whole ring)."""
        names = tuple(dict.fromkeys(columns or NAMES))  # once each, in order
        # a page reads a segment or two from one end: test the others' stats only when reached
        lazy = nearest is not None and pick is not None and filters is not None
        with self.lock:
            segs = self._segments(None if lazy else filters)
            if pick is None:
                parts = []
                for seg in segs:
                    idx = np.flatnonzero(mask_of(seg))
                    if len(idx):
                        parts.append({name: seg[name][idx] for name in names})
                    seg.release()
                return concat_parts(parts, names)
            # pick: per segment the rows it keeps, with the columns mask_of and pick read; then pick
            # again over all of them, and only the rows kept last get their other columns decoded
            kept: list[tuple[SegmentColumns, np.ndarray]] = []
            probe_parts = []
            masked = False
            if nearest is not None:
                want, newest_first = nearest
                segs.sort(key=(lambda g: -g.te_hi) if newest_first else (lambda g: g.te_lo))
                kept_te: list[np.ndarray] = []
            for seg in segs:
                if nearest is not None and sum(map(len, kept_te)) >= want and len(kept) < len(segs):
                    te = np.concatenate(kept_te)
                    k = len(te) - want if newest_first else want - 1
                    bound = int(np.partition(te, k)[k])  # the want-th nearest time_end kept so far
                    if (seg.te_hi < bound) if newest_first else (seg.te_lo > bound):
                        break  # segments come in order of that end: none later can reach either
                if lazy and seg._block is not None and not seg._block.may_match(filters):
                    continue
                masked = True
                idx = np.flatnonzero(mask_of(seg))
                if len(idx):
                    idx = np.asarray(pick(seg, idx))
                if len(idx):
                    kept.append((seg, idx))
                    probe_parts.append({name: seg[name][idx] for name in seg.touched})
                    if nearest is not None:
                        kept_te.append(seg["time_end"][idx])
                seg.release()
            if not masked:  # mask_of is called at least once (it may read ring state)
                mask_of(SegmentColumns(None, self._open, 0, 0))
            if not kept:
                return concat_parts([], names)
            touched = set().union(*(p.keys() for p in probe_parts))
            probe = GatheredRows(kept, {name: np.concatenate([p[name] for p in probe_parts if name in p])
                                     for name in touched if all(name in p for p in probe_parts)})
            final = np.asarray(pick(probe, np.arange(probe.rows)))
            return probe.take(final, names)

    def scan(self, mask_of: Callable[[Mapping[str, np.ndarray]], np.ndarray], columns: tuple[str, ...],
             filters: dict | None = None) -> Iterator[dict[str, np.ndarray]]:
        """The rows ``select`` would give, as one dict of ``columns`` per segment, oldest first, so a
        caller that folds them (sums per key, per time step) holds one segment's rows at a time
        instead of all of them (a full ring's 600,000 rows of eight columns are 41 MB as one select).
        The segments are taken under the lock and read without it, so appends go on meanwhile: blocks
        never change, and the open buffer is only written past the rows it held (a full one is
        replaced, never refilled), so the rows are exactly those the ring held when the scan began.
        ``mask_of`` is called at least once."""
        names = tuple(dict.fromkeys(columns))
        with self.lock:
            segs = self._segments(filters)
        for seg in segs:
            idx = np.flatnonzero(mask_of(seg))
            if len(idx):
                yield {name: seg[name][idx] for name in names}
            seg.release()

    def scan_parts(self, mask_of: Callable[[Mapping[str, np.ndarray]], np.ndarray],
                   filters: dict | None = None) -> Iterator[tuple[object | None, Mapping[str, np.ndarray], np.ndarray]]:
        """As ``scan``, but each segment as (block, columns decoded as read, matching row indexes), the
        block given only when the segment is a whole sealed block (none of its rows evicted), so a
        caller may reuse what it computed from that block before (blocksums.py). The indexes are None
        when every row matches: a whole block inside a plain time window (``filters`` of since and
        until only, as planner.ring_mask applies them), whose rows are then not tested one by one."""
        with self.lock:
            segs = self._segments(filters)
        times_only = filters is not None and set(filters) <= {"since", "until"}
        since, until = (filters.get("since", -1 << 63), filters.get("until", 1 << 63)) if times_only else (0, 0)
        masked = False
        for seg in segs:
            block = seg._block if seg._block is not None and seg.rows == seg._block.rows else None
            if times_only and block is not None and since <= block.te_min and block.te_max < until:
                yield block, seg, None
            else:
                masked = True
                idx = np.flatnonzero(mask_of(seg))
                if len(idx):
                    yield block, seg, idx
            seg.release()
        if not masked:  # mask_of is called at least once (it may read ring state)
            mask_of(SegmentColumns(None, self._open, 0, 0))

    def keep_block_sums(self, block, groups):
        """Cache a block's overview groups, unless it was evicted since it was read (its entry would
        then never be dropped); the groups as the cache holds them (blocksums.BlockSums.put)."""
        with self.lock:
            keep = self.block_sums is not None and any(b is block for b in self._blocks)
            return self.block_sums.put(block, groups, keep)

    def time_bounds(self) -> tuple[int | None, int | None]:
        """Oldest and newest time_end held."""
        with self.lock:
            if self.size == 0:
                return None, None
            lo, hi = [], []
            for i, b in enumerate(self._blocks):
                if i == 0 and self._skip:
                    if self._oldest_te is None:
                        self._oldest_te = decode_block(b.blobs, ("time_end",), b.rows)["time_end"]
                    te = self._oldest_te[self._skip:]
                    lo.append(int(te.min()))
                    hi.append(int(te.max()))
                else:
                    lo.append(b.te_min)
                    hi.append(b.te_max)
            if self._open_rows:
                te = self._open["time_end"][:self._open_rows]
                lo.append(int(te.min()))
                hi.append(int(te.max()))
            return min(lo), max(hi)
