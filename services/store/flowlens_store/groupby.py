"""Columnar group-by: rows grouped by a key of one or more columns with the sums of their values,
in numpy, no Python object per row; and helpers for what comes out (exact totals, per-key sums,
the largest groups). Used by the top, series and explore ops and the rollups.

A key is given as uint64 words (``key_words``) whose lexicographic order is the key's byte order as
SQLite compares it, so groups come out in the same key order from the ring, the flows and the rollups.
Sums are uint64 and wrap modulo 2**64, so groups summed apart and merged agree with one pass.
"""
from __future__ import annotations

import numpy as np

DENSE_GROUP_BITS = 20  # a packed key this narrow (and not much sparser than the rows) is grouped by indexing, no sort


def key_words(*parts: np.ndarray) -> list[np.ndarray]:
    """Key columns as uint64 words, most significant first, whose lexicographic order is the key's
    byte order as SQLite compares it: an address (V16) is its two big-endian halves, an unsigned int
    one word, a signed int one word with the sign bit flipped. No row bytes are copied into a void key.
    The words are read-only (a constant one is a broadcast view): for group_rows, not for writing."""
    words = []
    for p in parts:
        if p.dtype.kind == "V":
            width = p.dtype.itemsize
            if width % 8:
                raw = np.ascontiguousarray(p).view(np.uint8).reshape(len(p), width)
                raw = np.concatenate([np.zeros((len(p), -width % 8), np.uint8), raw], axis=1)
                u = np.ascontiguousarray(raw).view(">u8")
            else:
                u = np.ascontiguousarray(p).view(">u8").reshape(len(p), width // 8)
            for j in range(u.shape[1]):
                w = u[:, j]
                lo = w.min() if len(w) else 0
                # a word the same on every row (the ::ffff:0:0/96 half of IPv4 addresses) as one value
                # seen n times, not n copies: group_rows drops it without reading it again
                words.append(np.broadcast_to(np.uint64(lo), len(w)) if len(w) and lo == w.max()
                             else w.astype(np.uint64))
        elif p.dtype.kind == "i":
            words.append(p.astype(np.int64).view(np.uint64) ^ np.uint64(1 << 63))
        else:
            words.append(p.astype(np.uint64))
    return words


def group_rows(words: list[np.ndarray], *values: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Group rows by a key given as ``key_words``: one representative row index per group, the uint64
    sum of each value per group and the row count per group, groups in ascending key order.

    Words that are the same on every row (the ::ffff: half of IPv4-mapped addresses) are dropped and
    the rest packed into one uint64 when their ranges fit in 64 bits; a small packed key space
    (protocol, ports) is summed by direct indexing, a larger one sorted once (with the row index in
    the spare low bits when there are enough), and only keys wider than 64 bits use lexsort."""
    n = len(words[0])
    if n == 0:
        return np.zeros(0, np.intp), [np.zeros(0, np.uint64) for _ in values], np.zeros(0, np.int64)
    live = []
    for w in words:
        lo, hi = int(w.min()), int(w.max())
        if lo != hi:
            live.append((w, lo, (hi - lo).bit_length()))
    vals = [v.astype(np.uint64, copy=False) for v in values]
    if not live:
        return np.zeros(1, np.intp), [np.add.reduce(v, dtype=np.uint64, keepdims=True) for v in vals], \
            np.array([n], np.int64)
    bits = sum(b for _w, _lo, b in live)
    if bits <= 64:
        packed = None
        for w, lo, b in live:
            part = w - np.uint64(lo)
            packed = part if packed is None else (packed << np.uint64(b)) | part
        if bits <= DENSE_GROUP_BITS and (1 << bits) <= max(4 * n, 1 << 16):
            slots = packed.astype(np.intp)
            del packed, part
            size = 1 << bits
            counts = np.bincount(slots, minlength=size)
            groups = np.flatnonzero(counts)
            counts = counts[groups]
            # each row's group number (0..g-1, int32 when it fits) through one slot table: the sums
            # and representatives then take g entries each, not a slot table apiece
            g = len(groups)
            gid_type = np.int32 if g < (1 << 31) else np.intp
            table = np.empty(size, gid_type)
            table[groups] = np.arange(g, dtype=gid_type)
            del groups
            row_group = table[slots]
            del table, slots
            rep = np.empty(g, np.intp)
            rep[row_group] = np.arange(n, dtype=np.intp)  # any row of a group will do
            sums = []
            for v in vals:
                acc = np.zeros(g, np.uint64)
                np.add.at(acc, row_group, v)
                sums.append(acc)
            return rep, sums, counts.astype(np.int64, copy=False)
        idx_bits = max(1, (n - 1).bit_length())
        if bits + idx_bits <= 64:  # sort keys and row numbers together: a plain sort beats an argsort
            s = np.sort((packed << np.uint64(idx_bits)) | np.arange(n, dtype=np.uint64))
            order = (s & np.uint64((1 << idx_bits) - 1)).astype(np.intp)
            sk = s >> np.uint64(idx_bits)
        else:
            order = np.argsort(packed)
            sk = packed[order]
        change = np.empty(n, dtype=bool)
        change[0] = True
        np.not_equal(sk[1:], sk[:-1], out=change[1:])
    else:
        order = np.lexsort(tuple(w for w, _lo, _b in reversed(live)))
        change = np.zeros(n, dtype=bool)
        change[0] = True
        for w, _lo, _b in live:
            sw = w[order]
            change[1:] |= sw[1:] != sw[:-1]
    starts = np.flatnonzero(change)
    counts = np.diff(np.append(starts, n))
    sums = [np.add.reduceat(v[order], starts) for v in vals]
    return order[starts], sums, counts


def exact_sum(v: np.ndarray) -> int:
    """Sum of a uint64 column as a Python int, exact where a uint64 sum could wrap."""
    if len(v) and int(v.max()) * len(v) >= 1 << 64:
        return sum(v.tolist())
    return int(v.sum(dtype=np.uint64))


def add_sums(out: dict, keys: list, *sums: np.ndarray) -> None:
    """Add per-key [bytes, packets, flows] sums (numpy columns, one row per key) into ``out``."""
    for key, vals in zip(keys, zip(*(v.tolist() for v in sums))):
        cur = out.get(key)
        if cur is None:
            out[key] = list(vals)
        else:
            for i, v in enumerate(vals):
                cur[i] += v


def top_groups(metric: np.ndarray, limit: int) -> np.ndarray:
    """Indexes of the ``limit`` groups with the largest metric, ties going to the earlier group (groups
    are in ascending key order, so this is the order ``-metric, key``); unsorted."""
    m = len(metric)
    if m <= limit:
        return np.arange(m)
    kth = np.partition(metric, m - limit)[m - limit]
    above = np.flatnonzero(metric > kth)
    tied = np.flatnonzero(metric == kth)[:limit - len(above)]
    return np.concatenate([above, tied])
