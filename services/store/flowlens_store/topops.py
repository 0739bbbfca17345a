"""The top and overview ops: the keys with the most bytes, packets or flows over a window, from the
ring, the hourly rollups (histops.py) or SQLite rows and sealed blocks, grouped in numpy.
A mixin of QueryEngine (queries.py), which owns the connection and the time limit.
"""
from __future__ import annotations

import numpy as np

from flowmodel import addr
from flowmodel.protocol import FLOW_FILTERS, METRICS, QueryError, protocol_name
from flowmodel.schema import rate_factor

from . import blockread as B
from . import blocksums as BS
from . import histops
from . import keydims as K
from . import groupby as G
from . import planner as P
from .explore import top_rows as explore_top
from .rowcodec import RATE_SQL, packed_rate

TOP_SQL = {"src": "src_addr", "dst": "dst_addr", "pair": "src_addr, dst_addr", "port": "min(src_port, dst_port)",
           "src_port": "src_port", "dst_port": "dst_port", "protocol": "protocol", "exporter": "exporter"}
# GROUP BY on a unary-plus copy of the key: on a sealed partition SQLite would otherwise walk the
# (src_addr, time_end) index to skip the sort and fetch every row by rowid, twice as slow as a
# time-index scan plus a sort (bench.store: top src over 1M rows 2.8 s -> 1.4 s).
TOP_GROUP = {**TOP_SQL, "src": "+src_addr", "dst": "+dst_addr", "pair": "+src_addr, +dst_addr"}

KEYDIM_TOP = ("in_if", "out_if", "src_as", "dst_as", "dscp", "src_country", "dst_country")  # summed through keydims

TOP_COLUMNS = {"pair": ("src_addr", "dst_addr"), "port": ("src_port", "dst_port"), "src": ("src_addr",),
               "dst": ("dst_addr",)}
OVERVIEW_SERIES = ("time_start", "time_end", "bytes", "packets", "sampling_rate")  # what the overview's series reads


class TopOps:
    def top(self, args: dict) -> dict:
        P.check_args("top", args, FLOW_FILTERS + ("by", "metric", "limit", "scaled"))
        by = K.by_arg(args, "src")  # a dimension, or two joined by a comma: their pairs (keydims.PAIR_SEP)
        metric = P.choice_arg(args, "metric", METRICS, "bytes")
        limit = P.int_arg(args, "limit", 10, 1, self.max_rows, cap=True)
        scaled = P.bool_arg(args, "scaled", False)  # bytes and packets times each flow's sampling rate
        f, ring = self._filters(args)
        source, approximate = ("ring" if ring else "sqlite"), False
        if by in KEYDIM_TOP or K.PAIR_SEP in by:  # interfaces, AS, DSCP, pairs of dimensions: on key words (explore.py)
            rows, totals, approximate, source = explore_top(self, f, by, metric, limit, scaled, ring)
            return {"ok": True, "by": by, "metric": metric, "rows": rows, "totals": totals, "scaled": scaled,
                    "source": source, "approximate": approximate}
        if ring:
            best, totals = self._ring_top(f, by, metric, limit, scaled)
        elif self.use_rollups and by in histops.HIST_TOP and "since" in f and set(f) <= {"since", "until"}:
            best, totals, approximate, source = self._read(lambda db: histops.top(self, db, f, by, metric, limit,
                                                                                  scaled))
            best = _rank(best, metric, limit)
        else:
            groups = self._read(lambda db: self._sql_top(db, f, by, scaled))  # key -> [bytes, packets, flows]
            totals = {"bytes": 0, "packets": 0, "flows": 0}
            for b, p, n in groups.values():
                totals["bytes"] += b
                totals["packets"] += p
                totals["flows"] += n
            best = _rank(groups.items(), metric, limit)
        rows = [{"key": _key_text(by, k), "filter": _key_filter(by, k), "bytes": v[0], "packets": v[1], "flows": v[2]}
                for k, v in best]
        return {"ok": True, "by": by, "metric": metric, "rows": rows, "totals": totals, "scaled": scaled,
                "source": source, "approximate": approximate}

    def _ring_top(self, f: dict, by: str, metric: str, limit: int, scaled: bool = False) -> tuple[list, dict]:
        need = TOP_COLUMNS.get(by, (by,))
        names = need + ("bytes", "packets") + (("sampling_rate",) if scaled else ())
        if by in ("src", "dst", "pair"):
            # addresses may be one per row: grouping each segment first would keep as many groups as
            # rows and merge them again (600,000 distinct sources: 56 MiB against 46 for one select)
            cols = self.ring.select(lambda c: P.ring_mask(c, f), filters=f, columns=names)
            if scaled:
                rate = rate_factor(cols["sampling_rate"])
                cols["bytes"], cols["packets"] = cols["bytes"] * rate, cols["packets"] * rate
            return _top_of_columns(cols, by, metric, limit)
        # ports, protocols, exporters: at most 65,536 groups a segment, summed a segment at a time
        # (Ring.scan) instead of selecting a full ring's columns (24-32 MiB -> 3-4 MiB)
        acc = B.GroupSums(("port",) if by == "port" else need)
        for seg in self.ring.scan(lambda c: P.ring_mask(c, f), filters=f, columns=names):
            b, p = seg["bytes"], seg["packets"]
            if scaled:
                rate = rate_factor(seg["sampling_rate"])
                b, p = b * rate, p * rate
            acc.add({"port": np.minimum(seg["src_port"], seg["dst_port"])} if by == "port" else seg, b, p)
        return _top_of_groups(acc, by, metric, limit)

    def overview(self, args: dict) -> dict:
        """What a dashboard shows for one window, from one read of the ring: a spread, scaled series and
        the top sources, destinations and protocols by scaled bytes. Each part is the reply its own op
        (series spread+scaled, top scaled) would give. A recent window the ring holds only in part is
        cut to that part (reply ``since``, ``clamped``); an older one is answered by those ops one by one."""
        P.check_args("overview", args, FLOW_FILTERS + ("step", "limit"))
        limit = P.int_arg(args, "limit", 10, 1, self.max_rows, cap=True)
        base = {k: v for k, v in args.items() if k not in ("step", "limit")}
        f = P.parse_filters(base, self.clock())
        if "since" not in f:
            raise QueryError("overview needs a since time")
        step = args.get("step", 60)
        clamped = False
        if not P.use_ring(f, self.ring, self.clock(), self.ring_duration_ms):
            # A recent window the ring holds only in part (more flows/s than ring_capacity covers):
            # the dashboard gets the part memory holds, says so, and stays fast; SQLite would take seconds.
            evicted = self.ring.evicted_max_time_end
            now = self.clock()
            if (evicted is not None and self.ring.size and evicted + 1 < f.get("until", now)
                    and f["since"] >= now - self.ring_duration_ms - P.RING_GRACE_MS):
                f = {**f, "since": evicted + 1}
                base["since"] = evicted + 1
                clamped = True
            else:
                return {"ok": True, "since": f["since"], "clamped": False,
                        "series": self.series({**base, "step": step, "spread": True, "scaled": True}),
                        "top": {by: self.top({**base, "by": by, "limit": limit, "scaled": True})
                                for by in ("src", "dst", "protocol")}}
        # one pass over the ring, a segment at a time: each segment feeds the series and the three
        # groupings, so the whole window's rows are never held at once (a full ring is 41 MB of them)
        groups = {by: B.GroupSums(TOP_COLUMNS.get(by, (by,))) for by in ("src", "dst", "protocol")}
        # a sealed block read whole under a plain time window: its groups are the same every time
        # (blocksums.py), so they are merged from the cache instead of grouped from its rows again
        times_only = set(f) <= {"since", "until"}
        compact = {by: B.GroupSums(TOP_COLUMNS.get(by, (by,))) for by in groups}

        def segments():
            for block, cols, idx in self.ring.scan_parts(lambda c: P.ring_mask(c, f), filters=f):
                # idx None: every row of a whole block (the columns are read as they are, not copied)
                rows = (lambda name: cols[name]) if idx is None else (lambda name: cols[name][idx])
                seg = {name: rows(name) for name in OVERVIEW_SERIES}
                rate = rate_factor(seg["sampling_rate"])
                seg["bytes"], seg["packets"] = seg["bytes"] * rate, seg["packets"] * rate
                keyed = lambda: {**seg, **{name: rows(name) for name in ("src_addr", "dst_addr", "protocol")}}  # noqa: E731
                cached = BS.kept_groups(self.ring, block, cols, idx, keyed) if times_only else None
                if cached is None:  # rows cut by the window or a filter: grouped from the rows
                    cols_k = keyed()
                    for g in groups.values():
                        g.add(cols_k, seg["bytes"], seg["packets"])
                else:
                    for by, part in cached.items():
                        BS.add_kept(compact[by], groups[by], part)
                yield seg

        series = self.series({**base, "step": step, "spread": True}, cols=segments())
        series["scaled"] = True
        top = {}
        for by, g in groups.items():
            best, totals = _top_of_groups(BS.finish_kept(compact[by], g), by, "bytes", limit)
            top[by] = {"ok": True, "by": by, "metric": "bytes", "scaled": True, "source": "ring", "totals": totals,
                       "rows": [{"key": _key_text(by, k), "filter": _key_filter(by, k), "bytes": v[0],
                                 "packets": v[1], "flows": v[2]} for k, v in best]}
        return {"ok": True, "since": f["since"], "clamped": clamped, "series": series, "top": top}

    def _sql_top(self, db, f: dict, by: str, scaled: bool = False) -> dict:
        out: dict = {}
        expr = TOP_SQL[by]
        # scaled: group by the packed sampling rate too (few distinct values) and multiply per group
        rate = f", {RATE_SQL} AS rate" if scaled else ""
        for name, _s, _e, sealed in self._partitions(db, f):
            where, params = P.sql_where(f, addr_index=False)
            for where, params in self._hot_where(db, name, sealed, f, where, params):
                self._sql_top_one(db, f"SELECT {expr}{rate}, sum(bytes), sum(packets), count(*) FROM {name} WHERE {where} "
                                  f"GROUP BY {TOP_GROUP[by]}{', rate' if scaled else ''}", params, by, out, scaled)
        self._block_top(db, f, by, scaled, out)
        return out

    def _block_top(self, db, f: dict, by: str, scaled: bool, out: dict) -> None:
        """Sealed blocks' groups, summed in numpy block by block, added to ``out`` (key -> [b, p, n])."""
        need = TOP_COLUMNS.get(by, (by,))
        names = need + ("bytes", "packets") + (("sampling_rate",) if scaled else ())
        keys = ("k",) if by == "port" else need
        acc = B.GroupSums(keys)
        for cols in B.scan(db, f, names, self.blocks, self._check):
            b, p = cols["bytes"], cols["packets"]
            if scaled:
                rate = rate_factor(cols["sampling_rate"])
                b, p = b * rate, p * rate
            k = {"k": np.minimum(cols["src_port"], cols["dst_port"])} if by == "port" else {c: cols[c] for c in need}
            acc.add(k, b, p)
        kcols, bs, ps, ns = acc.result()
        if not len(bs):
            return
        if by == "pair":
            ks = list(zip(kcols["src_addr"].tolist(), kcols["dst_addr"].tolist()))
        else:
            ks = kcols[keys[0]].tolist()
        G.add_sums(out, ks, bs, ps, ns)

    @staticmethod
    def _sql_top_one(db, sql: str, params: list, by: str, out: dict, scaled: bool = False) -> None:
        for row in db.execute(sql, params):
            k = (row[0], row[1]) if by == "pair" else row[0]
            v = row[-3:]
            if scaled:  # the group's 1-in-N rate, packed little-endian in rest; unknown (0) counts as 1
                n = packed_rate(row[-4])
                v = (v[0] * n, v[1] * n, v[2])
            acc = out.get(k)
            if acc is None:
                out[k] = list(v)
            else:
                acc[0] += v[0]
                acc[1] += v[1]
                acc[2] += v[2]


def _rank(groups, metric: str, limit: int) -> list:
    """The best ``limit`` (key, values) by metric, ties by key (bytes compare as SQLite compares BLOBs)."""
    idx = METRICS.index(metric)
    return sorted(groups, key=lambda kv: (-kv[1][idx], kv[0]))[:limit]


def _key_filter(by: str, k) -> dict:
    """The flow filter arguments selecting a key's flows (port: either side, a superset)."""
    if by == "pair":
        return {"src": addr.to_text(k[0]), "dst": addr.to_text(k[1])}
    if by in ("src", "dst", "exporter"):
        return {by: addr.to_text(k)}
    return {by: int(k)}


def _key_text(by: str, k) -> str:
    if by == "pair":
        return f"{addr.to_text(k[0])} -> {addr.to_text(k[1])}"
    if by in ("src", "dst", "exporter"):
        return addr.to_text(k)
    if by == "protocol":
        return protocol_name(k)
    return str(k)


def _top_of_columns(cols: dict, by: str, metric: str, limit: int) -> tuple[list, dict]:
    """The best ``limit`` (key, [bytes, packets, flows]) and the totals, grouped in numpy; only the
    candidate groups become Python objects, so the cost does not grow with the number of keys."""
    need = TOP_COLUMNS.get(by, (by,))
    if len(cols["bytes"]) == 0:
        return [], {"bytes": 0, "packets": 0, "flows": 0}
    if by == "port":
        words = G.key_words(np.minimum(cols["src_port"], cols["dst_port"]))
    else:
        words = G.key_words(*(cols[c] for c in need))
    rep, (b, p), n = G.group_rows(words, cols["bytes"], cols["packets"])
    totals = {"bytes": G.exact_sum(b), "packets": G.exact_sum(p), "flows": int(n.sum())}
    pick = G.top_groups({"bytes": b, "packets": p, "flows": n}[metric], limit)
    rows = rep[pick]
    if by == "pair":
        keys = list(zip(cols["src_addr"][rows].tolist(), cols["dst_addr"][rows].tolist()))
    elif by == "port":
        keys = np.minimum(cols["src_port"][rows], cols["dst_port"][rows]).tolist()
    else:
        keys = cols[need[0]][rows].tolist()
    groups = zip(keys, zip(b[pick].tolist(), p[pick].tolist(), n[pick].tolist()))
    return _rank(groups, metric, limit), totals


def _top_of_groups(groups: B.GroupSums, by: str, metric: str, limit: int) -> tuple[list, dict]:
    """As _top_of_columns, from sums already grouped segment by segment (by port: the key "port")."""
    keys, b, p, n = groups.result()
    if len(b) == 0:
        return [], {"bytes": 0, "packets": 0, "flows": 0}
    totals = {"bytes": G.exact_sum(b), "packets": G.exact_sum(p), "flows": G.exact_sum(n)}
    pick = G.top_groups({"bytes": b, "packets": p, "flows": n}[metric], limit)
    ks = keys["port" if by == "port" else TOP_COLUMNS.get(by, (by,))[0]][pick].tolist()
    return _rank(zip(ks, zip(b[pick].tolist(), p[pick].tolist(), n[pick].tolist())), metric, limit), totals
