"""The rollup blob: one (dim, step)'s rows of an hour, (bucket, key, sums), encoded compactly.
Pure code, no I/O; hists.py re-exports every public name.

Blob layout (little-endian): magic "FLHS", version, flags, key words, part count (4s B B B B), rows
(u32), time base (i64), time unit (u64); per part mode, width (B B) and base (u64); then the parts'
payloads, each byte-shuffled, concatenated and zstd-compressed (level 3). Rows are sorted by
(t, other, k). Parts, in decode order: t as (t - base) // unit, delta from the previous row; the
"other" flag; each key word as its difference from the previous row within a run of equal earlier
words (else from the column minimum; 0 on "other" rows, whose key is all ones); bytes, packets, flows
as value - minimum; sbytes - bytes and spackets - packets (wrapping; zero when unsampled).
"""
from __future__ import annotations

import struct
import threading

import numpy as np

from .histkeys import OTHER_WORD

VALUES = ("bytes", "packets", "flows", "sbytes", "spackets")
MAGIC, VERSION = b"FLHS", 1
FLAG_OTHER, FLAG_ZSTD = 1, 2
CONST, FOR, DELTA = 0, 1, 2
ZSTD_LEVEL = 3
_HEAD = struct.Struct("<4sBBBBIqQ")
_PART = struct.Struct("<BBQ")
_U64 = np.uint64
_MASK64 = (1 << 64) - 1


def encode_hist(arrays: dict[str, np.ndarray]) -> bytes:
    """'t' int64 bucket starts, 'k' (n, w) uint64 key words, the VALUES (uint64) and optionally
    'other' (bool) -> blob (module doc). Rows may come in any order; they are stored sorted."""
    t = np.asarray(arrays["t"], np.int64)
    n = len(t)
    k = np.asarray(arrays["k"], _U64)
    k = k[:, None] if k.ndim == 1 else k   # one word per key
    w = k.shape[1]
    other = np.asarray(arrays["other"], bool) if "other" in arrays else np.zeros(n, bool)
    vals = [np.asarray(arrays[name], _U64) for name in VALUES]
    if any(len(x) != n for x in (k, other, *vals)):
        raise ValueError("hist arrays differ in length")
    order = np.lexsort((*k.T[::-1], other, t))
    t, k, other, vals = t[order], k[order], other[order], [x[order] for x in vals]
    # t as whole units past its minimum (exact in uint64 whatever the range)
    t_base = int(t.min()) if n else 0
    off = t.view(_U64) - np.array(t_base, np.int64).view(_U64)
    unit = int(np.gcd.reduce(off)) if n else 0
    unit = unit or 1
    start = np.zeros(n, bool)
    start[:1] = True
    parts = [_seg_delta(off // _U64(unit), start), _for(other.astype(_U64))]
    # key words: a run of equal (t, other, earlier words) is sorted, so store its steps
    start = start | np.r_[False, (t[1:] != t[:-1]) | other[1:] | other[:-1]]
    for j in range(w):
        col = k[:, j]
        if other.any():
            col = np.where(other, col[~other].min() if not other.all() else 0, col)
        parts.append(_seg_delta(col, start))
        start = start | np.r_[False, col[1:] != col[:-1]]
    b, p, f, sb, sp = vals
    parts += [_for(b), _for(p), _for(f), _for(sb - b), _for(sp - p)]
    heads, payload = [], []
    for mode, width, base, arr in parts:
        heads.append(_PART.pack(mode, width, base))
        if arr is not None:
            payload.append(arr.view(np.uint8).reshape(n, width).T.tobytes() if width > 1 else arr.tobytes())
    body = b"".join(payload)
    flags = FLAG_OTHER if other.any() else 0
    if len(body) >= 64:
        packed = _zstd().compress(body)
        if len(packed) < len(body):
            body, flags = packed, flags | FLAG_ZSTD
    return _HEAD.pack(MAGIC, VERSION, flags, w, len(parts), n, t_base, unit) + b"".join(heads) + body


# the stored value parts (after t, other and the key words) each VALUES entry is made of
_VALUE_PARTS = {"bytes": (0,), "packets": (1,), "flows": (2,), "sbytes": (0, 3), "spackets": (1, 4)}


def decode_hist(blob: bytes, values: tuple[str, ...] = VALUES) -> dict[str, np.ndarray]:
    """A blob -> 't' int64, 'k' (n, w) uint64 (all ones on "other" rows), the ``values`` (VALUES
    names, uint64) and 'other' bool, rows sorted by (t, other, k). Parts no value needs are not
    decoded (a query's first pass wants one sum of five). A constant part stays a number until an
    output needs it (an hour's t, the ::ffff: word of IPv4 keys, unsampled sums' deltas) instead
    of being made, summed and added as an array of one value (72 hours of source and destination
    blobs: 110-122 -> 94-110 ms)."""
    magic, version, flags, w, nparts, n, t_base, unit = _HEAD.unpack_from(blob)
    if magic != MAGIC or version != VERSION:
        raise ValueError(f"not a hist blob of version {VERSION} (magic {magic!r}, version {version})")
    if nparts != w + 7:
        raise ValueError(f"hist blob has {nparts} parts for {w} key words")
    heads = [_PART.unpack_from(blob, _HEAD.size + i * _PART.size) for i in range(nparts)]
    body = memoryview(blob)[_HEAD.size + nparts * _PART.size:]
    if flags & FLAG_ZSTD:
        body = memoryview(_zstd_d().decompress(body))
    pos = 0
    cols: list = []  # each part: an array, an int (a constant part: every row's value) or None (not needed)
    start = np.zeros(n, bool)
    start[:1] = True
    parts = {2 + w + j for name in values for j in _VALUE_PARTS[name]}
    for i, (mode, width, base) in enumerate(heads):
        if i >= 2 + w and i not in parts:
            pos += n * width if mode in (FOR, DELTA) else 0
            cols.append(None)
            continue
        if mode == CONST:  # zero deltas restart at the base: a constant t or key word is its base too
            col = base
        elif mode in (FOR, DELTA):
            raw = np.frombuffer(body, np.uint8, n * width, pos)
            raw = (raw.reshape(width, n).T.copy() if width > 1 else raw).view(f"<u{width}").reshape(n).astype(_U64)
            pos += n * width
            if i == 0 or 2 <= i < 2 + w:
                col = _seg_sum(raw, start, base)
                if 2 <= i < 1 + w:  # the last word's runs are never needed
                    start |= _changes(col)
            else:
                raw += _U64(base)  # (astype made it: ours to change)
                col = raw
        else:
            raise ValueError(f"unknown hist part mode {mode}")
        cols.append(col)
        if i == 1:  # a key word's runs restart where t or "other" changes, and on every "other" row
            other = np.full(n, bool(col)) if isinstance(col, int) else col.astype(bool)
            if not isinstance(cols[0], int):
                start |= _changes(cols[0])
            start |= _changes(other, other)
    if isinstance(cols[0], int):
        t = np.full(n, np.array((t_base + cols[0] * unit) & _MASK64, _U64).view(np.int64))
    else:
        t = (np.array(t_base, np.int64).view(_U64) + cols[0] * _U64(unit)).view(np.int64)
    k = np.empty((n, w), _U64)
    for j in range(w):
        k[:, j] = cols[2 + j]  # an int fills the column
    if not (isinstance(cols[1], int) and cols[1] == 0):
        k[other] = OTHER_WORD
    b, p, f, db, dp = cols[2 + w:]
    out = {"t": t, "k": k, "other": other}
    for name in values:
        if name in ("bytes", "packets", "flows"):
            v = {"bytes": b, "packets": p, "flows": f}[name]
        else:
            v, d = (b, db) if name == "sbytes" else (p, dp)
            v = v + d if not (isinstance(v, int) and isinstance(d, int)) else (v + d) & _MASK64
        out[name] = np.full(n, v, _U64) if isinstance(v, int) else v
    return out


def uint_width(max_value: int) -> int:
    """Bytes of the narrowest unsigned integer holding ``max_value``: 1, 2, 4 or 8."""
    return 1 if max_value < 1 << 8 else 2 if max_value < 1 << 16 else 4 if max_value < 1 << 32 else 8


def _for(col: np.ndarray) -> tuple:
    """(mode, width, base, narrow array or None): value - minimum in the narrowest width."""
    if len(col) == 0 or col.min() == col.max():
        return CONST, 0, int(col[0]) if len(col) else 0, None
    base = col.min()
    width = uint_width(int(col.max() - base))
    return FOR, width, int(base), (col - base).astype(f"<u{width}")


def _seg_delta(col: np.ndarray, start: np.ndarray) -> tuple:
    """Each value minus the previous one, or minus the column minimum on a run's first row (``start``);
    never negative where runs are sorted."""
    if len(col) == 0:
        return CONST, 0, 0, None
    base = col.min()
    d = col - np.where(start, base, np.r_[base, col[:-1]])
    top = int(d.max())
    if top == 0:
        return CONST, 0, int(base), None
    width = uint_width(top)
    return DELTA, width, int(base), d.astype(f"<u{width}")


def _changes(col: np.ndarray, also: np.ndarray | None = None) -> np.ndarray:
    """Rows whose value differs from the row before (the first row: False); with ``also``, rows
    where it or the row before is set too."""
    out = np.zeros(len(col), bool)
    if len(col) > 1:
        np.not_equal(col[1:], col[:-1], out=out[1:])
        if also is not None:
            out[1:] |= also[1:] | also[:-1]
    return out


def _seg_sum(d: np.ndarray, start: np.ndarray, base: int) -> np.ndarray:
    """The inverse of _seg_delta: running sums of d restarted at each run's first row from base."""
    if len(d) == 0:
        return d
    if not start[1:].any():  # one run (an hour's keys): a plain running sum
        return np.cumsum(d, dtype=_U64) + _U64(base)
    r = d + np.where(start, _U64(base), _U64(0))
    c = np.cumsum(r, dtype=_U64)
    before = (c - r)[start]  # the running sum just before each run
    return c - before[np.cumsum(start) - 1]


_local = threading.local()  # zstandard contexts are not thread-safe: one pair per thread


def _zstd():
    c = getattr(_local, "c", None)
    if c is None:
        import zstandard
        c = _local.c = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return c


def _zstd_d():
    d = getattr(_local, "d", None)
    if d is None:
        import zstandard
        d = _local.d = zstandard.ZstdDecompressor()
    return d
