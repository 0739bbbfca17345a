"""The explore op: the top N keys of a dimension over a window, each key's sums per step, an "other"
series (every flow not of a top key) and the totals, answered in two passes over one source.

Pass one sums each key over the whole window and picks the top N; pass two folds only those keys'
rows into steps. The source is, as for top: the ring for a recent window it holds whole; the hourly
and 5-minute rollups (hists) for sealed hours when the filter is one they are keyed by (none, or
one exporter for the exporter and interface dimensions), with the window's unsealed part and
unaligned edges read raw; else the flows themselves (rows and sealed blocks) within
storage.query_time_limit. A step that is a multiple of every rollup step the window uses lets
the rollups answer both passes in one read. ``keydims`` says how a key is read and shown.
"""
from __future__ import annotations

import numpy as np

from flowmodel.protocol import EXPLORE_LIMIT_MAX, FLOW_FILTERS, METRICS, QueryError
from flowmodel.schema import rate_factor

from . import blockread as B
from . import histops
from . import histread as H
from . import keydims as K
from . import groupby as G
from . import planner as P
from .hists import DIMS

STEPS_S = (60, 300, 3600, 21600, 86400)  # steps a chosen step rounds up to (then whole days)
TARGET_STEPS = 300                       # a chosen step gives the window about this many steps
MAX_STEPS = 2000                         # a given step may not cut the window finer than this
# dimensions with few keys (a few hundred an hour at most): the rollups answer both passes in one
# read when the steps allow; the others keep only key totals in the first pass (bounded by the keys,
# not keys x steps: 72 hours of a site's sources by hour would be millions of rows)
FEW_KEYS = ("exporter", "in_if", "out_if", "protocol", "dscp", "in_if,out_if", "out_if,in_if")
GROUPS_PER_ROW_CAP = 100                 # (step, key) groups held at most: storage.query_max_rows x this
_U64 = np.uint64


# ------------------------------------------------------------------ arguments (pure)

def choose_step_ms(window_ms: int, finest_ms: int = 60_000) -> int:
    """The step giving ``window_ms`` about TARGET_STEPS steps, rounded up to one of STEPS_S (then
    whole days), and at least ``finest_ms`` (the finest step the answering data has)."""
    want = max(window_ms / TARGET_STEPS, finest_ms)
    for s in STEPS_S:
        if s * 1000 >= want:
            return s * 1000
    return -(-int(want) // 86_400_000) * 86_400_000


def step_arg(args: dict) -> int:
    """The step argument in ms; 0 when absent or 0 (chosen from the window)."""
    v = args.get("step")
    if v in (None, "", 0, "0"):
        return 0
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise QueryError("step must be a whole number of seconds")
    try:
        s = float(v)
    except ValueError:
        raise QueryError(f"step {v!r} is not a number of seconds") from None
    if not s >= 1 or s != int(s) or s > 366 * 86400:
        raise QueryError("step must be a whole number of seconds from 1 to a year (or 0: chosen)")
    return int(s) * 1000


def hist_filter_ok(by: str, f: dict) -> bool:
    """Whether the rollups of ``by`` can honour the filter: since/until only, or one exporter when
    the key holds the exporter (exporter, in_if, out_if, an interface pair)."""
    extra = set(f) - {"since", "until"}
    if not extra:
        return True
    return (extra == {"exporter"} and K.HIST_DIM.get(by) in ("exporter", "in_if", "out_if", "if_pair")
            and f["exporter"][0] == f["exporter"][1])


# ------------------------------------------------------------------ the op

def explore(engine, args: dict) -> dict:
    P.check_args("explore", args, FLOW_FILTERS + ("by", "metric", "limit", "step", "scaled"))
    by = K.by_arg(args, None)  # a dimension, or two joined by a comma (keydims.PAIR_SEP)
    metric = P.choice_arg(args, "metric", METRICS, "bytes")
    limit = P.int_arg(args, "limit", 10, 1, EXPLORE_LIMIT_MAX)
    scaled = P.bool_arg(args, "scaled", True)
    step_ms = step_arg(args)
    now = engine.clock()
    f = P.parse_filters(args, now)
    if "since" not in f:
        raise QueryError("explore needs a since time")
    f.setdefault("until", now)
    if f["until"] <= f["since"]:
        raise QueryError("explore needs until after since")
    ring = P.use_ring(f, engine.ring, now, engine.ring_duration_ms)
    hdim = K.HIST_DIM.get(by)
    rollups = not ring and hdim is not None and hist_filter_ok(by, f)
    if not step_ms:  # the same step whether the rollups answer or not (use_rollups off: tests compare)
        step_ms = choose_step_ms(f["until"] - f["since"], min(DIMS[hdim]) if rollups else 60_000)
    rollups = rollups and engine.use_rollups
    first = (f["since"] // step_ms) * step_ms
    steps = -(-(f["until"] - first) // step_ms)
    if steps > MAX_STEPS:
        raise QueryError(f"step {step_ms // 1000} s gives {steps} steps for this window, more than {MAX_STEPS}; "
                         "use a larger step (or 0 to have one chosen)")
    rollups = rollups and any(step_ms % s == 0 for s in DIMS[hdim])
    engine.sources_used["ring" if ring else "sqlite"] += 1
    grid = (first, step_ms, steps)
    approximate = False
    got = engine._read(lambda db: _from_rollups(engine, db, f, by, grid, scaled, metric, limit)) if rollups else None
    if ring:
        parts, source = _one_pass(_raw_groups(engine, None, f, by, grid, scaled, ring=True)), "ring"
    elif got is not None:
        parts, approximate, source = got
    else:
        parts = _one_pass(engine._read(lambda db: _raw_groups(engine, db, f, by, grid, scaled, ring=False)))
        source = "sqlite"
    reply = answer(by, metric, limit, grid, *parts)
    return {"ok": True, "by": by, "metric": metric, "step_ms": step_ms, "since": f["since"], "until": f["until"],
            **reply, "scaled": scaled, "source": source, "approximate": approximate}


# ------------------------------------------------------------------ grouped rows

def _empty_rows(w: int) -> dict:
    return {"i": np.zeros(0, np.int64), "k": np.zeros((0, w), _U64), "v": np.zeros((3, 0), _U64)}


def _raw_groups(engine, db, f: dict, by: str, grid, scaled: bool, ring: bool) -> dict:
    """The flows of ``f`` (the ring's, else SQLite rows and blocks) summed per (step index, key):
    'i' step indexes, 'k' (n, w) key words, 'v' (3, n) bytes, packets, flows."""
    first, step_ms, _steps = grid
    w = K.width(by)
    names = ("time_end", "bytes", "packets") + K.columns(by) + (("sampling_rate",) if scaled else ())
    acc = B.GroupSums(("i",) + tuple(f"k{j}" for j in range(w)))
    parts = engine.ring.scan(lambda c: P.ring_mask(c, f), filters=f, columns=names) if ring else \
        engine._raw_columns(db, f, names)
    cap = engine.max_rows * GROUPS_PER_ROW_CAP
    too_many = QueryError(f"more than {cap:,} (step, key) groups in this window; use a larger step, a shorter "
                          "window or filters")
    for cols in parts:
        if acc.merged > cap:  # distinct groups at the last merge (GroupSums merges at twice that at most)
            raise too_many
        b, p = cols["bytes"], cols["packets"]
        if scaled:
            rate = rate_factor(cols["sampling_rate"])
            b, p = b * rate, p * rate
        idx = ((cols["time_end"] - first) // step_ms).astype(_U64)
        acc.add({"i": idx, **{f"k{j}": word for j, word in enumerate(K.key_words(by, cols))}}, b, p)
    keys, b, p, n = acc.result()
    if len(b) > cap:
        raise too_many
    if not len(b):
        return _empty_rows(w)
    return {"i": keys["i"].astype(np.int64), "k": np.stack([keys[f"k{j}"] for j in range(w)], axis=1),
            "v": np.stack([b, p, n.astype(_U64)])}


def _by_key(rows: dict) -> tuple[np.ndarray, np.ndarray]:
    """Rows summed per key: (keys (g, w) in ascending order, sums (3, g))."""
    k = rows["k"]
    if not len(k):
        return k, rows["v"]
    rep, sums, _c = G.group_rows([k[:, j] for j in range(k.shape[1])], *rows["v"])
    return k[rep], np.stack(sums)


def _by_step(rows: dict, steps: int) -> np.ndarray:
    out = np.zeros((3, steps), _U64)
    for j in range(3):
        np.add.at(out[j], rows["i"], rows["v"][j])
    return out


def _concat(parts: list[dict], w: int) -> dict:
    parts = [p for p in parts if len(p["i"])]
    if not parts:
        return _empty_rows(w)
    return {"i": np.concatenate([p["i"] for p in parts]), "k": np.concatenate([p["k"] for p in parts]),
            "v": np.concatenate([p["v"] for p in parts], axis=1)}


def _one_pass(rows: dict):
    """(key totals, per-step rows, per-step sums of everything) from rows of every flow."""
    return _by_key(rows), rows, None


# ------------------------------------------------------------------ from the rollups

def _from_rollups(engine, db, f: dict, by: str, grid, scaled: bool, metric: str, limit: int):
    """(parts for ``answer``, approximate, source) from the rollups of HIST_DIM[by] plus raw reads of
    what they do not cover. Key totals come from the coarsest rollups that fit the window; the top
    keys' steps from the rollups at steps dividing the step (or both from the latter in one read)."""
    first, step_ms, steps = grid
    hdim = K.HIST_DIM[by]
    w = K.width(by)
    fine = H.plan(db, hdim, f["since"], f["until"], tuple(s for s in DIMS[hdim] if step_ms % s == 0))
    coarse = H.plan(db, hdim, f["since"], f["until"])
    if coarse.raw != fine.raw:
        coarse = fine  # the same flows must answer both passes
    if not histops.pieces_present(db, hdim, fine.pieces + coarse.pieces):
        return None
    raw = _concat([_raw_groups(engine, db, {**f, "since": lo, "until": hi}, by, grid, scaled,
                               ring=engine.ring.covers(lo)) for lo, hi in fine.raw], w)
    host = f["exporter"][0] if "exporter" in f else None
    fold = H.fold_by(step_ms)
    approximate = fine.rounded
    if coarse.pieces == fine.pieces and by in FEW_KEYS:  # one read answers both passes
        rows, other_rows = histops.key_rows(engine, db, by, fine.pieces, fold, grid, scaled, host)
        rows = _concat([rows, raw], w)
        everything = _by_step(rows, steps) + _by_step(other_rows, steps)
        return (_by_key(rows), rows, everything), approximate or bool(len(other_rows["i"])), _source(fine)
    # the same pieces in both passes (steps of an hour): the first remembers each hour's largest keys,
    # so the second decodes only the hours where a top key is not among them
    memo = {} if coarse.pieces == fine.pieces else None
    totals, _others = histops.key_rows(engine, db, by, coarse.pieces, None, None, scaled, host, only=metric,
                                       memo=memo)
    tk, tv = _by_key(_concat([totals, {**raw, "i": np.zeros(len(raw["i"]), np.int64)}], w))
    chosen = tk[G.top_groups(tv[METRICS.index(metric)], limit)] if len(tk) else tk
    rows, _others = histops.key_rows(engine, db, by, fine.pieces, fold, grid, scaled, host, chosen=chosen, only=metric,
                                     memo=memo)
    rows = _concat([rows, raw], w)
    everything = histops.all_by_step(engine, db, fine.pieces, grid, scaled, host) + _by_step(raw, steps)
    return ((tk, tv), rows, everything), approximate or bool(len(_others["i"])), _source(fine)


def _source(pl) -> str:
    if not pl.pieces:
        return "sqlite"
    return "rollups+sqlite" if pl.raw else "rollups"


# ------------------------------------------------------------------ the reply (pure)

def answer(by: str, metric: str, limit: int, grid, key_totals, rows: dict, everything: np.ndarray | None) -> dict:
    """The reply's times, series, other and totals from the key totals (keys (g, w) ascending, sums
    (3, g)), rows per (step, key) holding at least the top keys' and the per-step sums of every flow
    (None: the rows hold every flow)."""
    first, step_ms, steps = grid
    m = METRICS.index(metric)
    keys, sums = key_totals
    if everything is None:
        everything = _by_step(rows, steps)
    pick = G.top_groups(sums[m], limit) if len(keys) else np.zeros(0, np.intp)
    pick = sorted(pick.tolist(), key=lambda g: (-int(sums[m][g]), g))  # ties: the smaller key first
    chosen = keys[pick]
    per_key = np.zeros((len(pick), steps), _U64)
    ri, rk, rv = rows["i"], rows["k"], rows["v"][m]
    for j, key in enumerate(chosen):
        hit = np.ones(len(ri), bool)
        for c in range(len(key)):
            hit &= rk[:, c] == key[c]
        np.add.at(per_key[j], ri[hit], rv[hit])
    top_sum = per_key.sum(axis=0, dtype=_U64) if len(pick) else np.zeros(steps, _U64)
    all_m = everything[m]
    other = np.where(all_m >= top_sum, all_m - top_sum, _U64(0))
    texts, filters = K.texts(by, chosen), K.filters(by, chosen)
    series = [{"key": texts[j], "filter": filters[j], "values": per_key[j].tolist(),
               "total": G.exact_sum(per_key[j])} for j in range(len(pick))]
    return {"times": list(range(first, first + steps * step_ms, step_ms)), "series": series,
            "other": {"values": other.tolist(), "total": G.exact_sum(other)},
            "totals": {name: G.exact_sum(everything[j]) for j, name in enumerate(METRICS)}}


# ------------------------------------------------------------------ top by the keys of keydims

def top_rows(engine, f: dict, by: str, metric: str, limit: int, scaled: bool, ring: bool) -> tuple[list, dict, bool, str]:
    """The top op for dimensions read through keydims (interfaces, AS, DSCP): (rows with key, filter
    and sums, totals, approximate, source), from the ring, the rollups or SQLite like explore."""
    grid = (f.get("since", 0), 1 << 62, 1)  # one step: every flow's index is 0
    approximate, source = False, "ring" if ring else "sqlite"
    if ring:
        keys, sums = _by_key(_raw_groups(engine, None, f, by, grid, scaled, ring=True))
        everything = sums.sum(axis=1, dtype=_U64) if len(keys) else np.zeros(3, _U64)
    else:
        got = None
        if engine.use_rollups and "since" in f and by in K.HIST_DIM and hist_filter_ok(by, f):
            got = engine._read(lambda db: _totals_from_rollups(engine, db, f, by, scaled))
        if got is not None:
            keys, sums, everything, approximate, source = got
        else:
            keys, sums = _by_key(engine._read(lambda db: _raw_groups(engine, db, f, by, grid, scaled, ring=False)))
            everything = sums.sum(axis=1, dtype=_U64) if len(keys) else np.zeros(3, _U64)
    m = METRICS.index(metric)
    pick = G.top_groups(sums[m], limit) if len(keys) else np.zeros(0, np.intp)
    pick = sorted(pick.tolist(), key=lambda g: (-int(sums[m][g]), g))
    texts, filters = K.texts(by, keys[pick]), K.filters(by, keys[pick])
    rows = [{"key": texts[j], "filter": filters[j], "bytes": int(sums[0][g]), "packets": int(sums[1][g]),
             "flows": int(sums[2][g])} for j, g in enumerate(pick)]
    totals = {name: int(everything[j]) for j, name in enumerate(METRICS)}
    return rows, totals, approximate, source


def _totals_from_rollups(engine, db, f: dict, by: str, scaled: bool):
    """(keys, sums (3, g), sums of everything (3,), approximate, source) of the window from the
    coarsest rollups that fit it plus raw reads of the rest; None when a rollup is missing."""
    hdim = K.HIST_DIM[by]
    until = f.get("until", 1 << 62)
    pl = H.plan(db, hdim, f["since"], until)
    if not histops.pieces_present(db, hdim, pl.pieces):
        return None
    grid = (f["since"], 1 << 62, 1)
    raw = _concat([_raw_groups(engine, db, {**f, "since": lo, "until": hi}, by, grid, scaled,
                               ring=engine.ring.covers(lo)) for lo, hi in pl.raw], K.width(by))
    host = f["exporter"][0] if "exporter" in f else None
    rows, others = histops.key_rows(engine, db, by, pl.pieces, H.fold_by(None), None, scaled, host)
    keys, sums = _by_key(_concat([rows, raw], K.width(by)))
    everything = sums.sum(axis=1, dtype=_U64) if len(keys) else np.zeros(3, _U64)
    everything = everything + others["v"].sum(axis=1, dtype=_U64)
    return keys, sums, everything, pl.rounded or bool(len(others["i"])), _source(pl)
