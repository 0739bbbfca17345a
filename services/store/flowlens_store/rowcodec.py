"""The row shape of a partition's recent flows (layout.py): rows <-> numpy columns.

A row is ``seq`` (INTEGER PRIMARY KEY: inserts append), the columns the row-shaped queries filter
and sum on, and ``rest``: the remaining schema columns packed in one BLOB (REST_DTYPE), so an insert
binds 11 values instead of 27.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from flowmodel.schema import FLOW_COLUMNS

SQL_COLUMNS = ("seq", "time_end", "src_addr", "dst_addr", "src_port", "dst_port", "protocol", "bytes",
               "packets", "exporter", "rest")
REST_COLUMNS = tuple(c for c in FLOW_COLUMNS if c not in SQL_COLUMNS)
REST_DTYPE = np.dtype([(c, FLOW_COLUMNS[c][0]) for c in REST_COLUMNS])  # packed, no padding
REST_VOID = np.dtype((np.void, REST_DTYPE.itemsize))
# a scaled GROUP BY of row tables groups by the packed 1-in-N rate too (few distinct values) and
# multiplies each group's sums by it: RATE_SQL selects it, packed_rate reads it (unknown, 0, counts as 1)
RATE_SQL = f"substr(rest, {REST_DTYPE.fields['sampling_rate'][1] + 1}, 4)"


def packed_rate(raw: bytes) -> int:
    return max(int.from_bytes(raw, "little"), 1)
INT64_MAX = (1 << 63) - 1
PARTITION_DDL = ("CREATE TABLE {table} (seq INTEGER PRIMARY KEY, time_end INTEGER NOT NULL, "
                 "src_addr BLOB NOT NULL, dst_addr BLOB NOT NULL, src_port INTEGER NOT NULL, "
                 "dst_port INTEGER NOT NULL, protocol INTEGER NOT NULL, bytes INTEGER NOT NULL, "
                 "packets INTEGER NOT NULL, exporter BLOB NOT NULL, rest BLOB NOT NULL)")

INT_COLUMNS = ("seq", "time_end", "src_port", "dst_port", "protocol", "bytes", "packets")
ADDR_COLUMNS = ("src_addr", "dst_addr", "exporter")
_POW10 = 10 ** np.arange(18, -1, -1, dtype=np.uint64)  # 1e18 .. 1


_POW10_32 = 10 ** np.arange(9, -1, -1, dtype=np.uint32)  # 1e9 .. 1


def _digits(v: np.ndarray) -> tuple[np.ndarray, int]:
    """Non-negative uint64 column as fixed-width ASCII decimal, (n, width) uint8; width fits the max.
    Columns below 2**32 (ports, counters, times relative to the batch) divide in uint32, about
    three times faster than uint64 division."""
    top = int(v.max()) if len(v) else 0
    width = len(str(top))
    if top < 1 << 32:
        d = (v.astype(np.uint32)[:, None] // _POW10_32[10 - width:][None, :]) % np.uint32(10)
    else:
        d = (v[:, None] // _POW10[19 - width:][None, :]) % np.uint64(10)
    return d.astype(np.uint8) + np.uint8(48), width


def bulk_insert(cols: dict[str, np.ndarray]) -> tuple[str, dict]:
    """One INSERT ... SELECT that SQLite runs in C over the whole batch, and its four parameters.

    executemany binds 11 values per row under the GIL (about 3 us a row, more than SQLite's own work).
    Instead the batch is bound as three BLOBs and SQLite slices them per row with substr():
    ``i``: the integer columns as fixed-width ASCII decimals (seq and time_end relative to the batch
    minimum), read back with CAST; a run of consecutive seq values is not encoded at all (``k + first``); ``a``: src, dst, exporter (48 bytes a row); ``r``: REST_DTYPE
    records. Rows come from ``temp.nums`` (0..n-1, see WarmWriter._ensure_nums). substr on a BLOB is
    O(1); on TEXT it would scan from the start, so ``i`` must stay a BLOB. The statement text depends
    on the column widths, so SQLite's statement cache sees a handful of variants."""
    n = len(cols["time_end"])
    fields, pieces, width = {}, [], 0
    for c in INT_COLUMNS:
        v = cols[c]
        if c == "seq" and n and int(v[-1]) - int(v[0]) == n - 1 and bool((np.diff(v) == 1).all()):
            fields[c] = (None, 0, int(v[0]))  # consecutive (the usual case): seq is k + first, no digits
            continue
        if c in ("seq", "time_end"):
            base = int(v.min())
            u = (v.astype(np.int64) - base).astype(np.uint64)
        else:
            base = 0
            u = np.minimum(v.astype(np.uint64), np.uint64(INT64_MAX))
        d, w = _digits(u)
        pieces.append(d)
        fields[c] = (width, w, base)
        width += w
    ints = np.ascontiguousarray(np.concatenate(pieces, axis=1)).tobytes()
    addrs = np.empty((n, 3), "V16")
    for j, c in enumerate(ADDR_COLUMNS):
        addrs[:, j] = cols[c]
    rest = np.empty(n, REST_DTYPE)
    for c in REST_COLUMNS:
        rest[c] = cols[c]
    rw = REST_DTYPE.itemsize
    exprs = []
    for c in SQL_COLUMNS:
        if c in fields and fields[c][0] is None:
            exprs.append(f"k + {fields[c][2]}")
        elif c in fields:
            off, w, base = fields[c]
            e = f"CAST(substr(:i, k * {width} + {off + 1}, {w}) AS INTEGER)"
            exprs.append(f"{e} + {base}" if base else e)
        elif c in ADDR_COLUMNS:
            exprs.append(f"substr(:a, k * 48 + {16 * ADDR_COLUMNS.index(c) + 1}, 16)")
        else:
            exprs.append(f"substr(:r, k * {rw} + 1, {rw})")
    sql = f"SELECT {', '.join(exprs)} FROM temp.nums WHERE k < :n ORDER BY k"
    return sql, {"i": ints, "a": addrs.tobytes(), "r": rest.tobytes(), "n": n}


def flow_rows(cols: dict[str, np.ndarray]) -> Iterable[tuple]:
    """Row tuples for executemany, built column-wise (one tolist per column). Kept for reference
    and tests; the writer uses bulk_insert."""
    n = len(cols["time_end"])
    rest = np.empty(n, REST_DTYPE)
    for c in REST_COLUMNS:
        rest[c] = cols[c]
    lists = []
    for c in SQL_COLUMNS:
        if c == "rest":
            lists.append(rest.view(REST_VOID).tolist())
        elif c in ("bytes", "packets"):
            lists.append(np.minimum(cols[c], INT64_MAX).astype(np.int64).tolist())
        else:
            lists.append(cols[c].tolist())
    return zip(*lists)


def rows_to_columns(rows: list[tuple]) -> dict[str, np.ndarray]:
    """SELECT <SQL_COLUMNS> rows back into schema columns plus seq."""
    n = len(rows)
    cols: dict[str, np.ndarray] = {}
    if n == 0:
        cols = {name: np.zeros(0, dt) for name, (dt, _d) in FLOW_COLUMNS.items()}
        cols["seq"] = np.zeros(0, np.int64)
        return cols
    t = list(zip(*rows))
    for i, c in enumerate(SQL_COLUMNS):
        if c == "rest":
            rest = np.frombuffer(b"".join(t[i]), REST_DTYPE)
            for rc in REST_COLUMNS:
                cols[rc] = np.ascontiguousarray(rest[rc])
        elif c == "seq":
            cols[c] = np.array(t[i], np.int64)
        elif FLOW_COLUMNS[c][0].kind == "V":
            cols[c] = np.frombuffer(b"".join(t[i]), FLOW_COLUMNS[c][0])
        else:
            cols[c] = np.array(t[i], np.int64).astype(FLOW_COLUMNS[c][0])
    return cols

