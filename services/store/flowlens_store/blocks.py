"""Columnar block codec of the warm tier: up to BLOCK_ROWS flows as one compressed blob per column.

Pure functions, no I/O: the sealer hands ``encode_block`` a block's columns already sorted by
(time_end, seq) and stores the blobs and the stats (see ``blockstats``); a query reads only the
blocks ``block_may_match`` lets through and decodes only the columns it needs.

Each column is turned into unsigned integer "parts" (an address into its two 64-bit halves,
time_start into the duration time_end - time_start), each part encoded as the narrowest of
  CONST  one value for the whole block (nothing stored),
  FOR    value - block min in 1, 2, 4 or 8 bytes,
  DELTA  zigzag difference from the previous row (time_end and seq, sorted or nearly so),
  DICT   sorted distinct values + a narrow index (exporters, AS numbers, addresses),
then byte-shuffled (byte i of every value together) and compressed with zstd level 1. All arithmetic is
modulo 2**64, so any int64/uint64 value, extremes included, comes back bit-exact.

Blob layout: version, codec, flags, part count (4 x u1), then per part mode, width, value width,
pad, base (u64), dict size (u32); then the parts' payloads, concatenated and compressed.
"""
from __future__ import annotations

import struct
import threading
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from flowmodel.schema import ADDR, COLUMN_DEFAULTS, FLOW_COLUMNS

from .blockstats import block_may_match, block_stats, stats_may_hold_addr  # noqa: F401 (the codec's interface)

# rows per block (bench/blocks.py): 16k costs 13 % more disk; 64k saves 3 % but doubles a block's
# decode latency and memory and halves the pruning resolution of a host query
BLOCK_ROWS = 32_768
BLOCK_DTYPES: dict[str, np.dtype] = {name: dt for name, (dt, _doc) in FLOW_COLUMNS.items()}
BLOCK_DTYPES["seq"] = np.dtype("<i8")   # the store's unique per-flow sequence
DEPENDS = {"time_start": ("time_end",)}   # time_start is stored as a duration before time_end
# schema columns added after blocks were first written: an older block has no blob for them and
# reads as the column's default (schema.COLUMN_DEFAULTS, else 0)
ADDED_COLUMNS = frozenset({"biflow", "src_country", "dst_country"})

FORMAT = 1
CODEC_RAW, CODEC_ZSTD, CODEC_LZ4 = 0, 1, 2
FLAG_SHUFFLE = 1
FLAG_DURATION = 2   # the one part is time_end - time_start
CONST, FOR, DELTA, DICT = 0, 1, 2, 3
_HEAD = struct.Struct("<BBBB")
_PART = struct.Struct("<BBBxQI")
_U64 = np.dtype("<u8")
_MASK64 = (1 << 64) - 1
_MIN_COMPRESS = 64   # payloads shorter than this are stored as they are


@dataclass(frozen=True)
class Options:
    """Encoding choices; the defaults are what the benchmark picked (bench/blocks.py)."""
    codec: str = "zstd"        # "zstd", "lz4" or "raw"
    level: int = 1             # zstd level (3 and 6 came out larger on shuffled narrow columns)
    shuffle: bool = True       # byte-shuffle multi-byte values before compressing
    narrow: bool = True        # frame of reference in the narrowest width; False: full width, base 0
    delta: bool = True         # zigzag deltas where they are narrower
    dictionary: bool = False   # dictionary of int columns (never smaller on site data, 2x encode time)
    dict_addresses: bool = True   # dictionary of addresses where distinct ones are few (-12 %)
    duration: bool = True      # time_start as time_end - time_start


DEFAULT = Options()


def blobs_needed(names: Iterable[str]) -> set[str]:
    """The blobs ``decode_block`` reads to give the named columns."""
    out = set()
    for name in names:
        out.add(name)
        out.update(DEPENDS.get(name, ()))
    return out


def encode_block(cols: dict[str, np.ndarray], options: Options = DEFAULT) -> tuple[dict[str, bytes], dict]:
    """Every BLOCK_DTYPES column (equal length, 1..BLOCK_ROWS rows, in the order to keep) ->
    ({column: blob}, stats). Each column is its own blob, so a query decodes only what it needs."""
    return encode_columns(cols, options), block_stats(cols)


def encode_columns(cols: dict[str, np.ndarray], options: Options = DEFAULT) -> dict[str, bytes]:
    """``encode_block`` without the stats: {column: blob}, for a reader that needs no pruning (the
    store's ring keeps its older rows this way)."""
    n = len(cols["time_end"])
    if not 0 < n <= BLOCK_ROWS:
        raise ValueError(f"a block holds 1..{BLOCK_ROWS} rows, not {n}")
    blobs = {}
    for name, dt in BLOCK_DTYPES.items():
        col = np.asarray(cols[name])
        if col.dtype != dt or len(col) != n:
            raise ValueError(f"column {name!r}: {col.dtype}[{len(col)}], expected {dt}[{n}]")
        if dt == ADDR:
            halves = np.ascontiguousarray(col).view(">u8").reshape(n, 2)
            parts = [_encode_part(halves[:, 0].astype(_U64), False, options, options.dict_addresses),
                     _encode_part(halves[:, 1].astype(_U64), False, options, options.dict_addresses)]
        elif name == "time_start" and options.duration:
            duration = cols["time_end"] - col   # int64, wraps like the decoder's subtraction
            parts = [_encode_part(duration, True, options, options.dictionary)]
        else:
            parts = [_encode_part(col, dt.kind == "i", options, options.dictionary)]
        as_duration = name == "time_start" and options.duration
        blobs[name] = _pack(parts, options, FLAG_DURATION if as_duration else 0)
    return blobs


def decode_block(blobs: dict[str, bytes], names: Iterable[str], rows: int) -> dict[str, np.ndarray]:
    """The named columns of a block of ``rows`` rows, in their BLOCK_DTYPES dtypes, bit-exact.
    ``blobs`` must hold ``blobs_needed(names)``."""
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name not in out:
            out[name] = _decode_column(blobs, name, rows, out)
    return {name: out[name] for name in names}


def decode_rows(blobs: dict[str, bytes], names: Iterable[str], rows: int, idx: np.ndarray,
                known: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The named columns of a block at rows ``idx`` only, as decode_block(...)[name][idx] would give
    them: each blob is decompressed whole but only those rows are unpacked (a page of 50 flows of a
    32,768-row ring block: 0.5 ms of zstd instead of 4 ms of unpacking every row of 25 columns).
    ``known``: columns already at ``idx`` (time_end, which time_start's blob is stored against)."""
    idx = np.asarray(idx, np.intp)
    out: dict[str, np.ndarray] = dict(known or {})
    for name in names:
        if name not in out:
            out[name] = _decode_column_rows(blobs, name, rows, idx, out)
    return {name: out[name] for name in names}


def _column_head(blobs: dict[str, bytes], name: str) -> tuple | None:
    """(blob, codec, flags, part heads) of a block's column; None for a column the block was sealed
    without (it reads as its default)."""
    blob = blobs.get(name)
    if blob is None and name in ADDED_COLUMNS:  # a block sealed before the column existed
        return None
    if blob is None:
        raise KeyError(name)
    version, codec, flags, nparts = _HEAD.unpack_from(blob)
    if version != FORMAT:
        raise ValueError(f"block column {name!r} has format {version}, this code reads {FORMAT}")
    return blob, codec, flags, [_PART.unpack_from(blob, _HEAD.size + i * _PART.size) for i in range(nparts)]


def _decode_column_rows(blobs: dict[str, bytes], name: str, rows: int, idx: np.ndarray, done: dict) -> np.ndarray:
    dt = BLOCK_DTYPES[name]
    head = _column_head(blobs, name)
    if head is None:
        return np.full(len(idx), COLUMN_DEFAULTS.get(name, 0), dtype=dt)
    blob, codec, flags, heads = head
    nparts = len(heads)
    if all(h[0] == CONST for h in heads):
        payload = memoryview(b"")
    else:
        payload = _decompress(codec, memoryview(blob)[_HEAD.size + nparts * _PART.size:])
    shuffle = bool(flags & FLAG_SHUFFLE)
    if dt == ADDR:
        hi, pos = _part_rows(heads[0], payload, 0, rows, _U64, shuffle, idx)
        lo, _ = _part_rows(heads[1], payload, pos, rows, _U64, shuffle, idx)
        halves = np.empty((len(idx), 2), ">u8")
        halves[:, 0] = hi
        halves[:, 1] = lo
        return halves.view(ADDR).reshape(len(idx))
    values, _ = _part_rows(heads[0], payload, 0, rows, np.dtype(f"<u{dt.itemsize}"), shuffle, idx)
    values = values.view(dt)
    if flags & FLAG_DURATION:
        time_end = done.get("time_end")
        if time_end is None:
            time_end = done["time_end"] = _decode_column_rows(blobs, "time_end", rows, idx, done)
        return time_end - values
    return values


def _part_rows(head: tuple, payload, pos: int, rows: int, unsigned: np.dtype, shuffle: bool,
               idx: np.ndarray) -> tuple[np.ndarray, int]:
    """_decode_part(...)[idx] without unpacking the other rows (but DELTA's running sum, unless its
    differences are all equal)."""
    mode, width, vwidth, base, k = head
    base_u = unsigned.type(base & ((1 << (8 * unsigned.itemsize)) - 1))
    if mode == CONST:
        return np.full(len(idx), base_u, unsigned), pos
    if mode == FOR:
        return _take_rows(payload, pos, rows, width, shuffle, idx).astype(unsigned) + base_u, pos + rows * width
    if mode == DICT:
        values, pos = _take(payload, pos, k, vwidth, shuffle)
        index = _take_rows(payload, pos, rows, width, shuffle, idx)
        return (values.astype(unsigned) + base_u)[index], pos + rows * width
    step = _constant_delta(head, payload, pos, rows, shuffle)
    if step is not None:  # e.g. seq in arrival order: one more each row
        return (idx.astype(_U64) * np.uint64(step)).astype(unsigned) + base_u, pos + (rows - 1) * width
    out, pos = _decode_part(head, payload, pos, rows, unsigned, shuffle)
    return out[idx], pos


def _constant_delta(head: tuple, payload, pos: int, rows: int, shuffle: bool) -> int | None:
    """The one difference between consecutive rows of a DELTA part (modulo 2**64), or None when they
    are not all equal: then a row is base + row x difference, with no running sum over the block."""
    width = head[1]
    if rows < 2:
        return None
    z = np.frombuffer(payload, np.uint8, (rows - 1) * width, pos)
    if shuffle or width == 1:  # byte i of every value together: each byte plane must be constant
        planes = z.reshape(width, rows - 1)
        if not (planes.min(axis=1) == planes.max(axis=1)).all():
            return None
        zz = int.from_bytes(planes[:, 0].tobytes(), "little")
    else:
        values = z.view(f"<u{width}")
        if values.min() != values.max():
            return None
        zz = int(values[0])
    return ((zz >> 1) ^ -(zz & 1)) & _MASK64  # zigzag back to the difference, modulo 2**64


def _take_rows(payload, pos: int, count: int, width: int, shuffle: bool, idx: np.ndarray) -> np.ndarray:
    raw = np.frombuffer(payload, np.uint8, count * width, pos)
    if width == 1:
        return raw[idx]
    if shuffle:
        return np.ascontiguousarray(raw.reshape(width, count)[:, idx].T).view(f"<u{width}").reshape(len(idx))
    return raw.view(f"<u{width}")[idx]


def _decode_column(blobs: dict[str, bytes], name: str, rows: int, done: dict) -> np.ndarray:
    dt = BLOCK_DTYPES[name]
    head = _column_head(blobs, name)
    if head is None:
        return np.full(rows, COLUMN_DEFAULTS.get(name, 0), dtype=dt)
    blob, codec, flags, heads = head
    nparts = len(heads)
    payload = _decompress(codec, memoryview(blob)[_HEAD.size + nparts * _PART.size:])
    shuffle = bool(flags & FLAG_SHUFFLE)
    if dt == ADDR:
        hi, pos = _decode_part(heads[0], payload, 0, rows, _U64, shuffle)
        lo, _ = _decode_part(heads[1], payload, pos, rows, _U64, shuffle)
        halves = np.empty((rows, 2), ">u8")
        halves[:, 0] = hi
        halves[:, 1] = lo
        return halves.view(ADDR).reshape(rows)
    unsigned = np.dtype(f"<u{dt.itemsize}")
    values, _ = _decode_part(heads[0], payload, 0, rows, unsigned, shuffle)
    values = values.view(dt)
    if flags & FLAG_DURATION:
        time_end = done.get("time_end")
        if time_end is None:
            time_end = done["time_end"] = _decode_column(blobs, "time_end", rows, done)
        return time_end - values
    return values


# ------------------------------------------------------------------ parts

def _width(max_value: int) -> int:
    return 1 if max_value < 1 << 8 else 2 if max_value < 1 << 16 else 4 if max_value < 1 << 32 else 8


def _encode_part(col: np.ndarray, signed: bool, opt: Options, dictionary: bool) -> tuple:
    """-> (mode, width, value width, base, dict size, [narrow arrays to store])."""
    n = len(col)
    bits = col.astype(np.int64).view(_U64) if signed else col.astype(_U64, copy=False)
    lo, hi = int(col.min()), int(col.max())
    if lo == hi:
        return CONST, 0, 0, lo & _MASK64, 0, []
    if not opt.narrow:
        width = col.dtype.itemsize
        return FOR, width, 0, 0, 0, [bits.astype(f"<u{width}")]
    base = lo & _MASK64
    width = _width(hi - lo)
    best = (n * width, FOR)
    zigzag = None
    if opt.delta and width > 1 and n > 1:
        d = np.diff(bits)
        zigzag = (d << np.uint64(1)) ^ ((d >> np.uint64(63)) * np.uint64(_MASK64))
        dwidth = _width(int(zigzag.max()))
        if dwidth < width:
            best = ((n - 1) * dwidth, DELTA)
    if dictionary and width > 1:
        values, index = np.unique(bits, return_inverse=True)
        iwidth = _width(len(values) - 1)
        if len(values) * width + n * iwidth < best[0] * 0.75:
            offsets = (values - np.uint64(base)).astype(f"<u{width}")
            return DICT, iwidth, width, base, len(values), [offsets, index.astype(f"<u{iwidth}")]
    if best[1] == DELTA:
        return DELTA, dwidth, 0, int(bits[0]), 0, [zigzag.astype(f"<u{dwidth}")]
    return FOR, width, 0, base, 0, [(bits - np.uint64(base)).astype(f"<u{width}")]


def _decode_part(head: tuple, payload: memoryview, pos: int, rows: int, unsigned: np.dtype,
                 shuffle: bool) -> tuple[np.ndarray, int]:
    mode, width, vwidth, base, k = head
    base_u = unsigned.type(base & ((1 << (8 * unsigned.itemsize)) - 1))
    if mode == CONST:
        return np.full(rows, base_u, unsigned), pos
    if mode == FOR:
        offsets, pos = _take(payload, pos, rows, width, shuffle)
        return offsets.astype(unsigned) + base_u, pos
    if mode == DELTA:
        step = _constant_delta(head, payload, pos, rows, shuffle)
        if step is not None:
            return (np.arange(rows, dtype=_U64) * np.uint64(step)).astype(unsigned) + base_u, pos + (rows - 1) * width
        z, pos = _take(payload, pos, rows - 1, width, shuffle)
        z = z.astype(_U64)
        d = ((z >> np.uint64(1)) ^ ((z & np.uint64(1)) * np.uint64(_MASK64))).astype(unsigned)
        out = np.empty(rows, unsigned)
        out[0] = base_u
        np.cumsum(d, out=out[1:])
        out[1:] += base_u
        return out, pos
    if mode == DICT:
        values, pos = _take(payload, pos, k, vwidth, shuffle)
        index, pos = _take(payload, pos, rows, width, shuffle)
        return (values.astype(unsigned) + base_u)[index], pos
    raise ValueError(f"unknown block part mode {mode}")


def _take(payload: memoryview, pos: int, count: int, width: int, shuffle: bool) -> tuple[np.ndarray, int]:
    size = count * width
    raw = np.frombuffer(payload, np.uint8, size, pos)
    if shuffle and width > 1:
        raw = raw.reshape(width, count).T.copy()
    return raw.view(f"<u{width}").reshape(count), pos + size


# ------------------------------------------------------------------ blobs and compression

def _pack(parts: list[tuple], opt: Options, flags: int) -> bytes:
    shuffle = opt.shuffle
    heads, arrays = [], []
    for mode, width, vwidth, base, k, arrs in parts:
        heads.append(_PART.pack(mode, width, vwidth, base, k))
        for a in arrs:
            if shuffle and a.dtype.itemsize > 1:
                a = a.view(np.uint8).reshape(len(a), a.dtype.itemsize).T
            arrays.append(np.ascontiguousarray(a).tobytes())
    payload = b"".join(arrays)
    codec = {"zstd": CODEC_ZSTD, "lz4": CODEC_LZ4, "raw": CODEC_RAW}[opt.codec]
    if len(payload) < _MIN_COMPRESS:
        codec = CODEC_RAW
    body = _compress(codec, payload, opt.level)
    if len(body) >= len(payload):
        codec, body = CODEC_RAW, payload
    flags |= FLAG_SHUFFLE if shuffle else 0
    return _HEAD.pack(FORMAT, codec, flags, len(parts)) + b"".join(heads) + body


_local = threading.local()   # zstandard (de)compressors are not thread-safe: one set per thread


def _compress(codec: int, data: bytes, level: int) -> bytes:
    if codec == CODEC_RAW:
        return data
    if codec == CODEC_LZ4:
        import lz4.block
        return lz4.block.compress(data, store_size=True)
    cache = _local.__dict__.setdefault("compressors", {})
    cctx = cache.get(level)
    if cctx is None:
        import zstandard
        cctx = cache[level] = zstandard.ZstdCompressor(level=level)
    return cctx.compress(data)


def _decompress(codec: int, body: memoryview):
    if codec == CODEC_RAW:
        return body
    if codec == CODEC_LZ4:
        import lz4.block
        return lz4.block.decompress(body)
    dctx = getattr(_local, "decompressor", None)
    if dctx is None:
        import zstandard
        dctx = _local.decompressor = zstandard.ZstdDecompressor()
    return dctx.decompress(body)
