"""Query ops over the ring and SQLite: flows (keyset pages), top, series, advisories, rollups.

top and series are answered by one source, chosen by ``planner.use_ring``: the ring for a recent
window it still holds whole, else SQLite (everything committed). A flows page is split at the ring's
evicted_max_time_end: the ring serves time_end above it, SQLite the rest (see ``_flows_page``). SQLite reads run on this thread's
own read-only connection inside one read transaction, cut off by a progress handler after
``storage.query_time_limit``.

Flows sit in two shapes (layout.py). Row-shaped ones (a partition's recent rows) have no time
index: they are read by rowid (seq) ranges, those of the partition's ``spans`` whose time_end range
meets the window. Sealed ones are column blocks (blockread.py), skipped on their time range and
statistics and decoded column by column. top and series sum over both; a flows page takes the rows
nearest the cursor from each and merges them by (time_end, seq).
"""
from __future__ import annotations

import json
import sqlite3
import time
from typing import Callable

import numpy as np

from flowmodel import addr
from flowmodel.events import ADVISORY_STATES, SEVERITIES
from flowmodel.protocol import FLOW_FILTERS, METRICS, TOP_BY, QueryError, parse_when, protocol_name
from flowmodel.schema import FLOW_COLUMNS

from . import blockread as B
from . import histops
from .notes import query as notes_op
from . import histread as H
from . import planner as P
from .hists import key_text
from .layout import connect_reader, now_ms
from .rowcodec import REST_DTYPE, SQL_COLUMNS, rows_to_columns

ADDR_PROBE_ROWS = 20_000  # an address range matching more rows than this in a partition walks the time index
MAX_SERIES_POINTS = 10_000
INT64_MAX = (1 << 63) - 1
SERIES_CHUNK_ROWS = 65_536  # rows a spread/scaled SQLite series folds at a time
MAX_SEQ_RANGES = 64  # a window meeting more separate runs of spans reads from the first to the last

TOP_SQL = {"src": "src_addr", "dst": "dst_addr", "pair": "src_addr, dst_addr", "port": "min(src_port, dst_port)",
           "src_port": "src_port", "dst_port": "dst_port", "protocol": "protocol", "exporter": "exporter"}
# GROUP BY on a unary-plus copy of the key: on a sealed partition SQLite would otherwise walk the
# (src_addr, time_end) index to skip the sort and fetch every row by rowid, twice as slow as a
# time-index scan plus a sort (bench.store: top src over 1M rows 2.8 s -> 1.4 s).
TOP_GROUP = {**TOP_SQL, "src": "+src_addr", "dst": "+dst_addr", "pair": "+src_addr, +dst_addr"}


class QueryEngine:
    def __init__(self, ring, sqlite_path: str, ring_duration_ms: int, max_rows: int, time_limit_s: float,
                 clock: Callable[[], int] = now_ms, rollup_cache_bytes: int = 4 << 20):
        self.ring = ring
        self.sqlite_path = sqlite_path
        self.ring_duration_ms = ring_duration_ms
        self.max_rows = max_rows
        self.time_limit_s = time_limit_s
        self.clock = clock
        self._db: sqlite3.Connection | None = None
        self._deadline = 0.0
        self.sources_used = {"ring": 0, "sqlite": 0}
        self.blocks = B.BlockCounters()  # sealed blocks listed, pruned on their stats, read
        self.rollup_cache = H.DecodedRollups(rollup_cache_bytes)
        self.use_rollups = True  # series of whole minutes from the per-minute rollups (tests compare both ways)
        self.rollup_retention_ms = 2 * 86_400_000  # set by the service from storage.rollup_retention
        self.prefix_v4, self.prefix_v6 = 24, 64  # the rollups' destination prefixes (analysis.anomaly_prefix_*)

    # ------------------------------------------------------------ SQLite plumbing

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = connect_reader(self.sqlite_path)
            self._db.set_progress_handler(lambda: 1 if time.monotonic() > self._deadline else 0, 20_000)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _read(self, fn):
        """Run fn(db) in one read transaction with the time limit."""
        db = self.db
        self._deadline = time.monotonic() + self.time_limit_s
        db.execute("BEGIN")
        try:
            return fn(db)
        except sqlite3.OperationalError as e:
            if "interrupted" in str(e):
                raise QueryError(f"the query took longer than {self.time_limit_s:g} s; narrow the time range or "
                                 "add filters") from None
            raise
        finally:
            db.execute("COMMIT")

    @staticmethod
    def _partitions(db, f: dict, newest_first: bool = True, lo: int | None = None, hi: int | None = None):
        """(name, start, end, sealed) of partitions that can hold time_end in [since, until) ∩ [lo, hi]."""
        since = max(v for v in (f.get("since"), lo, -(1 << 62)) if v is not None)
        until = min(v for v in (f.get("until"), hi, 1 << 62) if v is not None)
        order = "DESC" if newest_first else "ASC"
        return db.execute(f"SELECT name, start_ms, end_ms, 0 FROM partitions WHERE end_ms > ? AND start_ms <= ? "
                          f"AND hot_rows > 0 ORDER BY start_ms {order}", (since, until)).fetchall()

    @staticmethod
    def _spans(db, name: str, sealed) -> list[tuple[int, int, int, int]]:
        """(seq_lo, seq_hi, time_lo, time_hi) of an unsealed partition, in seq order; [] when sealed:
        the time index answers. (An unsealed partition from before spans has one span over all of it,
        see WarmWriter._cover_unspanned; [] there too would mean a plain scan, still complete.)"""
        if sealed:
            return []
        return db.execute("SELECT seq_lo, seq_hi, time_lo, time_hi FROM spans WHERE part = ? ORDER BY seq_lo",
                          (name,)).fetchall()

    @staticmethod
    def _seq_ranges(spans, lo: int, hi: int) -> list[tuple[int, int]] | None:
        """seq ranges holding every row with lo <= time_end <= hi: runs of consecutive spans that meet
        [lo, hi]. None: no restriction (no spans, or every span meets the window)."""
        if not spans:
            return None
        ranges: list[list[int]] = []
        prev = False
        for a, b, tlo, thi in spans:
            hit = tlo <= hi and thi >= lo
            if hit and prev:
                ranges[-1][1] = b
            elif hit:
                ranges.append([a, b])
            prev = hit
        if len(ranges) == 1 and ranges[0] == [spans[0][0], spans[-1][1]]:
            return None
        if len(ranges) > MAX_SEQ_RANGES:
            return [(ranges[0][0], ranges[-1][1])]
        return [(a, b) for a, b in ranges]

    @staticmethod
    def _where(db, name: str, sealed: bool, f: dict) -> tuple[str, list]:
        """The WHERE of a row table (no index but the rowid: spans narrow it, see _hot_where)."""
        return P.sql_where(f, addr_index=False)

    def _check(self) -> None:
        """The time limit, between sealed blocks (SQLite's own reads stop at the progress handler)."""
        if time.monotonic() > self._deadline:
            raise QueryError(f"the query took longer than {self.time_limit_s:g} s; narrow the time range or "
                             "add filters")

    # ------------------------------------------------------------ dispatch helpers

    def _filters(self, args: dict) -> tuple[dict, bool]:
        f = P.parse_filters(args, self.clock())
        ring = P.use_ring(f, self.ring, self.clock(), self.ring_duration_ms)
        self.sources_used["ring" if ring else "sqlite"] += 1
        return f, ring

    # ------------------------------------------------------------ flows

    def flows(self, args: dict) -> dict:
        P.check_args("flows", args, FLOW_FILTERS + ("limit", "cursor", "direction"))
        limit = P.int_arg(args, "limit", 100, 1, self.max_rows, cap=True)
        direction = P.choice_arg(args, "direction", ("next", "prev"), "next")
        cursor = P.decode_cursor(args["cursor"]) if args.get("cursor") not in (None, "") else None
        if direction == "prev" and cursor is None:
            raise QueryError("direction prev needs a cursor")
        f = P.parse_filters(args, self.clock())
        older = direction == "next"
        cols, used = self._flows_page(f, cursor, older, limit + 1)
        for s in used:
            self.sources_used[s] += 1
        more = len(cols["seq"]) > limit
        cols = {k: v[:limit] for k, v in cols.items()}
        if not older:  # fetched oldest-first above the cursor; the page is shown newest first
            cols = {k: v[::-1] for k, v in cols.items()}
        n = len(cols["seq"])
        keys = [(int(cols["time_end"][i]), int(cols["seq"][i])) for i in ((0, n - 1) if n else ())]
        next_cursor = prev_cursor = None
        if older:
            if more and n:
                next_cursor = P.encode_cursor(*keys[1])
            if cursor is not None:
                prev_cursor = P.encode_cursor(*keys[0]) if n else P.encode_cursor(cursor[0], cursor[1] - 1)
        else:
            if more and n:
                prev_cursor = P.encode_cursor(*keys[0])
            next_cursor = P.encode_cursor(*keys[1]) if n else P.encode_cursor(cursor[0], cursor[1] + 1)
        columns = {name: np.ascontiguousarray(cols[name], dtype=dt).tobytes()
                   for name, (dt, _d) in FLOW_COLUMNS.items()}
        return {"ok": True, "count": n, "columns": columns, "next_cursor": next_cursor, "prev_cursor": prev_cursor,
                "source": "+".join(used)}

    def _flows_page(self, f: dict, cursor, older: bool, want: int) -> tuple[dict, list[str]]:
        """Up to ``want`` rows beyond the cursor (newest first when ``older``, else oldest first), and
        the sources that gave them. The ring serves time_end above a split, SQLite time_end at or below
        it, so no row can come from both. The split is the ring's evicted_max_time_end read under the
        ring lock in the same select (every flow above it is still in the ring); the ring is read
        first, so the split SQLite uses is the one the ring rows were cut at. Rows at or below the
        split still sitting in the ring are left to SQLite. A cursor is a plain (time_end, seq) key,
        so pages continue across the split in both directions, whatever source served the last one."""
        lowest = -(1 << 62)
        hint = self.ring.evicted_max_time_end  # only grows: a ring part empty at this bound stays empty
        hint = lowest if hint is None else hint
        until = f.get("until", 1 << 62)
        ring_empty = until <= hint + 1 or (older and cursor is not None and cursor[0] <= hint)
        split = hint
        ring_cols = None
        if not ring_empty:
            ring_cols, split = self._ring_page(f, cursor, older, want, above_evicted=True)
        n_ring = 0 if ring_cols is None else len(ring_cols["seq"])
        sql_empty = split == lowest or f.get("since", lowest) > split or \
            (not older and cursor is not None and cursor[0] > split)
        if older and n_ring >= want:
            sql_empty = True
        used = []
        if n_ring or (sql_empty and ring_cols is not None):
            used.append("ring")
        if sql_empty:
            return (ring_cols if ring_cols is not None else _empty_columns()), used or ["sqlite"]
        fs = dict(f, until=min(until, split + 1))
        sql_cols = self._read(lambda db: self._sql_page(db, fs, cursor, older, want - (n_ring if older else 0)))
        if len(sql_cols["seq"]) or not used:
            used.append("sqlite")
        if not n_ring:
            return sql_cols, used
        # newest first: the ring's rows (above the split) then SQLite's; oldest first: the other way round
        first, second = (ring_cols, sql_cols) if older else (sql_cols, ring_cols)
        return {k: np.concatenate([first[k], second[k]])[:want] for k in first}, used

    def _ring_page(self, f: dict, cursor, older: bool, want: int, above_evicted: bool = False):
        """The ``want`` ring rows nearest the cursor. With ``above_evicted`` only rows with time_end above
        the ring's evicted_max_time_end (read under the ring lock) count, and that bound is returned too."""
        split = [-(1 << 62)]

        def mask(cols):
            m = P.ring_mask(cols, f)
            if above_evicted and self.ring.evicted_max_time_end is not None:
                split[0] = self.ring.evicted_max_time_end
                m &= cols["time_end"] > split[0]
            if cursor is not None:
                t, s = cursor
                te, sq = cols["time_end"], cols["seq"]
                m &= ((te < t) | ((te == t) & (sq < s))) if older else ((te > t) | ((te == t) & (sq > s)))
            return m

        def pick(cols, idx):
            te = cols["time_end"][idx]
            if len(idx) > want:  # keep only rows that can be among the `want` nearest the cursor (ties kept)
                k = len(idx) - want if older else want - 1
                bound = np.partition(te, k)[k]
                keep = te >= bound if older else te <= bound
                idx, te = idx[keep], te[keep]
            order = np.lexsort((cols["seq"][idx], te))  # ascending
            if older:
                order = order[::-1]
            return idx[order[:want]]
        cols = self.ring.select(mask, pick, filters=f, nearest=(want, older))
        return (cols, split[0]) if above_evicted else cols

    def _sql_page(self, db, f: dict, cursor, older: bool, want: int) -> dict:
        rows: list[tuple] = []
        lo = hi = None
        if cursor is not None:
            hi, lo = (cursor[0], None) if older else (None, cursor[0])
        for name, _s, _e, sealed in self._partitions(db, f, newest_first=older, lo=lo, hi=hi):
            where, params = self._where(db, name, bool(sealed), f)
            if cursor is not None:
                op, bound = ("<", "<=") if older else (">", ">=")
                where += f" AND time_end {bound} ? AND (time_end, seq) {op} (?, ?)"
                params = params + [cursor[0], cursor[0], cursor[1]]
            order = "DESC" if older else "ASC"
            select = f"SELECT {', '.join(SQL_COLUMNS)} FROM {name} WHERE "
            spans = self._spans(db, name, sealed)
            if spans:
                rows += self._hot_page(db, f"{select}{where} AND seq BETWEEN ? AND ? ORDER BY time_end {order}, "
                                       f"seq {order} LIMIT ?", params, spans, f, cursor, older, want - len(rows))
            else:
                sql = f"{select}{where} ORDER BY time_end {order}, seq {order} LIMIT ?"
                rows += db.execute(sql, params + [want - len(rows)]).fetchall()
            if len(rows) >= want:
                break
        cols = rows_to_columns(rows)
        sealed = B.page(db, f, cursor, older, want, self.blocks, self._check)
        if sealed is None:
            return cols
        both = {k: np.concatenate([cols[k].astype(sealed[k].dtype, copy=False), sealed[k]]) for k in sealed}
        order = np.lexsort((both["seq"], both["time_end"]))
        if older:
            order = order[::-1]
        return {k: v[order[:want]] for k, v in both.items()}

    @staticmethod
    def _hot_page(db, sql: str, params: list, spans, f: dict, cursor, older: bool, want: int) -> list[tuple]:
        """The ``want`` rows nearest the cursor in an unsealed partition: ``sql`` (the page query with a
        ``seq BETWEEN ? AND ?`` and a LIMIT) per span, newest time_hi first (oldest time_lo first going
        forward), until the next span cannot reach past the want-th row kept."""
        lo = f.get("since", -(1 << 62))
        hi = f.get("until", 1 << 62) - 1
        if cursor is not None:
            if older:
                hi = min(hi, cursor[0])
            else:
                lo = max(lo, cursor[0])
        cand = [s for s in spans if s[2] <= hi and s[3] >= lo]
        cand.sort(key=(lambda s: -s[3]) if older else (lambda s: s[2]))
        rows: list[tuple] = []
        for a, b, tlo, thi in cand:
            if len(rows) >= want:
                bound = rows[want - 1][1]  # time_end (SQL_COLUMNS: seq, time_end, ...)
                if (thi < bound) if older else (tlo > bound):
                    break
            rows += db.execute(sql, params + [a, b, want]).fetchall()
            rows.sort(key=lambda r: (r[1], r[0]), reverse=older)
            del rows[want:]
        return rows

    # ------------------------------------------------------------ top

    def top(self, args: dict) -> dict:
        P.check_args("top", args, FLOW_FILTERS + ("by", "metric", "limit", "scaled"))
        by = P.choice_arg(args, "by", TOP_BY, "src")
        metric = P.choice_arg(args, "metric", METRICS, "bytes")
        limit = P.int_arg(args, "limit", 10, 1, self.max_rows, cap=True)
        scaled = P.bool_arg(args, "scaled", False)  # bytes and packets times each flow's sampling rate
        f, ring = self._filters(args)
        source, approximate = ("ring" if ring else "sqlite"), False
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
        rows = [{"key": _key_text(by, k), "bytes": v[0], "packets": v[1], "flows": v[2]} for k, v in best]
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
                rate = np.maximum(cols["sampling_rate"], 1).astype(np.uint64)
                cols["bytes"], cols["packets"] = cols["bytes"] * rate, cols["packets"] * rate
            return _top_of_columns(cols, by, metric, limit)
        # ports, protocols, exporters: at most 65,536 groups a segment, summed a segment at a time
        # (Ring.scan) instead of selecting a full ring's columns (24-32 MiB -> 3-4 MiB)
        acc = B.GroupSums(("port",) if by == "port" else need)
        for seg in self.ring.scan(lambda c: P.ring_mask(c, f), filters=f, columns=names):
            b, p = seg["bytes"], seg["packets"]
            if scaled:
                rate = np.maximum(seg["sampling_rate"], 1).astype(np.uint64)
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

        def segments():
            for seg in self.ring.scan(lambda c: P.ring_mask(c, f), filters=f, columns=(
                    "time_start", "time_end", "src_addr", "dst_addr", "protocol", "bytes", "packets", "sampling_rate")):
                rate = np.maximum(seg["sampling_rate"], 1).astype(np.uint64)
                seg["bytes"], seg["packets"] = seg["bytes"] * rate, seg["packets"] * rate
                for g in groups.values():
                    g.add(seg, seg["bytes"], seg["packets"])
                yield seg

        series = self.series({**base, "step": step, "spread": True}, cols=segments())
        series["scaled"] = True
        top = {}
        for by, g in groups.items():
            best, totals = _top_of_groups(g, by, "bytes", limit)
            top[by] = {"ok": True, "by": by, "metric": "bytes", "scaled": True, "source": "ring", "totals": totals,
                       "rows": [{"key": _key_text(by, k), "bytes": v[0], "packets": v[1], "flows": v[2]}
                                for k, v in best]}
        return {"ok": True, "since": f["since"], "clamped": clamped, "series": series, "top": top}

    def _sql_top(self, db, f: dict, by: str, scaled: bool = False) -> dict:
        out: dict = {}
        expr = TOP_SQL[by]
        # scaled: group by the packed sampling rate too (few distinct values) and multiply per group
        rate = f", substr(rest, {_RATE_AT + 1}, 4) AS rate" if scaled else ""
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
                rate = np.maximum(cols["sampling_rate"], 1).astype(np.uint64)
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
        P.add_sums(out, ks, bs, ps, ns)

    def _hot_where(self, db, name: str, sealed, f: dict, where: str, params: list) -> list[tuple[str, list]]:
        """(where, params) per seq range of an unsealed partition that the window needs; one pair,
        unchanged, when the time index answers or the window needs all of it; none when it needs nothing."""
        ranges = self._seq_ranges(self._spans(db, name, sealed), f.get("since", -(1 << 62)),
                                  f.get("until", 1 << 62) - 1)
        if ranges is None:
            return [(where, params)]
        return [(f"{where} AND seq BETWEEN ? AND ?", params + [a, b]) for a, b in ranges]

    @staticmethod
    def _sql_top_one(db, sql: str, params: list, by: str, out: dict, scaled: bool = False) -> None:
        for row in db.execute(sql, params):
            k = (row[0], row[1]) if by == "pair" else row[0]
            v = row[-3:]
            if scaled:  # the group's 1-in-N rate, packed little-endian in rest; unknown (0) counts as 1
                n = max(int.from_bytes(row[-4], "little"), 1)
                v = (v[0] * n, v[1] * n, v[2])
            acc = out.get(k)
            if acc is None:
                out[k] = list(v)
            else:
                acc[0] += v[0]
                acc[1] += v[1]
                acc[2] += v[2]

    # ------------------------------------------------------------ series

    def series(self, args: dict, cols=None) -> dict:
        """Bytes, packets and flows per step. By default a flow counts whole in the step where it ended
        (as exported); ``spread`` pro-rates its bytes and packets over its lifetime (what a throughput
        chart wants: a 60 s flow is not a spike at its end), ``scaled`` multiplies them by the flow's
        sampling rate (1 in N; unknown counts as 1). Flows are always counted where they ended."""
        P.check_args("series", args, FLOW_FILTERS + ("step", "spread", "scaled"))
        step = args.get("step", 60)
        if isinstance(step, bool) or not isinstance(step, (int, float, str)):
            raise QueryError("step must be a number of seconds")
        try:
            step_s = float(step)
        except ValueError:
            raise QueryError(f"step {step!r} is not a number of seconds") from None
        if not step_s >= 0.001 or step_s != step_s or step_s > 366 * 86400:
            raise QueryError("step must be between 1 ms and a year, in seconds")
        step_ms = max(1, int(round(step_s * 1000)))
        spread = P.bool_arg(args, "spread", False)
        scaled = P.bool_arg(args, "scaled", False)
        f, ring = self._filters(args)
        if spread:
            if "since" not in f:
                raise QueryError("a spread series needs a since time")
            f.setdefault("until", self.clock())
        if "since" in f and "until" in f and (f["until"] - f["since"]) // step_ms > MAX_SERIES_POINTS:
            raise QueryError(f"step {step_s:g} s gives more than {MAX_SERIES_POINTS} points for this window; use a "
                             "larger step")
        acc = None
        source = "ring" if ring else "sqlite"
        if spread:
            first = (f["since"] // step_ms) * step_ms
            acc = P.SpreadSeries(first, step_ms, max(0, -(-(f["until"] - first) // step_ms)))
        got: dict[int, list[int]] = {}
        if cols is not None:  # rows the caller (overview) reads from the ring: one dict, or one per segment
            for part in ([cols] if isinstance(cols, dict) else cols):
                _fold_series(part, step_ms, acc, scaled, got)
        elif ring:
            need = ("time_end", "bytes", "packets") + (("time_start",) if spread else ()) + \
                   (("sampling_rate",) if scaled else ())
            # segment by segment, as the overview folds them: the same sums in the same order
            for part in self.ring.scan(lambda c: P.ring_mask(c, f), filters=f, columns=need):
                _fold_series(part, step_ms, acc, scaled, got)
        elif not spread and self.use_rollups and "since" in f and (dims := histops.series_dims(f)) and \
                (answered := self._read(lambda db: histops.series(self, db, f, step_ms, scaled, dims, got))):
            source = answered
        elif spread or scaled:
            self._read(lambda db: self._sql_series_rows(db, f, step_ms, acc, scaled, got))
        else:
            got = self._read(lambda db: self._sql_series(db, f, step_ms))
        if acc is not None:
            per_step = acc.totals()
            points = [[acc.origin + i * step_ms, int(per_step[0, i]), int(per_step[1, i]),
                       got.get(acc.origin + i * step_ms, (0, 0, 0))[2]] for i in range(acc.steps)]
        elif "since" in f and "until" in f:
            first = (f["since"] // step_ms) * step_ms
            points = [[t, *got.get(t, (0, 0, 0))] for t in range(first, f["until"], step_ms)]
        else:
            points = [[t, *got[t]] for t in sorted(got)]
        if len(points) > MAX_SERIES_POINTS:
            raise QueryError(f"more than {MAX_SERIES_POINTS} points; use a larger step or a shorter window")
        return {"ok": True, "step_ms": step_ms, "points": points, "spread": spread, "scaled": scaled,
                "source": source}

    def _sql_series(self, db, f: dict, step_ms: int) -> dict:
        out: dict[int, list[int]] = {}
        for name, _s, _e, sealed in self._partitions(db, f):
            where, params = P.sql_where(f, addr_index=False)
            for where, params in self._hot_where(db, name, sealed, f, where, params):
                for t, b, p, n in db.execute(f"SELECT (time_end / {step_ms}) * {step_ms} AS t, sum(bytes), "
                                             f"sum(packets), count(*) FROM {name} WHERE {where} GROUP BY t", params):
                    acc = out.setdefault(t, [0, 0, 0])
                    acc[0] += b
                    acc[1] += p
                    acc[2] += n
        for cols in B.scan(db, f, ("time_end", "bytes", "packets"), self.blocks, self._check):
            _fold_series(cols, step_ms, None, False, out)
        return out

    def _sql_series_rows(self, db, f: dict, step_ms: int, acc, scaled: bool, got: dict) -> None:
        """A spread or scaled series from SQLite: start time and sampling rate live in the packed rest
        column, so rows are read in chunks and folded in numpy (memory bounded by the chunk)."""
        for name, _s, _e, sealed in self._partitions(db, f):
            where, params = P.sql_where(f, addr_index=False)
            for where, params in self._hot_where(db, name, sealed, f, where, params):
                cur = db.execute(f"SELECT time_end, bytes, packets, rest FROM {name} WHERE {where}", params)
                while True:
                    rows = cur.fetchmany(SERIES_CHUNK_ROWS)
                    if not rows:
                        break
                    te, b, p, rest = zip(*rows)
                    packed = np.frombuffer(b"".join(rest), REST_DTYPE)
                    cols = {"time_end": np.array(te, np.int64), "bytes": np.array(b, np.uint64),
                            "packets": np.array(p, np.uint64), "time_start": packed["time_start"],
                            "sampling_rate": packed["sampling_rate"]}
                    _fold_series(cols, step_ms, acc, scaled, got)
        names = ("time_end", "bytes", "packets") + (("time_start",) if acc is not None else ()) + \
            (("sampling_rate",) if scaled else ())
        for cols in B.scan(db, f, names, self.blocks, self._check):
            _fold_series(cols, step_ms, acc, scaled, got)

    def _raw_columns(self, db, f: dict, names):
        """Every flow of ``f`` in SQLite, rows then blocks, as the named columns, a chunk at a time."""
        for name, _s, _e, sealed in self._partitions(db, f):
            where, params = P.sql_where(f, addr_index=False)
            for where, params in self._hot_where(db, name, sealed, f, where, params):
                cur = db.execute(f"SELECT {', '.join(SQL_COLUMNS)} FROM {name} WHERE {where}", params)
                while True:
                    self._check()
                    rows = cur.fetchmany(SERIES_CHUNK_ROWS)
                    if not rows:
                        break
                    cols = rows_to_columns(rows)
                    yield {k: cols[k] for k in names}
        yield from B.scan(db, f, names, self.blocks, self._check)

    # ------------------------------------------------------------ advisories

    def advisories(self, args: dict) -> dict:
        P.check_args("advisories", args, ("severity", "state", "analyzer", "subject", "since", "until",
                                          "include_resolved", "limit", "after", "after_key"))
        terms, params = [], []
        # a reader's cursor (the notifier): rows the store received after ``after`` (received_at ms;
        # with ``after_key``, after (after, after_key)), resolved ones too, oldest first, received_at given
        after = P.int_arg(args, "after", 0, 0) if args.get("after") is not None else None
        if after is not None:
            key = args.get("after_key")
            terms.append("(received_at > ? OR (received_at = ? AND key > ?))" if key is not None else "received_at > ?")
            params += [after, after, str(key)] if key is not None else [after]
        for name, choices in (("severity", SEVERITIES), ("state", ADVISORY_STATES)):
            v = args.get(name)
            if v in (None, ""):
                continue
            values = v if isinstance(v, list) else str(v).split(",")
            values = [str(x).strip() for x in values if str(x).strip()]
            values = [x.upper() if name == "severity" else x.lower() for x in values]
            bad = [x for x in values if x not in choices]
            if bad:
                raise QueryError(f"{name} {bad[0]!r} is not one of {', '.join(choices)}")
            terms.append(f"{name} IN ({','.join('?' * len(values))})")
            params += values
        for name in ("analyzer", "subject"):
            v = args.get(name)
            if v not in (None, ""):
                if not isinstance(v, (str, int)):
                    raise QueryError(f"{name} must be text")
                terms.append(f"{name} = ?")
                params.append(str(v))
        now = self.clock()
        if args.get("since") not in (None, ""):
            terms.append("last_seen >= ?")
            params.append(parse_when(args["since"], now, "since"))
        if args.get("until") not in (None, ""):
            terms.append("first_seen < ?")
            params.append(parse_when(args["until"], now, "until"))
        inc = P.bool_arg(args, "include_resolved", False)
        if not inc and not args.get("state") and after is None:
            terms.append("state != 'resolved'")
        limit = P.int_arg(args, "limit", 100, 1, self.max_rows, cap=True)
        where = " AND ".join(terms) or "1"

        def read(db):
            rows = db.execute(
                "SELECT key, analyzer, subject, severity, state, first_seen, last_seen, title, description, action, "
                f"evidence, filter, updates, source, received_at FROM advisories WHERE {where} ORDER BY "
                + ("received_at ASC, key ASC" if after is not None else "severity_rank ASC, last_seen DESC, key ASC")
                + " LIMIT ?", params + [limit]).fetchall()
            # counts over every match, not just the page: a dashboard badge must not stop at the limit
            counts = dict(db.execute(f"SELECT severity, count(*) FROM advisories WHERE {where} GROUP BY severity",
                                     params).fetchall())
            return rows, counts

        rows, by_severity = self._read(read)
        counts = {sev: int(by_severity.get(sev, 0)) for sev in SEVERITIES}
        out = []
        for (key, analyzer, subject, severity, state, first, last, title, desc, action, evidence, filt, updates,
             source, received) in rows:
            out.append({"key": key, "analyzer": analyzer, "subject": subject, "severity": severity, "state": state,
                        "first_seen": first, "last_seen": last, "title": title, "description": desc,
                        "action": action, "evidence": _json(evidence), "filter": _json(filt), "updates": updates,
                        "source": source, "received_at": received})
        return {"ok": True, "advisories": out, "counts": counts, "total": sum(counts.values())}

    def notes(self, args: dict) -> dict:
        return notes_op(self, args)  # operators' acknowledgements and silences (notes.py)

    # ------------------------------------------------------------ rollups

    def rollups(self, args: dict) -> dict:
        """Per-minute (or per ``step``, whole minutes) sums by destination prefix or exporter. ``top``
        keeps the keys with the most bytes over the window, so a baseline over a week of thousands of
        prefixes costs what the caller can hold; at most query_max_rows x 100 rows in any case.
        Sealed hours come from their rollups (hists.py), the rest from the ring or the flows."""
        P.check_args("rollups", args, ("kind", "since", "until", "key", "scaled", "step", "top"))
        scaled = P.bool_arg(args, "scaled", False)  # bytes and packets times the sampling rate
        kind = P.choice_arg(args, "kind", ("dst_prefix", "exporter"), None)
        step_s = P.int_arg(args, "step", 60, 60, 31 * 86400)
        if step_s % 60:
            raise QueryError("step must be whole minutes, in seconds (60, 300, 3600, ...)")
        step_ms = step_s * 1000
        top = P.int_arg(args, "top", 0, 1, 1_000_000) if args.get("top") is not None else 0
        now = self.clock()
        since = parse_when(args["since"], now, "since") if args.get("since") not in (None, "") else -(1 << 62)
        until = parse_when(args["until"], now, "until") if args.get("until") not in (None, "") else 1 << 62
        key = args.get("key")
        if key not in (None, "") and not isinstance(key, str):
            raise QueryError("key must be text, e.g. 192.168.5.0/24")
        got = self._read(lambda db: histops.rollup_rows(self, db, kind, since, until, step_ms, scaled,
                                                         self.prefix_v4, self.prefix_v6))
        # texts for the distinct keys only; selection and ordering on key ids in numpy
        k = np.concatenate([got["k"], got["other"].astype(np.uint64)[:, None]], axis=1)
        firsts, inverse = _row_ids(k)
        texts = key_text(kind, k[firsts, :-1], k[firsts, -1].astype(bool), self.prefix_v4, self.prefix_v6)
        keep = np.ones(len(inverse), bool)
        if key not in (None, ""):
            keep &= np.isin(inverse, [i for i, t in enumerate(texts) if t == key])
        if top and keep.any():
            ids = inverse[keep]
            rep, (sums,), _c = P.group_rows([ids.astype(np.uint64)], got["bytes"][keep])
            per_key = dict(zip(ids[rep].tolist(), sums.tolist()))
            chosen = sorted(per_key, key=lambda i: (-per_key[i], texts[i]))[:top]
            keep &= np.isin(inverse, chosen)
        idx = np.flatnonzero(keep)
        cap = self.max_rows * 100
        if len(idx) > cap:
            raise QueryError(f"more than {cap} rollup rows; use a larger step, a shorter window or top")
        rank = np.empty(len(texts), np.int64)
        rank[np.argsort(np.array(texts, dtype=object), kind="stable")] = np.arange(len(texts))
        idx = idx[np.lexsort((rank[inverse[idx]], got["t"][idx]))]
        inv = inverse[idx].tolist()
        rows = {"minute": got["t"][idx].tolist(), "key": [texts[i] for i in inv],
                "bytes": np.minimum(got["bytes"][idx], INT64_MAX).tolist(),
                "packets": np.minimum(got["packets"][idx], INT64_MAX).tolist(), "flows": got["flows"][idx].tolist()}
        return {"ok": True, "kind": kind, "step_ms": step_ms, "scaled": scaled, "top": top or None, "rows": rows}


def _row_ids(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of one row per distinct row of the (n, w) uint64 array ``k``, each row's distinct id)."""
    n = len(k)
    if n == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    order = np.lexsort(k.T[::-1])
    sk = k[order]
    change = np.empty(n, bool)
    change[0] = True
    change[1:] = (sk[1:] != sk[:-1]).any(axis=1)
    ids = np.cumsum(change) - 1
    inverse = np.empty(n, np.intp)
    inverse[order] = ids
    return order[change], inverse


def _empty_columns() -> dict:
    cols = {name: np.zeros(0, dt) for name, (dt, _d) in FLOW_COLUMNS.items()}
    cols["seq"] = np.zeros(0, np.int64)
    return cols


def _rank(groups, metric: str, limit: int) -> list:
    """The best ``limit`` (key, values) by metric, ties by key (bytes compare as SQLite compares BLOBs)."""
    idx = METRICS.index(metric)
    return sorted(groups, key=lambda kv: (-kv[1][idx], kv[0]))[:limit]


def _json(text):
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {}


def _key_text(by: str, k) -> str:
    if by == "pair":
        return f"{addr.to_text(k[0])} -> {addr.to_text(k[1])}"
    if by in ("src", "dst", "exporter"):
        return addr.to_text(k)
    if by == "protocol":
        return protocol_name(k)
    return str(k)


def _fold_series(cols: dict, step_ms: int, acc, scaled: bool, got: dict) -> None:
    """Add flows (time_end, bytes, packets, and time_start / sampling_rate when needed) to a series:
    flows per end step into ``got`` (t -> [bytes, packets, flows]); bytes and packets there too, or
    spread into ``acc`` when it is given."""
    te = cols["time_end"]
    if len(te) == 0:
        return
    b, p = cols["bytes"], cols["packets"]
    if scaled:
        rate = np.maximum(cols["sampling_rate"], 1).astype(np.uint64)
        b, p = b * rate, p * rate
    steps = te // step_ms
    if acc is not None:
        acc.add_flows(cols["time_start"], te, [b, p])
        b = p = np.zeros(len(te), np.uint64)
    rep, (bs, ps), n = P.group_rows(P.key_words(steps), b, p)
    P.add_sums(got, (steps[rep] * step_ms).tolist(), bs, ps, n)


_RATE_AT = REST_DTYPE.fields["sampling_rate"][1]  # offset of the sampling rate in the packed rest column


TOP_COLUMNS = {"pair": ("src_addr", "dst_addr"), "port": ("src_port", "dst_port"), "src": ("src_addr",),
               "dst": ("dst_addr",)}


def _top_of_columns(cols: dict, by: str, metric: str, limit: int) -> tuple[list, dict]:
    """The best ``limit`` (key, [bytes, packets, flows]) and the totals, grouped in numpy; only the
    candidate groups become Python objects, so the cost does not grow with the number of keys."""
    need = TOP_COLUMNS.get(by, (by,))
    if len(cols["bytes"]) == 0:
        return [], {"bytes": 0, "packets": 0, "flows": 0}
    if by == "port":
        words = P.key_words(np.minimum(cols["src_port"], cols["dst_port"]))
    else:
        words = P.key_words(*(cols[c] for c in need))
    rep, (b, p), n = P.group_rows(words, cols["bytes"], cols["packets"])
    totals = {"bytes": P.exact_sum(b), "packets": P.exact_sum(p), "flows": int(n.sum())}
    pick = P.top_groups({"bytes": b, "packets": p, "flows": n}[metric], limit)
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
    totals = {"bytes": P.exact_sum(b), "packets": P.exact_sum(p), "flows": P.exact_sum(n)}
    pick = P.top_groups({"bytes": b, "packets": p, "flows": n}[metric], limit)
    ks = keys["port" if by == "port" else TOP_COLUMNS.get(by, (by,))[0]][pick].tolist()
    return _rank(zip(ks, zip(b[pick].tolist(), p[pick].tolist(), n[pick].tolist())), metric, limit), totals
