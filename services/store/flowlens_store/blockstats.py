"""Per-block statistics of the warm tier and the test that lets a query skip a block.

The stats are plain ints, bytes, a list of bytes or None, so they go through msgpack or into SQL
columns as they are. Address ranges prune a CIDR query; a host query needs the Bloom filter over
the block's source and destination addresses, as a block's hosts span the whole address range.
"""
from __future__ import annotations

import math
import struct

import numpy as np

from .planner import ADDR_FILTERS, PORT_FILTERS

BLOOM_HASHES = 7
BLOOM_BITS_PER_ADDRESS = 9.6   # ~1 % false positives with 7 hashes
BLOOM_PROBE_MAX = 16           # a CIDR of at most this many addresses probes the filter address by address
MAX_EXPORTERS = 4              # a block lists its exporters when it has at most this many
_U64 = np.dtype("<u8")
_C1, _C2, _C3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def block_stats(cols: dict) -> dict:
    """Stats of one block's columns (BLOCK_DTYPES names)."""
    te, seq = cols["time_end"], cols["seq"]
    stats = {"rows": len(te), "time_end_min": int(te.min()), "time_end_max": int(te.max()),
             "time_start_min": int(cols["time_start"].min()), "seq_min": int(seq.min()), "seq_max": int(seq.max())}
    halves = {}
    for name in ("src_addr", "dst_addr", "exporter"):
        hi, lo = _halves(cols[name])
        halves[name] = hi, lo
        stats[f"{name}_min"], stats[f"{name}_max"] = _addr_min_max(hi, lo)
    for name in ("src_port", "dst_port"):
        stats[f"{name}_min"], stats[f"{name}_max"] = int(cols[name].min()), int(cols[name].max())
    present = np.zeros(256, bool)
    present[cols["protocol"]] = True
    stats["protocols"] = np.packbits(present, bitorder="little").tobytes()
    exporters = np.unique(cols["exporter"])
    stats["exporters"] = [bytes(e) for e in exporters] if len(exporters) <= MAX_EXPORTERS else None
    keys = np.unique(np.concatenate([_hash(*halves["src_addr"]), _hash(*halves["dst_addr"])]))
    stats["addr_bloom"] = _bloom(keys)
    return stats


def block_may_match(stats: dict, f: dict) -> bool:
    """False only when no row of the block can match the planner's normalised filter dict ``f``
    (the rows ``planner.ring_mask`` would keep)."""
    if "since" in f and stats["time_end_max"] < f["since"]:
        return False
    if "until" in f and stats["time_end_min"] >= f["until"]:
        return False
    for key, columns in ADDR_FILTERS.items():
        if key in f and not stats_may_hold_addr(stats, *f[key], columns=columns):
            return False
    for key, columns in PORT_FILTERS.items():
        if key in f and not any(stats[f"{c}_min"] <= f[key] <= stats[f"{c}_max"] for c in columns):
            return False
    if "protocol" in f:
        p = int(f["protocol"])
        if not 0 <= p < 256 or not stats["protocols"][p >> 3] >> (p & 7) & 1:
            return False
    return True


def stats_may_hold_addr(stats: dict, lo: bytes, hi: bytes, columns=("src_addr", "dst_addr")) -> bool:
    """False only when no address of ``columns`` lies in [lo, hi]. Ranges use the columns' min/max
    (exporters: their list when short); a host or a CIDR of at most BLOOM_PROBE_MAX addresses also
    probes the Bloom filter over src and dst addresses."""
    lo, hi = bytes(lo), bytes(hi)
    if tuple(columns) == ("exporter",) and stats.get("exporters") is not None:
        return any(lo <= e <= hi for e in stats["exporters"])
    if not any(stats[f"{c}_min"] <= hi and lo <= stats[f"{c}_max"] for c in columns):
        return False
    bloom = stats.get("addr_bloom")
    if bloom is None or not set(columns) <= {"src_addr", "dst_addr"}:
        return True
    first, last = int.from_bytes(lo, "big"), int.from_bytes(hi, "big")
    if last - first >= BLOOM_PROBE_MAX:
        return True
    probes = np.array([divmod(a, 1 << 64) for a in range(first, last + 1)], dtype=_U64).reshape(-1, 2)
    return bool(len(probes)) and bool(_bloom_has(bloom, _hash(probes[:, 0], probes[:, 1])).any())


# ------------------------------------------------------------------ helpers

def _halves(col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = np.ascontiguousarray(col).view(">u8").reshape(len(col), 2)
    return h[:, 0].astype(_U64), h[:, 1].astype(_U64)


def _addr_min_max(hi: np.ndarray, lo: np.ndarray) -> tuple[bytes, bytes]:
    hmin, hmax = hi.min(), hi.max()
    return (struct.pack(">QQ", int(hmin), int(lo[hi == hmin].min())),
            struct.pack(">QQ", int(hmax), int(lo[hi == hmax].max())))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit moves about half the output bits."""
    x = x ^ (x >> np.uint64(30))
    x = x * _C2
    x = x ^ (x >> np.uint64(27))
    x = x * _C3
    return x ^ (x >> np.uint64(31))


def _hash(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    return _mix(lo ^ _mix(hi + _C1))


def _positions(keys: np.ndarray, bits: int) -> np.ndarray:
    h1 = keys >> np.uint64(32)
    h2 = (keys & np.uint64(0xFFFFFFFF)) | np.uint64(1)
    i = np.arange(BLOOM_HASHES, dtype=_U64)[:, None]
    return (h1 + i * h2) % np.uint64(bits)   # (hashes, keys)


def _bloom(keys: np.ndarray) -> bytes:
    bits = max(64, math.ceil(len(keys) * BLOOM_BITS_PER_ADDRESS / 64) * 64)
    present = np.zeros(bits, bool)
    present[_positions(keys, bits).ravel()] = True
    return np.packbits(present, bitorder="little").tobytes()


def _bloom_has(bloom: bytes, keys: np.ndarray) -> np.ndarray:
    table = np.frombuffer(bloom, np.uint8)
    pos = _positions(keys, len(table) * 8)
    return ((table[pos >> np.uint64(3)] >> (pos & np.uint64(7)).astype(np.uint8)) & 1).all(axis=0).astype(bool)
