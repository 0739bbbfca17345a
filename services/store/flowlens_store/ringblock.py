"""The ring's segments as a query reads them: an encoded block with what lets a query skip it
(statistics and a bitmap of hashed host addresses), a segment's rows as a mapping of columns decoded
when first read, and the rows several segments kept as one mapping. Used by ring.Ring only.
"""
from __future__ import annotations

from typing import Iterator, Mapping

import numpy as np

from flowmodel.schema import FLOW_COLUMNS

from .blocks import Options, blobs_needed, decode_block, decode_rows, encode_columns
from .blockstats import block_may_match
from .planner import ADDR_FILTERS
from .ringcache import DecodedColumns

SEQ_DTYPE = np.dtype("<i8")
DTYPES: dict[str, np.dtype] = {**{name: dt for name, (dt, _d) in FLOW_COLUMNS.items()}, "seq": SEQ_DTYPE}
NAMES = tuple(DTYPES)
# the warm tier's codec without address dictionaries (21 bytes a flow and 4.7 ms per 32,768 flows on
# bench.flowgen's site, against 19 bytes and 12 ms with them: the ring encodes on the receive thread)
# and with lz4 instead of zstd: a page's rows unpack every column of a block, 0.36 instead of 0.80 ms
# per block, for 4.7 bytes a flow more (the history bench's flows: 24.7 instead of 20 with the host
# bitmap; 4.6 instead of 17 ms of encoding per block at load 2)
RING_OPTIONS = Options(dict_addresses=False, codec="lz4")
HOST_BITS_PER_ROW = 16  # the host bitmap of a block: 64 KiB per 32,768 rows, 4-12 % false positives
HOST_PROBE_MAX = 16     # a CIDR of at most this many addresses probes the host bitmap address by address
_U64 = np.dtype("<u8")
_MUL1, _MUL2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9)


class RingBlock:
    """One encoded segment: its blobs, row count, and what lets a query skip it without decoding:
    ``stats`` as blockstats.block_may_match reads them (time, address and port ranges, protocols,
    exporters) and a bitmap of hashed source and destination addresses for host filters."""
    __slots__ = ("blobs", "rows", "te_min", "te_max", "stats", "hosts", "host_shift", "nbytes")

    def __init__(self, cols: dict[str, np.ndarray]):
        self.blobs = encode_columns(cols, RING_OPTIONS)
        self.rows = n = len(cols["seq"])
        te = cols["time_end"]
        self.te_min, self.te_max = int(te.min()), int(te.max())
        stats = {"time_end_min": self.te_min, "time_end_max": self.te_max, "addr_bloom": None}
        for name in ("src_port", "dst_port"):
            stats[f"{name}_min"], stats[f"{name}_max"] = int(cols[name].min()), int(cols[name].max())
        present = np.zeros(256, bool)
        present[cols["protocol"]] = True
        stats["protocols"] = np.packbits(present, bitorder="little").tobytes()
        halves = {}
        for name in ("src_addr", "dst_addr", "exporter"):
            hi, lo = halves[name] = _halves(cols[name])
            stats[f"{name}_min"], stats[f"{name}_max"] = _min_max(hi, lo)
        one = stats["exporter_min"] == stats["exporter_max"]  # the usual block: one exporter, else a range
        stats["exporters"] = [stats["exporter_min"]] if one else None
        self.stats = stats
        bits_log2 = max(6, int(np.ceil(np.log2(n * HOST_BITS_PER_ROW))))
        self.host_shift = np.uint64(64 - bits_log2)
        present = np.zeros(1 << bits_log2, bool)
        for name in ("src_addr", "dst_addr"):
            present[_host_hash(*halves[name]) >> self.host_shift] = True
        self.hosts = np.packbits(present, bitorder="little").tobytes()
        self.nbytes = sum(len(b) for b in self.blobs.values()) + len(self.hosts)

    def may_match(self, f: dict) -> bool:
        """False only when no row of the block can match the planner's filter dict ``f``."""
        if not block_may_match(self.stats, f):
            return False
        for key, columns in ADDR_FILTERS.items():
            if key in f and set(columns) <= {"src_addr", "dst_addr"}:
                first, last = (int.from_bytes(bytes(b), "big") for b in f[key])
                if last - first < HOST_PROBE_MAX:
                    probes = np.array([divmod(a, 1 << 64) for a in range(first, last + 1)], _U64).reshape(-1, 2)
                    pos = _host_hash(probes[:, 0], probes[:, 1]) >> self.host_shift
                    table = np.frombuffer(self.hosts, np.uint8)
                    if not ((table[pos >> np.uint64(3)] >> (pos & np.uint64(7)).astype(np.uint8)) & 1).any():
                        return False
        return True


def _halves(col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A V16 address column as its big-endian (high, low) words."""
    h = np.ascontiguousarray(col).view(">u8").reshape(len(col), 2)
    return h[:, 0].astype(_U64), h[:, 1].astype(_U64)


def _min_max(hi: np.ndarray, lo: np.ndarray) -> tuple[bytes, bytes]:
    hmin, hmax = hi.min(), hi.max()
    return (int(hmin).to_bytes(8, "big") + int(lo[hi == hmin].min()).to_bytes(8, "big"),
            int(hmax).to_bytes(8, "big") + int(lo[hi == hmax].max()).to_bytes(8, "big"))


def _host_hash(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each address whose top bits index the host bitmap (multiply-xorshift)."""
    x = (lo ^ (hi * _MUL1)) * _MUL2
    return (x ^ (x >> np.uint64(29))) * _MUL1


class SegmentColumns(Mapping):
    """A segment's rows from ``skip`` on as a read-only mapping of columns, each decoded when first
    read (and kept until the mapping is dropped); ``touched`` names the columns read so far."""

    def __init__(self, block: RingBlock | None, plain: dict[str, np.ndarray] | None, skip: int, rows: int,
                 decoded: DecodedColumns | None = None):
        self._block, self._plain, self._skip, self.rows = block, plain, skip, rows
        self._decoded = decoded
        if block is not None:  # the whole block's range (evicted rows too): wide, never too narrow
            self.te_lo, self.te_hi = block.te_min, block.te_max
        else:
            te = plain["time_end"][:rows]
            self.te_lo, self.te_hi = (int(te.min()), int(te.max())) if rows else (0, -1)
        self._cache: dict[str, np.ndarray] = {}
        self.touched: set[str] = set()

    def __getitem__(self, name: str) -> np.ndarray:
        col = self._cache.get(name)
        if col is None:
            if name not in DTYPES:
                raise KeyError(name)
            if self._plain is not None:
                col = self._plain[name][self._skip:self._skip + self.rows]
            else:
                whole = self._decoded.get(self._block, name) if self._decoded is not None else None
                if whole is None:
                    whole = decode_block(self._block.blobs, (name,), self._block.rows)[name]
                    if self._decoded is not None:
                        self._decoded.put(self._block, name, whole)
                col = whole[self._skip:]
            self._cache[name] = col
        self.touched.add(name)
        return col

    def __iter__(self) -> Iterator[str]:
        return iter(NAMES)

    def __len__(self) -> int:
        return len(NAMES)

    def rows_at(self, names: list[str], local: np.ndarray) -> dict[str, np.ndarray]:
        """The named columns at the rows ``local`` only: columns decoded already are indexed, the
        rest unpacked at those rows alone (blocks.decode_rows), not decoded whole for a few rows."""
        out = {name: self._cache[name][local] for name in names if name in self._cache}
        rest = [name for name in names if name not in out]
        if rest and self._plain is not None:
            out.update({name: self._plain[name][self._skip + local] for name in rest})
        elif rest:
            at = local + self._skip
            known = {}
            for name in blobs_needed(rest) - set(rest):  # time_end, which time_start is stored against:
                whole = self._decoded.get(self._block, name) if self._decoded is not None else None
                if whole is not None:                     # decoded for the filter, not again for its rows
                    known[name] = whole[at]
            got = decode_rows(self._block.blobs, rest, self._block.rows, at, known)
            out.update({name: got[name] for name in rest})
        return out

    def release(self) -> None:
        """Drop the decoded columns (the mapping decodes again if read)."""
        self._cache.clear()


class GatheredRows(Mapping):
    """The rows each segment kept, as one mapping: columns gathered already are given as they are,
    others gathered from the segments when read."""

    def __init__(self, kept: list[tuple[SegmentColumns, np.ndarray]], have: dict[str, np.ndarray]):
        self._kept = kept
        self._have = have
        self.rows = sum(len(idx) for _seg, idx in kept)

    def __getitem__(self, name: str) -> np.ndarray:
        col = self._have.get(name)
        if col is None:
            if name not in DTYPES:
                raise KeyError(name)
            parts = []
            for seg, idx in self._kept:
                parts.append(seg[name][idx])
                seg.release()
            col = self._have[name] = np.concatenate(parts)
        return col

    def __iter__(self) -> Iterator[str]:
        return iter(NAMES)

    def __len__(self) -> int:
        return len(NAMES)

    def take(self, rows: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        """``names`` of the gathered rows at positions ``rows`` (in that order), decoding only the
        segments that hold one of them."""
        out = {name: self._have[name][rows] for name in names if name in self._have}
        missing = [name for name in names if name not in out]
        if missing:
            bounds = np.cumsum([0] + [len(idx) for _seg, idx in self._kept])
            which = np.searchsorted(bounds, rows, side="right") - 1
            for name in missing:
                out[name] = np.empty(len(rows), DTYPES[name])
            for i in np.unique(which).tolist():
                seg, idx = self._kept[i]
                at = np.flatnonzero(which == i)
                got = seg.rows_at(missing, idx[rows[at] - bounds[i]])
                for name in missing:
                    out[name][at] = got[name]
                seg.release()
        return {name: out[name] for name in names}


def concat_parts(parts: list[dict[str, np.ndarray]], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    if not parts:
        return {name: np.zeros(0, DTYPES[name]) for name in names}
    if len(parts) == 1:
        return parts[0]
    # column by column, each one's parts dropped once joined: the peak is the result and one column's
    # parts, not the result twice (600,000 rows of eight columns: 79 -> 47 MiB)
    return {name: np.concatenate([p.pop(name) for p in parts]) for name in names}
