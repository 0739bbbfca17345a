"""The flows op in order of size: the largest flows of a window by bytes or packets, keyset-paginated
by (value, seq), from the ring (time_end above its evicted bound), SQLite rows and sealed blocks
(the rest), as flowpages.py splits them.

There is no index by size: each source keeps only the ``want`` best rows beyond the cursor as it
reads (a ring segment, a partition's LIMITed sort, a block's probe columns), so memory is bounded by
the page and the work by the window's rows and storage.query_time_limit. Values are compared as
SQLite stores them, capped at 2**63 - 1.
"""
from __future__ import annotations

import numpy as np

from . import blockread as B
from . import planner as P
from .rowcodec import SQL_COLUMNS, rows_to_columns

INT64_MAX = (1 << 63) - 1


def values(cols, order: str) -> np.ndarray:
    return np.minimum(cols[order], np.uint64(INT64_MAX)).astype(np.int64)


def _beyond(v: np.ndarray, seq: np.ndarray, cursor, older: bool) -> np.ndarray:
    """Rows past the (value, seq) cursor: smaller going on (``older``), larger going back."""
    cv, cs = cursor
    return ((v < cv) | ((v == cv) & (seq < cs))) if older else ((v > cv) | ((v == cv) & (seq > cs)))


def _best(v: np.ndarray, seq: np.ndarray, want: int, older: bool) -> np.ndarray:
    """Indexes of the ``want`` best rows in page order: largest first (``older``), else smallest."""
    order = np.lexsort((seq, v))
    return (order[::-1] if older else order)[:want]


def page(engine, f: dict, order: str, cursor, older: bool, want: int) -> tuple[dict, list[str]]:
    """Up to ``want`` rows beyond the cursor, largest first when ``older`` (else smallest first), and
    the sources that gave them."""
    hint = engine.ring.evicted_max_time_end
    split = [-(1 << 62) if hint is None else hint]

    def mask(cols):
        m = P.ring_mask(cols, f)
        if engine.ring.evicted_max_time_end is not None:
            split[0] = engine.ring.evicted_max_time_end
            m &= cols["time_end"] > split[0]
        if cursor is not None:
            m &= _beyond(values(cols, order), cols["seq"], cursor, older)
        return m

    def pick(cols, idx):
        return idx[_best(values(cols, order)[idx], cols["seq"][idx], want, older)]

    parts, used = [], []
    if f.get("until", 1 << 62) > split[0] + 1:
        ring = engine.ring.select(mask, pick, filters=f)
        if len(ring["seq"]):
            parts.append(ring)
            used.append("ring")
    if f.get("since", -(1 << 62)) <= split[0]:
        fs = dict(f, until=min(f.get("until", 1 << 62), split[0] + 1))
        sql = engine._read(lambda db: _sql_page(engine, db, fs, order, cursor, older, want))
        if len(sql["seq"]) or not used:
            parts.append(sql)
            used.append("sqlite")
    if not parts:
        return rows_to_columns([]), ["sqlite"]
    both = {k: np.concatenate([p[k].astype(parts[0][k].dtype, copy=False) for p in parts]) for k in parts[0]}
    keep = _best(values(both, order), both["seq"], want, older)
    return {k: v[keep] for k, v in both.items()}, used


def _sql_page(engine, db, f: dict, order: str, cursor, older: bool, want: int) -> dict:
    rows: list[tuple] = []
    sort = "DESC" if older else "ASC"
    for name, _s, _e, sealed in engine._partitions(db, f):
        where, params = P.sql_where(f, addr_index=False)
        if cursor is not None:
            op = "<" if older else ">"
            where += f" AND ({order}, seq) {op} (?, ?)"
            params = params + list(cursor)
        for w, p in engine._hot_where(db, name, sealed, f, where, params):
            rows += db.execute(f"SELECT {', '.join(SQL_COLUMNS)} FROM {name} WHERE {w} ORDER BY {order} {sort}, "
                               f"seq {sort} LIMIT ?", p + [want]).fetchall()
    cols = rows_to_columns(rows)
    best = {k: v[_best(values(cols, order), cols["seq"], want, older)] for k, v in cols.items()}
    for block in B.blocks_for(db, f, engine.blocks):
        engine._check()
        probe = B.read_block(db, block, B.filter_columns(f) | {"seq", order}, engine.blocks)
        v = values(probe, order)
        m = P.ring_mask(probe, f)
        if cursor is not None:
            m &= _beyond(v, probe["seq"], cursor, older)
        idx = np.flatnonzero(m)
        if not len(idx):
            continue
        idx = idx[_best(v[idx], probe["seq"][idx], want, older)]
        if len(best["seq"]) >= want:  # only rows that beat the want-th kept so far are read whole
            bv, bs = int(values(best, order)[-1]), int(best["seq"][-1])
            idx = idx[_beyond(v[idx], probe["seq"][idx], (bv, bs), not older)]
            if not len(idx):
                continue
        cols = B.read_block(db, block, B.ALL_COLUMNS, engine.blocks, have=probe)
        got = {k: cols[k][idx] for k in B.ALL_COLUMNS}
        best = {k: np.concatenate([best[k].astype(got[k].dtype, copy=False), got[k]]) for k in got}
        keep = _best(values(best, order), best["seq"], want, older)
        best = {k: v[keep] for k, v in best.items()}
    return best
