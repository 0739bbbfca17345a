"""An address -> value table made from a MaxMind-format database, looked up a whole column at a time.

The database's networks are read once, at start, into sorted range starts: IPv4 as uint32, IPv6 as
the top 64 bits of the address (every network a routing table carries is /64 or shorter), each
with its value (an AS number, a packed country code; 0 in the gaps). A column is then answered
with one ``np.searchsorted`` per family, whatever the addresses: a flood of random sources costs
what a steady exporter does, where a per-address cache would miss on every one. The few IPv6 /64s
a database splits further are asked of the database itself, once per distinct address of a batch.
"""
from __future__ import annotations

import ipaddress
import logging
import time
from typing import Any, Callable

import numpy as np

from flowmodel.logs import fields

from . import mmdbtree

log = logging.getLogger(__name__)

_LOW32 = np.uint64(0xFFFFFFFF)


class TooManyRanges(ValueError):
    """The database has more ranges than the configured bound."""


class RangeTable:
    """Sorted range starts and their values, per family; ``lookup`` answers an address column."""

    def __init__(self, v4_starts: np.ndarray, v4_values: np.ndarray, v6_starts: np.ndarray,
                 v6_values: np.ndarray, long_v6: np.ndarray | None = None,
                 fallback: Callable[[bytes], int] | None = None):
        self.v4_starts, self.v4_values = v4_starts.astype(np.uint32), v4_values
        self.v6_starts, self.v6_values = v6_starts.astype(np.uint64), v6_values
        self.dtype = v4_values.dtype
        # top 64 bits of the /64s holding longer networks: those addresses ask ``fallback``
        self.long_v6 = long_v6 if long_v6 is not None and len(long_v6) else None
        self.fallback = fallback
        self.valued_networks = 0  # networks of the database with a value (build sets it)

    @property
    def ranges(self) -> int:
        return len(self.v4_starts) + len(self.v6_starts)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.v4_starts, self.v4_values, self.v6_starts, self.v6_values))

    def lookup(self, column: np.ndarray) -> np.ndarray:
        """The value of each address of an ADDR column (IPv4-mapped or IPv6); 0 where none."""
        words = np.ascontiguousarray(column).view(">u8").reshape(-1, 2)
        hi, lo = words[:, 0], words[:, 1]
        v4 = (hi == 0) & ((lo >> np.uint64(32)) == 0xFFFF)
        out = np.zeros(len(column), self.dtype)
        if len(self.v4_starts):
            keys = (lo & _LOW32).astype(np.uint32)
            found = self.v4_values[_search(self.v4_starts, keys) - 1]
            if v4.all():
                return found
            out[v4] = found[v4]
        v6 = ~v4
        if len(self.v6_starts) and v6.any():
            out[v6] = self.v6_values[_search(self.v6_starts, hi[v6]) - 1]
            if self.long_v6 is not None:
                self._ask_fallback(column, hi, v6, out)
        return out

    def _ask_fallback(self, column, hi, v6, out) -> None:
        ask = v6 & np.isin(hi, self.long_v6)
        if not ask.any():
            return
        where = np.flatnonzero(ask)
        uniq, inverse = np.unique(np.ascontiguousarray(column[where]).view("S16"), return_inverse=True)
        values = np.array([self.fallback(bytes(a).ljust(16, b"\0")) for a in uniq], self.dtype)
        out[where] = values[inverse]


# Above this many starts a table outgrows the CPU caches, and keys searched in sorted order (each
# search starting where the last ended, in cache) cost a third of keys searched as they come,
# sort included: 0.11 against 0.30 us a key in a table of 1 M ranges (bench/enrich.py).
SORT_KEYS_ABOVE = 16_384


def _search(starts: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """np.searchsorted(starts, keys, side="right"), sorting the keys first for a large table."""
    if len(starts) <= SORT_KEYS_ABOVE or len(keys) < 64:
        return np.searchsorted(starts, keys, side="right")
    order = np.argsort(keys)
    out = np.empty(len(keys), np.intp)
    out[order] = np.searchsorted(starts, keys[order], side="right")
    return out


def _boundaries(ranges: list[tuple[int, int, int]], top: int) -> tuple[list[int], list[int]]:
    """(start, end exclusive, value), sorted by start -> starts and values covering [0, top): gaps
    are 0, equal neighbours merged; a range overlapping the one before keeps only what follows it."""
    starts, values = [0], [0]
    at = 0  # where the last range ended
    for start, end, value in ranges:
        start = max(start, at)
        if start >= end:
            continue
        if start > at:
            _put(starts, values, at, 0)
        _put(starts, values, start, value)
        at = end
    if at < top:
        _put(starts, values, at, 0)
    return starts, values


def _put(starts: list[int], values: list[int], start: int, value: int) -> None:
    if values[-1] == value:
        return  # the range before goes on
    if starts[-1] == start:  # the entry before is empty: this one takes its place
        values[-1] = value
        if len(values) > 1 and values[-2] == value:
            starts.pop()
            values.pop()
        return
    starts.append(start)
    values.append(value)


def build(reader: Any, path: str, value_of: Callable[[dict], int], dtype: np.dtype, max_ranges: int) -> RangeTable:
    """Every network of the MaxMind DB at ``path`` (open in ``reader``) into a RangeTable.
    ``value_of(record)`` gives a network's value (0: none); each distinct record is decoded once.
    Raises TooManyRanges past ``max_ranges`` (both families), mmdbtree.TreeError on a bad tree."""
    t0 = time.monotonic()
    meta = reader.metadata()
    n = meta.node_count
    left, right = mmdbtree.read_records(path, n, meta.record_size)
    p4, l4, r4, _open = mmdbtree.walk(left, right, n, mmdbtree.ipv4_start(left, right, n, meta.ip_version), 32)
    if meta.ip_version == 6:
        p6, l6, r6, open64 = mmdbtree.walk(left, right, n, 0, 64)
    else:
        p6, l6, r6, open64 = np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, np.uint32), np.zeros(0, np.uint64)
    del left, right
    if len(p4) + len(p6) + len(open64) > max_ranges:
        raise TooManyRanges(f"{len(p4) + len(p6) + len(open64):,} networks, more than {max_ranges:,}")
    # one value per distinct data record, from the reader, asked for the first address pointing to it
    recs, first, inverse = np.unique(np.concatenate([r4, r6]), return_index=True, return_inverse=True)
    values = np.zeros(len(recs), np.int64)
    for k, i in enumerate(first.tolist()):
        ip = (ipaddress.IPv4Address(int(p4[i])) if i < len(p4)
              else ipaddress.IPv6Address(int(p6[i - len(p4)]) << 64))
        record = reader.get(ip)
        values[k] = value_of(record) if isinstance(record, dict) else 0
    per_network = values[inverse.reshape(-1)]
    v4 = _ranges(p4, l4, per_network[:len(p4)], 32)
    v6 = _ranges(p6, l6, per_network[len(p4):], 64)
    s4, x4 = _boundaries(v4, 1 << 32)
    s6, x6 = _boundaries(v6, 1 << 64)
    if len(s4) + len(s6) > max_ranges:
        raise TooManyRanges(f"{len(s4) + len(s6):,} ranges, more than {max_ranges:,}")
    fallback = None
    if len(open64):
        def fallback(packed: bytes) -> int:
            record = reader.get(ipaddress.IPv6Address(packed))
            return value_of(record) if isinstance(record, dict) else 0
    table = RangeTable(np.array(s4, np.uint64).astype(np.uint32), np.array(x4, dtype), np.array(s6, np.uint64),
                       np.array(x6, dtype), np.unique(open64), fallback)
    table.valued_networks = int(np.count_nonzero(per_network))
    log.info("address table built", extra=fields(networks=len(p4) + len(p6), records=len(recs), ranges=table.ranges,
                                                 long_v6=len(open64), table_bytes=table.nbytes,
                                                 seconds=round(time.monotonic() - t0, 2)))
    return table


def _ranges(prefixes: np.ndarray, lengths: np.ndarray, values: np.ndarray, bits: int) -> list[tuple[int, int, int]]:
    """(start, end exclusive, value) of the networks with a value, sorted by start."""
    keep = values != 0
    order = np.argsort(prefixes[keep], kind="stable")
    starts = prefixes[keep][order].tolist()
    sizes = (bits - lengths[keep][order]).tolist()
    vals = values[keep][order].tolist()
    return [(s, s + (1 << z), v) for s, z, v in zip(starts, sizes, vals)]
