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


def build(reader: Any, value_of: Callable[[dict], int], dtype: np.dtype, max_ranges: int) -> RangeTable:
    """Read every network of an open maxminddb reader into a RangeTable. ``value_of(record)`` gives a
    network's value (0: none). Raises TooManyRanges past ``max_ranges`` (both families)."""
    t0 = time.monotonic()
    v4: list[tuple[int, int, int]] = []
    v6: list[tuple[int, int, int]] = []
    long_v6: set[int] = set()
    for net, record in reader:
        value = value_of(record) if isinstance(record, dict) else 0
        if not value:
            continue
        lo, hi = int(net.network_address), int(net.broadcast_address)
        if net.version == 4:
            v4.append((lo, hi + 1, value))
        elif net.prefixlen <= 64:
            v6.append((lo >> 64, (hi >> 64) + 1, value))
        else:
            long_v6.add(lo >> 64)
        if len(v4) + len(v6) + len(long_v6) > max_ranges:
            raise TooManyRanges(f"more than {max_ranges:,} networks")
    v4.sort()
    v6.sort()
    s4, x4 = _boundaries(v4, 1 << 32)
    s6, x6 = _boundaries(v6, 1 << 64)
    if len(s4) + len(s6) > max_ranges:
        raise TooManyRanges(f"{len(s4) + len(s6):,} ranges, more than {max_ranges:,}")
    fallback = None
    if long_v6:
        def fallback(packed: bytes) -> int:
            record = reader.get(ipaddress.IPv6Address(packed))
            return value_of(record) if isinstance(record, dict) else 0
    table = RangeTable(np.array(s4, np.uint64).astype(np.uint32), np.array(x4, dtype), np.array(s6, np.uint64),
                       np.array(x6, dtype), np.array(sorted(long_v6), np.uint64), fallback)
    log.info("address table built", extra=fields(networks=len(v4) + len(v6), ranges=table.ranges,
                                                 long_v6=len(long_v6), table_bytes=table.nbytes,
                                                 seconds=round(time.monotonic() - t0, 2)))
    return table
