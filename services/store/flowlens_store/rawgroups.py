"""Raw reads of what the rollups do not cover, as grouped columns: a window's part the ring still
holds is grouped from the ring, the older rest from SQLite (row-shaped flows' GROUP BY and sealed
blocks summed in numpy); keys as the rollups' (n, w) uint64 words. Used by histops.
"""
from __future__ import annotations

import numpy as np

from flowmodel.schema import rate_factor

from . import blockread as B
from . import blockruns as BR
from . import blocksums as BS
from . import planner as P
from .rowcodec import RATE_SQL

ADDR_DIMS = ("src", "dst", "exporter", "self", "dst_prefix")
TOP_COLUMNS = {"port": ("src_port", "dst_port"), "src": ("src_addr",), "dst": ("dst_addr",)}
KEPT_COLUMNS = tuple(n for keys in BS.OVERVIEW_KEYS.values() for n in keys)  # what the kept groups group by


def raw_parts(engine, f: dict, lo: int, hi: int) -> list[tuple[dict, bool]]:
    """The raw range [lo, hi) of ``f`` as (filters, from the ring) parts: the ring answers what it still
    holds whole (time_end above its evicted bound), SQLite only the older rest, so a busy hot hour's
    newest flows are not read back from SQLite. Membership is by time_end, so no flow is in both.
    A caller re-checks ``ring.covers`` after reading a ring part: eviction only moves forward, and
    a part it overtook is read from SQLite instead."""
    if engine.ring.covers(lo):
        return [({**f, "since": lo, "until": hi}, True)]
    bound = engine.ring.evicted_max_time_end
    if bound is None or bound + 1 >= hi:
        return [({**f, "since": lo, "until": hi}, False)]
    return [({**f, "since": lo, "until": bound + 1}, False), ({**f, "since": bound + 1, "until": hi}, True)]



def ring_groups(engine, f: dict, by: str, scaled: bool) -> tuple[np.ndarray, list[np.ndarray]]:
    """(key words (g, w), [bytes, packets, flows]) of the ring's flows of ``f``, grouped a segment at a
    time (Ring.scan): memory follows the distinct keys, not the rows (a full ring's key and counter
    columns selected at once were 50-60 MB of the store's peak)."""
    if scaled and by in BS.OVERVIEW_KEYS and set(f) <= {"since", "until"} and engine.ring.block_sums is not None:
        return _ring_overview_groups(engine, f, by)
    return _grouped(engine.ring.scan(lambda c: P.ring_mask(c, f), filters=f, columns=_columns(by, scaled)), by, scaled)


def _ring_overview_groups(engine, f: dict, by: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """A dashboard's scaled top of a plain time window from the ring: each whole block's groups are
    the ones the overview keeps (blocksums.py; kept here if the overview has not yet), merged instead
    of grouped from the block's rows again; the rest (the open segment, a block cut by the window)
    from rows."""
    need = TOP_COLUMNS.get(by, (by,))
    rows_acc, compact = B.GroupSums(need), B.GroupSums(need)
    for block, cols, idx in engine.ring.scan_parts(lambda c: P.ring_mask(c, f), filters=f):
        rows = (lambda name: cols[name]) if idx is None else (lambda name: cols[name][idx])

        def keyed(names=KEPT_COLUMNS):
            rate = rate_factor(rows("sampling_rate"))
            return {"bytes": rows("bytes") * rate, "packets": rows("packets") * rate, **{n: rows(n) for n in names}}
        kept = BS.kept_groups(engine.ring, block, cols, idx, keyed)
        if kept is None:  # grouped by this top's key only (a part cut by the window is not kept)
            cols_k = keyed(need)
            rows_acc.add({name: cols_k[name] for name in need}, cols_k["bytes"], cols_k["packets"])
        else:
            BS.add_kept(compact, rows_acc, kept[by])
    keys, b, p, n = BS.finish_kept(compact, rows_acc).result()
    if not len(b):
        return np.zeros((0, 2 if by in ADDR_DIMS else 1), np.uint64), [b, p, n]
    return key_words_of(by, keys[need[0]]), [b, p, n]


def sql_groups(engine, db, f: dict, by: str, scaled: bool) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """SQLite's groups of ``f`` as (key words, [bytes, packets, flows]) parts: the row-shaped flows'
    GROUP BY (topops' query) and the sealed blocks summed in numpy, kept as columns: the same sums as
    ``engine._sql_top`` without a Python dict entry per block key (65 k destinations: ~40 ms a top)."""
    from .topops import TOP_GROUP, TOP_SQL

    rows: dict = {}
    rate = f", {RATE_SQL} AS rate" if scaled else ""
    for name, _s, _e, sealed in engine._partitions(db, f):
        where, params = P.sql_where(f, addr_index=False)
        for where, params in engine._hot_where(db, name, sealed, f, where, params):
            engine._sql_top_one(db, f"SELECT {TOP_SQL[by]}{rate}, sum(bytes), sum(packets), count(*) FROM {name} "
                                f"WHERE {where} GROUP BY {TOP_GROUP[by]}{', rate' if scaled else ''}", params, by,
                                rows, scaled)
    keys, b, p, n = BR.grouped_blocks(db, f, ("top", by, scaled), ("k",), _columns(by, scaled),
                                      lambda cols: _keyed(cols, by, scaled), engine.block_runs, engine.blocks,
                                      engine._check)
    blocks = [(key_words_of(by, keys["k"]), [b, p, n])] if len(b) else []
    return ([dict_groups(by, rows)] if rows else []) + blocks


def _columns(by: str, scaled: bool) -> tuple[str, ...]:
    return TOP_COLUMNS.get(by, (by,)) + ("bytes", "packets") + (("sampling_rate",) if scaled else ())


def _keyed(cols: dict, by: str, scaled: bool) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """A part's key of ``by`` (as "k") and its bytes and packets, times the sampling rate when ``scaled``."""
    b, p = cols["bytes"], cols["packets"]
    if scaled:
        rate = rate_factor(cols["sampling_rate"])
        b, p = b * rate, p * rate
    return {"k": np.minimum(cols["src_port"], cols["dst_port"]) if by == "port" else cols[TOP_COLUMNS.get(by, (by,))[0]]}, b, p


def _grouped(parts, by: str, scaled: bool) -> tuple[np.ndarray, list[np.ndarray]]:
    """Column mappings (ring segments, sealed blocks) summed per key of ``by`` a part at a time, bytes
    and packets times the sampling rate when ``scaled``: (key words, [bytes, packets, flows])."""
    acc = B.GroupSums(("k",))
    for cols in parts:
        acc.add(*_keyed(cols, by, scaled))
    keys, b, p, n = acc.result()
    if not len(b):
        return np.zeros((0, 2 if by in ADDR_DIMS else 1), np.uint64), [b, p, n]
    return key_words_of(by, keys["k"]), [b, p, n]


def key_words_of(by: str, key: np.ndarray) -> np.ndarray:
    """A key column (V16 addresses or integers) as (n, w) uint64 words, the rollups' key order."""
    if by in ADDR_DIMS:
        return np.ascontiguousarray(key).view(">u8").reshape(len(key), 2).astype(np.uint64)
    return key.astype(np.uint64).reshape(len(key), 1)


def dict_groups(by: str, groups: dict) -> tuple[np.ndarray, list[np.ndarray]]:
    keys = list(groups)
    vals = np.array(list(groups.values()), dtype=np.uint64).reshape(len(keys), 3)
    if by in ADDR_DIMS:
        words = np.frombuffer(b"".join(keys), ">u8").reshape(len(keys), 2).astype(np.uint64)
    else:
        words = np.array(keys, dtype=np.uint64).reshape(len(keys), 1)
    return words, [vals[:, 0], vals[:, 1], vals[:, 2]]
