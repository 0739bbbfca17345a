"""Pre-aggregated rollups ("hists") of a sealed hour: per (dimension, step) the sums of bytes, packets,
flows and sampling-scaled bytes and packets for every (bucket, key), one compact blob each.

Pure code, no I/O: the sealer feeds a ``HistBuilder`` the hour's flows block by block and stores the
blobs ``finish`` gives (cut into key ranges by ``key_chunks``); the planner answers long windows from
``decode_hist`` of the coarsest step that fits. The dimensions and their key words are in
histkeys.py, the blob format in histblob.py; this module re-exports their names, so
``flowlens_store.hists`` stays the one place to import rollup code from.

Sums are uint64 and wrap modulo 2**64 (as groupby.group_rows does), so any split of the flows into
blocks gives the same blob. A (dim, step) with more than ``max_keys`` keys in one bucket keeps the
``max_keys`` keys with the most bytes (ties: the smaller key) and one "other" row holding the rest of
that bucket, so totals stay exact while the tail of a high-cardinality key is lumped together.
"""
from __future__ import annotations

import numpy as np

from flowmodel.schema import rate_factor

from .histblob import (CONST, DELTA, FLAG_OTHER, FLAG_ZSTD, FOR, MAGIC, VALUES, VERSION, ZSTD_LEVEL,
                       decode_hist, encode_hist, uint_width)
from .histkeys import (DIMS, KEY_WIDTH, OTHER_WORD, STEPS, address_words, dim_key_words, key_text,
                       prefix_words)
from .groupby import group_rows, top_groups

__all__ = [  # this module's own names and those of histkeys.py and histblob.py it re-exports
    "CHUNKED_DIMS", "CHUNK_ROWS", "HistBuilder", "key_chunks",
    "DIMS", "KEY_WIDTH", "OTHER_WORD", "STEPS", "address_words", "dim_key_words", "key_text", "prefix_words",
    "CONST", "DELTA", "FLAG_OTHER", "FLAG_ZSTD", "FOR", "MAGIC", "VALUES", "VERSION", "ZSTD_LEVEL",
    "decode_hist", "encode_hist", "uint_width",
]

_U64 = np.uint64
_MERGE_ROWS = 1 << 16  # pending piece rows re-grouped once they exceed max(this, the merged rows)


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
        out.append((lo, None) if lo == hi else (lo, (c - lo).astype(f"<u{uint_width(int(hi - lo))}")))
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
        rate = rate_factor(cols["sampling_rate"])
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


# ------------------------------------------------------------------ key-range chunks

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

