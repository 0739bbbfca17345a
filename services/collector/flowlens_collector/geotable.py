"""An address -> value table made from a MaxMind-format database, looked up a whole column at a time.

The database's networks are read once, at start, from its search tree (mmdbtree.py, each distinct
record decoded once by the maxminddb reader), into sorted range starts: IPv4 as uint32, IPv6 as
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


_MAX64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def boundaries(firsts: np.ndarray, lasts: np.ndarray, values: np.ndarray, space_last: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint networks sorted by their first address (uint64 first and last address, a value each)
    -> range starts and values covering the space from 0 to ``space_last``: gaps are 0, equal
    neighbours merged. In numpy, placing each network and each gap after one by position: a million
    networks as Python ints would take ~100 MB, and the collector has a memory limit."""
    values = np.asarray(values)
    n = len(firsts)
    if not n:
        return np.zeros(1, np.uint64), np.zeros(1, values.dtype)
    gap = np.empty(n, bool)  # a gap follows the network
    np.not_equal(lasts[:-1] + np.uint64(1), firsts[1:], out=gap[:-1])
    gap[-1] = True
    gap &= lasts != np.uint64(space_last)
    at = np.cumsum(gap, dtype=np.int64)
    at -= gap
    at += np.arange(1, n + 1)  # where each network goes: after the 0 at the head and the gaps before it
    starts = np.zeros(n + 1 + int(gap.sum()), np.uint64)
    vals = np.zeros(len(starts), values.dtype)
    starts[at] = firsts
    vals[at] = values
    starts[at[gap] + 1] = lasts[gap] + np.uint64(1)  # a gap's value stays 0
    del at, gap
    keep = np.append(starts[1:] != starts[:-1], True)  # equal starts (a network at 0): the later holds
    starts, vals = starts[keep], vals[keep]
    keep = np.append(True, vals[1:] != vals[:-1])
    return starts[keep], vals[keep]


def network_lasts(prefixes: np.ndarray, lengths: np.ndarray, bits: int) -> np.ndarray:
    """The last address of each network (prefix left-aligned in ``bits`` bits, its length)."""
    host_bits = bits - lengths.astype(np.int16)
    host = np.left_shift(np.uint64(1), np.minimum(host_bits, 63).astype(np.uint64))
    host -= np.uint64(1)
    host[host_bits >= 64] = _MAX64
    host |= prefixes
    return host


def build(reader: Any, path: str, value_of: Callable[[dict], int], dtype: np.dtype, max_ranges: int) -> RangeTable:
    """Every network of the MaxMind DB at ``path`` (open in ``reader``) into a RangeTable.
    ``value_of(record)`` gives a network's value (0: none); each distinct record is decoded once.
    Raises TooManyRanges past ``max_ranges`` (both families), mmdbtree.TreeError on a bad tree."""
    t0 = time.monotonic()
    meta = reader.metadata()
    n = meta.node_count
    left, right = mmdbtree.read_records(path, n, meta.record_size)
    v4_root = mmdbtree.ipv4_start(left, right, n, meta.ip_version)
    p4, l4, r4, _open = mmdbtree.walk(left, right, n, v4_root, 32)
    if meta.ip_version == 6:
        p6, l6, r6, open64 = mmdbtree.walk(left, right, n, 0, 64, skip=v4_root if v4_root < n else -1)
    else:
        p6, l6, r6, open64 = np.zeros(0, np.uint64), np.zeros(0, np.uint8), np.zeros(0, np.uint32), np.zeros(0, np.uint64)
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
    per_network = values[inverse.reshape(-1)].astype(dtype)
    valued, networks = int(np.count_nonzero(per_network)), len(per_network)
    del inverse, r4, r6
    # each family's networks sorted and cut into ranges, its arrays let go as soon as they are used
    family = [p4, l4, per_network[:len(p4)]]
    del p4, l4
    s4, x4 = _sorted_boundaries(family, 32)
    family = [p6, l6, per_network[networks - len(p6):]]
    del p6, l6, per_network
    s6, x6 = _sorted_boundaries(family, 64)
    if len(s4) + len(s6) > max_ranges:
        raise TooManyRanges(f"{len(s4) + len(s6):,} ranges, more than {max_ranges:,}")
    fallback = None
    if len(open64):
        def fallback(packed: bytes) -> int:
            record = reader.get(ipaddress.IPv6Address(packed))
            return value_of(record) if isinstance(record, dict) else 0
    table = RangeTable(s4.astype(np.uint32), x4, s6, x6, np.unique(open64), fallback)
    table.valued_networks = valued
    log.info("address table built", extra=fields(networks=networks, records=len(recs), ranges=table.ranges,
                                                 long_v6=len(open64), table_bytes=table.nbytes,
                                                 seconds=round(time.monotonic() - t0, 2)))
    return table


def _sorted_boundaries(family: list, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """``family``: [prefixes, lengths, values] of one address family, emptied here so each array is
    freed once sorted."""
    prefixes, lengths, values = family
    family.clear()
    order = np.argsort(prefixes, kind="stable")
    firsts = prefixes[order]
    del prefixes
    lasts = network_lasts(firsts, lengths[order], bits)
    del lengths
    values = values[order]
    del order
    return boundaries(firsts, lasts, values, (1 << bits) - 1)
