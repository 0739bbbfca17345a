"""Pre-aggregated rollups ("hists") of a sealed hour: per (dimension, step) the sums of bytes, packets,
flows and sampling-scaled bytes and packets for every (bucket, key), one compact blob each.

Pure code, no I/O: the sealer feeds a ``HistBuilder`` the hour's flows block by block and stores the
blobs ``finish`` gives; the planner answers long windows from ``decode_hist`` of the coarsest step
that fits. Keys are uint64 words whose lexicographic order is the key's byte order (planner.key_words):
an address is its two big-endian halves, an interface is (exporter high, exporter low, ifIndex).

Sums are uint64 and wrap modulo 2**64 (as planner.group_rows does), so any split of the flows into
blocks gives the same blob. A (dim, step) with more than ``max_keys`` keys in one bucket keeps the
``max_keys`` keys with the most bytes (ties: the smaller key) and one "other" row holding the rest of
that bucket, so totals stay exact while the tail of a high-cardinality key is lumped together.

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

from flowmodel import addr

from .planner import group_rows, top_groups

STEPS = (60_000, 300_000, 3_600_000)  # 1 min, 5 min, 1 h
_S5_H = (300_000, 3_600_000)
# dimension -> the steps (ms, finest first) it is kept at
DIMS: dict[str, tuple[int, ...]] = {
    "exporter": STEPS,
    "dst_prefix": (60_000, 3_600_000),
    "src": _S5_H,
    "dst": _S5_H,
    "self": _S5_H,        # flows with src_addr == dst_addr, by that address: addr = src + dst - self exactly
    "src_port": _S5_H,
    "dst_port": _S5_H,
    "port": _S5_H,        # min(src_port, dst_port): the service side of most flows
    "protocol": _S5_H,
    # 5 min too, so explore charts a day of them from rollups: 0.47 B/flow more on bench.flowgen's
    # site (nearly all AS; interfaces and tos 0.02), against 24 B/flow on disk in all
    "in_if": _S5_H,   # (exporter, input ifIndex)
    "out_if": _S5_H,  # (exporter, output ifIndex)
    "src_as": _S5_H,
    "dst_as": _S5_H,
    "tos": _S5_H,
}
KEY_WIDTH = {"exporter": 2, "dst_prefix": 2, "src": 2, "dst": 2, "self": 2, "in_if": 3, "out_if": 3}  # else 1
VALUES = ("bytes", "packets", "flows", "sbytes", "spackets")
OTHER_WORD = np.uint64((1 << 64) - 1)  # every word of an "other" row's key

MAGIC, VERSION = b"FLHS", 1
FLAG_OTHER, FLAG_ZSTD = 1, 2
CONST, FOR, DELTA = 0, 1, 2
ZSTD_LEVEL = 3
_HEAD = struct.Struct("<4sBBBBIqQ")
_PART = struct.Struct("<BBQ")
_U64 = np.uint64
_MERGE_ROWS = 1 << 16  # pending piece rows re-grouped once they exceed max(this, the merged rows)


# ------------------------------------------------------------------ keys

def address_words(col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A V16 address column as its big-endian (high, low) uint64 halves."""
    u = np.ascontiguousarray(col).view(">u8").reshape(-1, 2)
    return u[:, 0].astype(_U64), u[:, 1].astype(_U64)


def _top_bits(keep: int) -> np.uint64:
    keep = max(0, min(64, keep))
    return _U64(((1 << 64) - 1) ^ ((1 << (64 - keep)) - 1))


def prefix_words(col: np.ndarray, prefix_v4: int, prefix_v6: int) -> tuple[np.ndarray, np.ndarray]:
    """(high, low) words of each address with its host bits cleared (IPv4-mapped to prefix_v4, IPv6 to
    prefix_v6), as addr.mask_column does on sixteen bytes."""
    hi, lo = address_words(col)
    v4 = (hi == 0) & ((lo >> _U64(32)) == _U64(0xFFFF))
    return (np.where(v4, hi, hi & _top_bits(prefix_v6)),
            np.where(v4, lo & _top_bits(32 + prefix_v4), lo & _top_bits(prefix_v6 - 64)))


def dim_key_words(dim: str, cols: dict, prefix_v4: int, prefix_v6: int) -> tuple[np.ndarray | None, list[np.ndarray]]:
    """(row mask or None for every row, uint64 key words most significant first) of a dimension."""
    if dim in ("src", "dst", "exporter"):
        return None, list(address_words(cols[{"src": "src_addr", "dst": "dst_addr"}.get(dim, dim)]))
    if dim == "dst_prefix":
        return None, list(prefix_words(cols["dst_addr"], prefix_v4, prefix_v6))
    if dim == "self":
        src = np.ascontiguousarray(cols["src_addr"]).view(">u8").reshape(-1, 2)
        dst = np.ascontiguousarray(cols["dst_addr"]).view(">u8").reshape(-1, 2)
        mask = (src[:, 0] == dst[:, 0]) & (src[:, 1] == dst[:, 1])
        return mask, list(address_words(cols["src_addr"]))
    if dim in ("in_if", "out_if"):
        return None, [*address_words(cols["exporter"]), cols["input_if" if dim == "in_if" else "output_if"].astype(_U64)]
    if dim == "port":
        return None, [np.minimum(cols["src_port"], cols["dst_port"]).astype(_U64)]
    if dim in ("src_port", "dst_port", "protocol", "src_as", "dst_as", "tos"):
        return None, [cols[dim].astype(_U64)]
    raise ValueError(f"unknown hist dimension {dim!r} (one of {', '.join(DIMS)})")


def key_text(dim: str, words: np.ndarray, other: np.ndarray | None = None,
             prefix_v4: int = 24, prefix_v6: int = 64) -> list[str]:
    """Display text of each key row (an (n, w) uint64 array): addresses as text, dst_prefix as
    'a.b.c.0/24', interfaces as 'exporter ifIndex', numbers as decimals, an "other" row (``other``
    mask, or every word all ones when not given) as 'other'. Edge use only (pages, CLI lines)."""
    if len(words) == 0:
        return []   # reshape(0, -1) cannot size an empty array
    words = np.asarray(words, dtype=_U64).reshape(len(words), -1)
    if other is None:
        other = (words == OTHER_WORD).all(axis=1)
    out = []
    if dim in ("src", "dst", "self", "exporter", "dst_prefix", "in_if", "out_if"):
        raw = np.ascontiguousarray(words[:, :2]).astype(">u8").view("V16").ravel().tolist()
        for i, a in enumerate(raw):
            if other[i]:
                out.append("other")
            elif dim == "dst_prefix":
                out.append(addr.prefix_text(a, prefix_v4, prefix_v6))
            elif dim in ("in_if", "out_if"):
                out.append(f"{addr.to_text(a)} {int(words[i, 2])}")
            else:
                out.append(addr.to_text(a))
        return out
    return ["other" if o else str(v) for o, v in zip(other.tolist(), words[:, 0].tolist())]


# ------------------------------------------------------------------ building

class _Accumulator:
    """Groups of one (dim, step): a merged, sorted piece plus pending pieces, re-grouped when the
    pending rows outgrow the merged ones, so memory follows the distinct (bucket, key) groups. Pieces
    are held narrow (_pack: about 15 bytes a row instead of 64 on site data)."""

    __slots__ = ("step", "pieces", "merged", "pending")

    def __init__(self, step: int):
        self.step = step
        self.pieces: list[tuple] = []  # _pack of (t, k (n, w), values (5, n))
        self.merged = 0   # rows of pieces[0] when it is the last merge's result
        self.pending = 0  # rows added since

    def add(self, t: np.ndarray, k: np.ndarray, v: np.ndarray) -> None:
        self.pieces.append(_pack(t, k, v))
        self.pending += len(t)
        if self.pending > max(_MERGE_ROWS, self.merged):
            self.merge()

    def merge(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Re-group every piece into one; returns it unpacked (None when nothing was added)."""
        if not self.pieces:
            return None
        if len(self.pieces) == 1:
            return _unpack(self.pieces[0])
        parts = [_unpack(p) for p in self.pieces]
        self.pieces = []
        t = np.concatenate([p[0] for p in parts])
        k = np.concatenate([p[1] for p in parts])
        v = np.concatenate([p[2] for p in parts], axis=1)
        del parts
        merged = _regroup(t, k, v, self.step)
        self.pieces = [_pack(*merged)]
        self.merged, self.pending = len(merged[0]), 0
        return merged


def _pack(t: np.ndarray, k: np.ndarray, v: np.ndarray) -> tuple:
    """A piece as (rows, key words, [(base, narrow offsets or None when constant)] per column); the
    scaled sums as their wrapping difference from bytes and packets (constant zero when unsampled)."""
    cols = [t.view(_U64), *k.T, v[0], v[1], v[2], v[3] - v[0], v[4] - v[1]]
    out = []
    for c in cols:
        lo, hi = c.min(), c.max()
        out.append((lo, None) if lo == hi else (lo, (c - lo).astype(f"<u{_width(int(hi - lo))}")))
    return len(t), k.shape[1], out


def _unpack(piece: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, w, packed = piece
    cols = [np.full(n, lo, _U64) if a is None else a.astype(_U64) + lo for lo, a in packed]
    v = np.stack(cols[1 + w:])
    v[3] += v[0]
    v[4] += v[1]
    return cols[0].view(np.int64), np.stack(cols[1:1 + w], axis=1), v


def _time_word(t: np.ndarray, step: int) -> np.ndarray:
    """Bucket number of each time as a uint64 word in signed order (narrow range: packs well)."""
    return (t // step).view(_U64) ^ _U64(1 << 63)


def _regroup(t: np.ndarray, k: np.ndarray, v: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum rows of equal (t // step, k); t becomes the bucket start. Groups in (t, k) order."""
    rep, sums, _n = group_rows([_time_word(t, step), *k.T], *v)
    return t[rep] // step * step, k[rep], np.stack(sums)


class HistBuilder:
    """Folds blocks of flows into every (dim, step) accumulator of DIMS; ``finish`` encodes them."""

    def __init__(self, prefix_v4: int, prefix_v6: int, max_keys: int = 200_000, dims: dict | None = None):
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.prefix_v4, self.prefix_v6, self.max_keys = prefix_v4, prefix_v6, max_keys
        self.dims = dict(DIMS if dims is None else dims)
        self._acc: dict[tuple[str, int], _Accumulator] = {}
        self._reset()

    def _reset(self) -> None:
        self._acc = {(dim, step): _Accumulator(step) for dim, steps in self.dims.items() for step in steps}

    def add(self, cols: dict[str, np.ndarray]) -> None:
        """Fold one block of flows (every FLOW_COLUMNS column, any order, any length). Per dimension
        the rows are grouped once at its finest step and the coarser steps from those groups."""
        te = np.asarray(cols["time_end"], dtype=np.int64)
        if len(te) == 0:
            return
        b = cols["bytes"].astype(_U64)
        p = cols["packets"].astype(_U64)
        rate = np.maximum(cols["sampling_rate"], 1).astype(_U64)
        values = np.stack([b, p, b * rate, p * rate])  # uint64 products wrap modulo 2**64
        for dim, steps in self.dims.items():
            mask, words = dim_key_words(dim, cols, self.prefix_v4, self.prefix_v6)
            t, v = te, values
            if mask is not None:
                if not mask.any():
                    continue
                t, v, words = t[mask], v[:, mask], [w[mask] for w in words]
            rep, (gb, gp, gsb, gsp), counts = group_rows([_time_word(t, steps[0]), *words], *v)
            gt = t[rep] // steps[0] * steps[0]
            gk = np.stack([w[rep] for w in words], axis=1)
            gv = np.stack([gb, gp, counts.astype(_U64), gsb, gsp])
            self._acc[dim, steps[0]].add(gt, gk, gv)
            for step in steps[1:]:
                self._acc[dim, step].add(*_regroup(gt, gk, gv, step))

    def finish(self) -> dict[tuple[str, int], bytes]:
        """(dim, step_ms) -> encode_hist blob, for every (dim, step) that holds a row; the builder is
        then empty again. Buckets with more than max_keys keys are capped (see the module doc)."""
        out = {}
        for (dim, step), acc in self._acc.items():
            merged = acc.merge()
            if merged is not None:
                out[dim, step] = encode_hist(_capped(*merged, self.max_keys))
        self._reset()
        return out


def _capped(t: np.ndarray, k: np.ndarray, v: np.ndarray, max_keys: int) -> dict[str, np.ndarray]:
    """Arrays for encode_hist, each bucket (t sorted) with over max_keys keys cut to its top max_keys
    by bytes plus one "other" row with the rest of its sums."""
    n = len(t)
    starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
    ends = np.r_[starts[1:], n]
    over = np.flatnonzero(ends - starts > max_keys)
    other = np.zeros(n, bool)
    if len(over):
        keep = np.ones(n, bool)
        extra_t, extra_v = [], []
        for i in over.tolist():
            s, e = int(starts[i]), int(ends[i])
            drop = np.ones(e - s, bool)
            drop[top_groups(v[0, s:e], max_keys)] = False
            keep[s:e] = ~drop
            extra_t.append(t[s])
            extra_v.append(np.add.reduce(v[:, s:e][:, drop], axis=1, dtype=_U64))
        m = len(extra_t)
        t = np.concatenate([t[keep], np.array(extra_t, np.int64)])
        k = np.concatenate([k[keep], np.full((m, k.shape[1]), OTHER_WORD)])
        v = np.concatenate([v[:, keep], np.stack(extra_v, axis=1)], axis=1)
        other = np.r_[np.zeros(int(keep.sum()), bool), np.ones(m, bool)]
    arrays = {"t": t, "k": k, "other": other}
    arrays.update(zip(VALUES, v))
    return arrays


# ------------------------------------------------------------------ the blob

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
    decoded (a query's first pass wants one sum of five)."""
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
    cols = []
    start = np.zeros(n, bool)
    start[:1] = True
    parts = {2 + w + j for name in values for j in _VALUE_PARTS[name]}
    for i, (mode, width, base) in enumerate(heads):
        if i >= 2 + w and i not in parts:
            pos += n * width if mode in (FOR, DELTA) else 0
            cols.append(None)
            continue
        if mode == CONST:
            raw = np.zeros(n, _U64)
        elif mode in (FOR, DELTA):
            raw = np.frombuffer(body, np.uint8, n * width, pos)
            raw = (raw.reshape(width, n).T.copy() if width > 1 else raw).view(f"<u{width}").reshape(n).astype(_U64)
            pos += n * width
        else:
            raise ValueError(f"unknown hist part mode {mode}")
        if i == 0 or 2 <= i < 2 + w:
            col = _seg_sum(raw, start, base)
            if i == 0:
                other = None
            elif i < 1 + w:  # the last word's runs are never needed
                start = start | _changes(col)
        else:
            col = raw + _U64(base)
        cols.append(col)
        if i == 1:
            other = col.astype(bool)
            start = start | _changes(cols[0]) | _changes(other, other)
    t = (np.array(t_base, np.int64).view(_U64) + cols[0] * _U64(unit)).view(np.int64)
    k = np.stack(cols[2:2 + w], axis=1) if n else np.zeros((0, w), _U64)
    k[other] = OTHER_WORD
    b, p, f, db, dp = cols[2 + w:]
    out = {"t": t, "k": k, "other": other}
    for name in values:
        out[name] = {"bytes": b, "packets": p, "flows": f}[name] if name in ("bytes", "packets", "flows") else \
            (b + db if name == "sbytes" else p + dp)
    return out


def _width(max_value: int) -> int:
    return 1 if max_value < 1 << 8 else 2 if max_value < 1 << 16 else 4 if max_value < 1 << 32 else 8


def _for(col: np.ndarray) -> tuple:
    """(mode, width, base, narrow array or None): value - minimum in the narrowest width."""
    if len(col) == 0 or col.min() == col.max():
        return CONST, 0, int(col[0]) if len(col) else 0, None
    base = col.min()
    width = _width(int(col.max() - base))
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
    width = _width(top)
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


# host lookups (a series of one address) read one chunk per blob; explore's second pass reads the chunks
# holding its top keys: the busy service ports sit in the first chunks of the src/dst port rollups, so
# a day by destination port reads a few chunks per hour, not ~25,000 ports x 12 buckets (bench store:
# 0.47 -> 0.07 s; its 5-minute port rollups 68.0 -> 75.5 MB for 30 M flows, 0.25 B/flow)
CHUNKED_DIMS = ("src", "dst", "self", "src_port", "dst_port")
# 2048, not 8192: explore's second pass reads the chunks holding its top keys, and ten keys hit
# nearly every 8192-row chunk of an hour (8 h of bench.flowgen's site by src: 78 -> 56 ms; the
# 5-minute src/dst blobs 1.6 % larger, 0.04 B/flow)
CHUNK_ROWS = 2048


def key_chunks(dim: str, blob: bytes, step_ms: int = 300_000) -> list[tuple[bytes, bytes, int, bytes]]:
    """(key_lo, key_hi, rows, blob) pieces of a (dim, step) blob. Host dimensions at steps under an
    hour are cut into key ranges of about CHUNK_ROWS rows, so a lookup of one address decodes one small
    piece per hour; hourly ones (what a top over days reads whole) and the others stay whole.
    key_lo/key_hi are the first key words as big-endian bytes (BLOB order = key order)."""
    h = decode_hist(blob)
    n = len(h["t"])
    k = h["k"].reshape(n, -1)
    if dim not in CHUNKED_DIMS or n <= CHUNK_ROWS or step_ms >= 3_600_000:
        lo, hi = _key_bytes(k.min(axis=0) if n else None), _key_bytes(k.max(axis=0) if n else None)
        if n and dim in CHUNKED_DIMS:
            order = np.lexsort(k.T[::-1])
            lo, hi = _key_bytes(k[order[0]]), _key_bytes(k[order[-1]])
        return [(lo, hi, n, blob)]
    order = np.lexsort(k.T[::-1])  # by key
    ks = k[order]
    out = []
    start = 0
    while start < n:
        end = min(n, start + CHUNK_ROWS)
        while end < n and (ks[end] == ks[end - 1]).all():  # a key's rows stay in one chunk
            end += 1
        idx = order[start:end]
        part = {name: v[idx] for name, v in h.items() if name != "k"}
        part["k"] = k[idx]
        out.append((_key_bytes(ks[start]), _key_bytes(ks[end - 1]), end - start, encode_hist(part)))
        start = end
    return out


def _key_bytes(words) -> bytes:
    if words is None:
        return b""
    return np.asarray(words, dtype=_U64).astype(">u8").tobytes()

