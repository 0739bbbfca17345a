"""top, series and rollups answered from the rollups (histread.py) plus raw reads for what they do
not cover: the ring where it still holds a range, else the flows (rows and blocks). Used by
QueryEngine when the filter is one the rollups are keyed by (none, or one host for a series)."""
from __future__ import annotations

import numpy as np

from flowmodel.protocol import METRICS

from . import histread as H
from . import groupby as G
from . import planner as P
from . import rawgroups as R
from .hists import HistBuilder, KEY_WIDTH, decode_hist

from .rawgroups import ADDR_DIMS
HIST_TOP = ("src", "dst", "port", "src_port", "dst_port", "protocol", "exporter")


def _py_keys(dim: str, k: np.ndarray) -> list:
    if dim in ADDR_DIMS:
        return H.words_to_addr(k)
    return k[:, 0].tolist()


def top(engine, db, f: dict, by: str, metric: str, limit: int, scaled: bool) -> tuple[list, dict, bool, str]:
    """(the best ``limit`` (key, [bytes, packets, flows]), totals, approximate, source) for the window
    of ``f`` (since/until only); source says what answered: rollups, sqlite (raw only) or both. Every
    part is grouped in numpy; only the chosen keys become Python objects."""
    until = f.get("until", 1 << 62)
    pl = H.plan(db, by, f["since"], until)
    names = ("sbytes", "spackets", "flows") if scaled else ("bytes", "packets", "flows")
    # the two sums it does not show are not decoded; the hours a dashboard asks again come from the shared cache
    rows = H.key_totals(db, by, pl.pieces, names, engine._check, cache=engine.sealed_totals)
    other = rows["other"]
    keep = ~other
    words = [rows["k"][keep]]
    b, p = (rows["sbytes"], rows["spackets"]) if scaled else (rows["bytes"], rows["packets"])
    values = [[b[keep], p[keep], rows["flows"][keep]]]
    for lo, hi in pl.raw:
        for fr, from_ring in R.raw_parts(engine, f, lo, hi):
            if from_ring:
                w, v = R.ring_groups(engine, fr, by, scaled)
            if not from_ring or not engine.ring.covers(fr["since"]):  # evicted while read: SQLite answers
                for w, v in R.sql_groups(engine, db, fr, by, scaled):
                    words.append(w.reshape(len(v[0]), words[0].shape[1]))
                    values.append(v)
                continue
            words.append(w.reshape(len(v[0]), words[0].shape[1]))
            values.append(v)
    k = np.concatenate(words)
    vb, vp, vn = (np.concatenate([v[i] for v in values]) for i in range(3))
    totals = {"bytes": int(b[other].sum(dtype=np.uint64)), "packets": int(p[other].sum(dtype=np.uint64)),
              "flows": int(rows["flows"][other].sum(dtype=np.uint64))}
    if not len(k):
        return [], totals, bool(other.any() or pl.rounded), _source(pl)
    rep, (gb, gp, gn), _c = G.group_rows([k[:, j] for j in range(k.shape[1])], vb, vp, vn)
    totals["bytes"] += G.exact_sum(gb)
    totals["packets"] += G.exact_sum(gp)
    totals["flows"] += int(gn.sum())
    pick = G.top_groups({"bytes": gb, "packets": gp, "flows": gn}[metric], limit)
    keys = _py_keys(by, k[rep[pick]])
    best = list(zip(keys, ([int(x), int(y), int(z)] for x, y, z in zip(gb[pick], gp[pick], gn[pick]))))
    return best, totals, bool(other.any() or pl.rounded), _source(pl)


def series_dims(f: dict) -> list[tuple[str, int, bytes | None]] | None:
    """The rollup dimensions a series of ``f`` sums, with signs: all traffic is the exporters' sum;
    one host is src + dst - self (addr), or src, or dst. None: the rollups cannot answer ``f``."""
    extra = set(f) - {"since", "until"}
    if not extra:
        return [("exporter", 1, None)]
    if len(extra) == 1:
        (name,) = extra
        lo, hi = f[name] if name in ("src", "dst", "addr", "exporter") else (None, None)
        if lo is None or lo != hi:
            return None
        if name == "addr":
            return [("src", 1, lo), ("dst", 1, lo), ("self", -1, lo)]
        return [(name, 1, lo)]
    return None


def series(engine, db, f: dict, step_ms: int, scaled: bool, dims: list, got: dict) -> str | None:
    """Add the series of ``f`` to ``got`` (t -> [bytes, packets, flows]) and say what answered; None
    when no rollup step divides ``step_ms`` (nothing added)."""
    from .seriesops import _fold_series

    until = f.get("until", 1 << 62)
    plans = []
    for dim, sign, host in dims:
        from .hists import DIMS
        steps = tuple(s for s in DIMS[dim] if step_ms % s == 0)
        if not steps:
            return None
        plans.append((dim, sign, host, H.plan(db, dim, f["since"], until, steps)))
    acc: dict[int, list[int]] = {}
    for dim, sign, host, pl in plans:
        rows = H.gather(db, dim, pl.pieces, engine._check, host=host, cache=engine.rollup_cache)
        if not len(rows["t"]):
            continue
        b, p = (rows["sbytes"], rows["spackets"]) if scaled else (rows["bytes"], rows["packets"])
        bins = (rows["t"] // step_ms) * step_ms
        rep, (gb, gp, gn), _c = G.group_rows(G.key_words(bins), b, p, rows["flows"])
        for t, vb, vp, vn in zip(bins[rep].tolist(), gb.tolist(), gp.tolist(), gn.tolist()):
            cur = acc.setdefault(t, [0, 0, 0])
            cur[0] += sign * vb
            cur[1] += sign * vp
            cur[2] += sign * vn
    # every plan of a sum shares the same partitions, so the raw ranges are those of the first
    raw = [part for lo, hi in plans[0][3].raw for part in R.raw_parts(engine, f, lo, hi)]
    for fr, from_ring in raw:
        if from_ring:
            need = ("time_end", "bytes", "packets") + (("sampling_rate",) if scaled else ())
            part: dict[int, list[int]] = {}
            for seg in engine.ring.scan(lambda c, fr=fr: P.ring_mask(c, fr), filters=fr, columns=need):
                _fold_series(seg, step_ms, None, scaled, part)
            if engine.ring.covers(fr["since"]):
                for t, v in part.items():
                    cur = acc.setdefault(t, [0, 0, 0])
                    for i in range(3):
                        cur[i] += v[i]
                continue  # else evicted while read: SQLite answers the part instead
        if scaled:
            engine._sql_series_rows(db, fr, step_ms, None, True, acc)
        else:
            for t, v in engine._sql_series(db, fr, step_ms).items():
                cur = acc.setdefault(t, [0, 0, 0])
                for i in range(3):
                    cur[i] += v[i]
    for t, v in acc.items():
        cur = got.setdefault(t, [0, 0, 0])
        for i in range(3):
            cur[i] += v[i]
    return _source(plans[0][3])


def _source(pl: H.HistPlan) -> str:
    if not pl.pieces:
        return "sqlite"
    return "rollups+sqlite" if pl.raw else "rollups"


def rollup_rows(engine, db, kind: str, since: int, until: int, step_ms: int, scaled: bool,
                prefix_v4: int, prefix_v6: int) -> dict[str, np.ndarray]:
    """Per (step, key) sums of ``kind`` (dst_prefix or exporter) over [since, until): rollups where
    they are complete, the rest grouped from raw flows the same way the sealer groups them."""
    from .hists import DIMS

    steps = tuple(s for s in DIMS[kind] if step_ms % s == 0)
    pl = H.plan(db, kind, since, until, steps)
    # pieces finer than the step are folded into it as they are read; pieces at the step are not (each
    # (bucket, key) occurs once per partition already)
    fine = any(piece[2] < step_ms for piece in pl.pieces)
    parts = [H.gather(db, kind, pl.pieces, engine._check, fold=H.fold_by(step_ms) if fine else None,
                      cache=engine.rollup_cache)]
    if pl.raw:
        builder = HistBuilder(prefix_v4, prefix_v6, dims={kind: (60_000,)})
        names = ("time_end", "dst_addr", "exporter", "bytes", "packets", "sampling_rate", "src_addr", "src_port",
                 "dst_port", "input_if", "output_if", "protocol", "src_as", "dst_as", "tos")
        for lo, hi in pl.raw:
            fr = {"since": lo, "until": hi}
            if engine.ring.covers(lo):
                for seg in engine.ring.scan(lambda c: P.ring_mask(c, fr), filters=fr, columns=names):
                    builder.add(seg)
            else:
                for cols in engine._raw_columns(db, fr, names):
                    builder.add(cols)
        for (_dim, _step), blob in builder.finish().items():
            h = decode_hist(blob)
            h["k"] = h["k"].reshape(len(h["t"]), KEY_WIDTH.get(kind, 1))  # -1 cannot size an empty blob
            parts.append(h)
    rows = {k: np.concatenate([p[k] for p in parts]) for k in ("t", "other", "bytes", "packets", "flows", "sbytes",
                                                                "spackets")}
    rows["k"] = np.concatenate([p["k"].reshape(len(p["t"]), KEY_WIDTH.get(kind, 1)) for p in parts])
    b, p = (rows["sbytes"], rows["spackets"]) if scaled else (rows["bytes"], rows["packets"])
    bins = (rows["t"] // step_ms) * step_ms
    words = G.key_words(bins) + [rows["k"][:, j] for j in range(rows["k"].shape[1])] + [rows["other"].astype(np.uint64)]
    rep, (gb, gp, gn), _c = G.group_rows(words, b, p, rows["flows"])
    return {"t": bins[rep], "k": rows["k"][rep], "other": rows["other"][rep], "bytes": gb, "packets": gp, "flows": gn}


# ------------------------------------------------------------------ explore (explore.py)

def pieces_present(db, dim: str, pieces: list) -> bool:
    """Whether every piece's (partition, step) rollup exists: a partition sealed before a step was
    added to hists.DIMS has the dimension but not that step, and must be read raw instead."""
    if not pieces:
        return True
    lo, hi = min(p[0] for p in pieces), max(p[1] for p in pieces)
    have = set(db.execute("SELECT DISTINCT start_ms, end_ms, step_ms FROM hists WHERE dim = ? AND start_ms >= ? "
                          "AND end_ms <= ?", (dim, lo, hi)).fetchall())
    return all((ps, pe, step) in have for ps, pe, step, _a, _b in pieces)


def _match(k: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Rows of the (n, w) words ``k`` equal to any row of ``chosen`` (a few keys: one pass each)."""
    hit = np.zeros(len(k), bool)
    for key in chosen:
        m = np.ones(len(k), bool)
        for c in range(len(key)):
            m &= k[:, c] == key[c]
        hit |= m
    return hit


def _gather_chosen(engine, db, dim: str, pieces: list, chosen: np.ndarray, fold, values=None) -> dict:
    """H.gather restricted to the ``chosen`` keys (rollup words), reading only the key-range chunks
    that can hold one of them (hists.key_chunks): a top 10 of hosts over a day reads ten small chunks
    an hour, not every host's rows."""
    width = KEY_WIDTH.get(dim, 1)
    keys = [np.asarray(c, np.uint64).astype(">u8").tobytes() for c in chosen]
    cond = " OR ".join(["(key_lo <= ? AND key_hi >= ?)"] * len(keys))
    sql = f"SELECT data FROM hists WHERE dim = ? AND step_ms = ? AND start_ms = ? AND end_ms = ? AND ({cond})"
    extra = [b for kb in keys for b in (kb, kb)]
    got, last = [], None
    for ps, pe, step, t_lo, t_hi in pieces:
        engine._check()
        if last is None or last[0] != (ps, pe, step):
            blobs = db.execute(sql, (dim, step, ps, pe, *extra))
            parts = [decode_hist(r[0], values) if values else engine.rollup_cache.decode(r[0]) for r in blobs]
            h = None
            if parts:
                h = {name: np.concatenate([q[name] for q in parts]) for name in parts[0] if name != "k"}
                h["k"] = np.concatenate([q["k"].reshape(len(q["t"]), width) for q in parts])
                m = _match(h["k"], chosen) & ~h["other"]
                h = {name: v[m] for name, v in h.items()}
            last = ((ps, pe, step), h)
        h = last[1]
        if h is None:
            continue
        m = (h["t"] >= t_lo) & (h["t"] < t_hi)
        if m.any():
            got.append({name: v[m] for name, v in h.items()})
    out = H._concat(got, width)
    return fold(out) if got else out


def _hist_value(metric: str, scaled: bool) -> str:
    return {"bytes": "sbytes", "packets": "spackets"}.get(metric, metric) if scaled else metric


def fold_values(names: tuple[str, ...], step_ms: int | None = None):
    """A gather fold summing only the values ``names`` per (bucket of ``step_ms``, other, key), per
    (other, key) when None: fold_by's work for the sums a query uses (one of five for explore's
    first pass, three for a top)."""
    def fold(rows: dict) -> dict:
        n = len(rows["t"])
        if n == 0:
            return {k: rows[k] for k in ("t", "k", "other", *names)}
        k = rows["k"]
        t = (rows["t"] // step_ms) * step_ms if step_ms else np.zeros(n, np.int64)
        words = [k[:, j] for j in range(k.shape[1])] + [rows["other"].astype(np.uint64)]
        if step_ms:
            words.insert(0, t.view(np.uint64) ^ np.uint64(1 << 63))
        rep, sums, _c = G.group_rows(words, *(rows[name] for name in names))
        return {"t": t[rep], "k": k[rep], "other": rows["other"][rep], **dict(zip(names, sums))}
    return fold


def fold_one(name: str, step_ms: int | None = None):
    return fold_values((name,), step_ms)


class Values:
    """Stands in for gather's decoded-rollups cache: decodes only t, other, the key and ``values``
    (hists.decode_hist), uncached: the big blobs such a pass reads are never cached anyway."""

    def __init__(self, values: tuple[str, ...]):
        self.values = values

    def decode(self, blob: bytes) -> dict:
        return decode_hist(bytes(blob), self.values)


def key_rows(engine, db, by: str, pieces: list, fold, grid, scaled: bool, host: bytes | None = None,
             chosen: np.ndarray | None = None, only: str | None = None, memo: dict | None = None) -> tuple[dict, dict]:
    """The rollup rows of keydims.HIST_DIM[by] over ``pieces`` as explore rows ('i' step index on
    ``grid`` (first, step_ms, steps), 0 when None; 'k' the key words of ``by``; 'v' (3, n) bytes,
    packets, flows), only exporter ``host``'s and only the ``chosen`` keys' when given; and the
    capped "other" rows, which no key owns. ``only`` (a metric): only its sums are gathered (with
    fold_one, whatever ``fold`` says); the other two read 0. ``memo`` (with ``only``): the key totals
    pass fills it, the chosen keys' pass reads the pieces it answers from it (histread.memo_rows)."""
    from . import keydims as K

    dim = K.HIST_DIM[by]
    hw = KEY_WIDTH.get(dim, 1)
    if chosen is not None and not len(chosen):
        rows = H._concat([], hw)
    elif chosen is not None and by != "dscp":  # (dscp's chosen keys are not its rollup words: tos)
        wanted = K.to_hist_words(by, chosen)
        if only is not None and memo is not None:
            name = _hist_value(only, scaled)
            fold = fold_one(name, grid[1])
            known, unread = H.memo_rows(memo, pieces, wanted, name)
            read = [_gather_chosen(engine, db, dim, unread, wanted, fold, (name,))] if unread else []
            rows = fold(H._concat([known] + read, hw))
        elif only is not None:
            name = _hist_value(only, scaled)
            rows = _gather_chosen(engine, db, dim, pieces, wanted, fold_one(name, grid[1]), (name,))
        else:
            rows = _gather_chosen(engine, db, dim, pieces, wanted, fold)
    elif only is not None and grid is None:  # key totals: merged hour by hour (keymerge.py)
        rows = H.key_totals(db, dim, pieces, (_hist_value(only, scaled),), engine._check, memo=memo)
    elif only is not None:
        name = _hist_value(only, scaled)
        rows = H.gather(db, dim, pieces, engine._check, fold=fold_one(name, grid[1] if grid else None),
                        cache=Values((name,)))
    else:
        rows = H.gather(db, dim, pieces, engine._check, fold=fold, cache=engine.rollup_cache)
    if only is not None:
        v = np.zeros((3, len(rows["t"])), np.uint64)
        v[METRICS.index(only)] = rows[_hist_value(only, scaled)]
    else:
        b, p = (rows["sbytes"], rows["spackets"]) if scaled else (rows["bytes"], rows["packets"])
        v = np.stack([b, p, rows["flows"]]) if len(b) else np.zeros((3, 0), np.uint64)
    k = K.from_hist_words(by, rows["k"].reshape(len(rows["t"]), hw))
    i = (rows["t"] - grid[0]) // grid[1] if grid is not None else np.zeros(len(rows["t"]), np.int64)
    other = rows["other"]
    keep = ~other
    if host is not None:
        keep &= _match(k[:, :2], np.frombuffer(bytes(host), ">u8").astype(np.uint64)[None, :])
    if chosen is not None:
        keep &= _match(k, chosen)
    return ({"i": i[keep], "k": k[keep], "v": v[:, keep]},
            {"i": i[other], "k": k[other], "v": v[:, other]})


def all_by_step(engine, db, pieces: list, grid, scaled: bool, host: bytes | None = None) -> np.ndarray:
    """(3, steps) sums of every flow in ``pieces`` per step of ``grid``, from the exporter rollups
    (kept at every step, so at the pieces' own); ``host``: that exporter's flows only."""
    first, step_ms, steps = grid
    rows = H.gather(db, "exporter", pieces, engine._check, fold=H.fold_by(step_ms), cache=engine.rollup_cache)
    keep = np.ones(len(rows["t"]), bool)
    if host is not None:
        keep = ~rows["other"] & _match(rows["k"], np.frombuffer(bytes(host), ">u8").astype(np.uint64)[None, :])
    b, p = (rows["sbytes"], rows["spackets"]) if scaled else (rows["bytes"], rows["packets"])
    i = ((rows["t"] - first) // step_ms)[keep]
    out = np.zeros((3, steps), np.uint64)
    for j, v in enumerate((b, p, rows["flows"])):
        np.add.at(out[j], i, v[keep])
    return out
