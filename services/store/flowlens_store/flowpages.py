"""The flows op: keyset pages of flows, newest first (or oldest first going back up), from the ring
and SQLite.

A page is split at the ring's evicted_max_time_end: the ring serves time_end above it, SQLite the
rest (see ``FlowPages._flows_page``). In SQLite, a partition's recent rows are read by seq ranges
(spans), sealed blocks through blockread; the rows nearest the cursor from each are merged by
(time_end, seq). A mixin of QueryEngine (queries.py), which owns the connection and the time limit.
"""
from __future__ import annotations

import numpy as np

from flowmodel.protocol import FLOW_FILTERS, FLOW_ORDERS, QueryError
from flowmodel.schema import FLOW_COLUMNS

from . import blockread as B
from . import flowrank
from . import planner as P
from .rowcodec import SQL_COLUMNS, rows_to_columns


# a page the query server's front thread may answer itself (ring_flows): a window and one host at most
INLINE_FILTERS = frozenset({"since", "until", "src", "dst", "addr"})
INLINE_MAX_ROWS = 1000


class FlowPages:
    def ring_flows(self, args: dict) -> dict | None:
        """The flows reply when the ring alone answers it cheaply, else None (a worker answers it).
        Cheap: ordered by time, at most INLINE_MAX_ROWS, filtered by the window and one host (src,
        dst or addr) at most: the ring's host bitmaps skip the blocks without the host and a page
        reads its segments from one end, so a few blocks at most are decoded, and never SQLite. The
        query server's front thread answers these at once, sparing a host's flow page the hand-over
        to a worker and back."""
        if args.get("order", "time") != "time" or P.int_arg(args, "limit", 100, 1) > INLINE_MAX_ROWS:
            return None
        f = P.parse_filters(args, self.clock())
        if not set(f) <= INLINE_FILTERS or any(bytes(f[k][0]) != bytes(f[k][1]) for k in ("src", "dst", "addr")
                                               if k in f):
            return None
        return self.flows(args, ring_only=True)

    def flows(self, args: dict, ring_only: bool = False) -> dict | None:
        """A keyset page of flows; with ``ring_only``, None when the page needs SQLite."""
        P.check_args("flows", args, FLOW_FILTERS + ("limit", "cursor", "direction", "order"))
        limit = P.int_arg(args, "limit", 100, 1, self.max_rows, cap=True)
        direction = P.choice_arg(args, "direction", ("next", "prev"), "next")
        order = P.choice_arg(args, "order", FLOW_ORDERS, "time")
        cursor = P.decode_cursor(args["cursor"]) if args.get("cursor") not in (None, "") else None
        if direction == "prev" and cursor is None:
            raise QueryError("direction prev needs a cursor")
        f = P.parse_filters(args, self.clock())
        older = direction == "next"
        if order == "time":
            got = self._flows_page(f, cursor, older, limit + 1, ring_only)
            if got is None:
                return None
            cols, used = got
        elif ring_only:
            return None
        else:  # the largest flows first, keyset by (value, seq) (flowrank.py)
            cols, used = flowrank.page(self, f, order, cursor, older, limit + 1)
        for s in used:
            self.sources_used[s] += 1
        more = len(cols["seq"]) > limit
        cols = {k: v[:limit] for k, v in cols.items()}
        if not older:  # fetched oldest (smallest) first above the cursor; pages show newest (largest) first
            cols = {k: v[::-1] for k, v in cols.items()}
        n = len(cols["seq"])
        key = cols["time_end"] if order == "time" else flowrank.values(cols, order)
        keys = [(int(key[i]), int(cols["seq"][i])) for i in ((0, n - 1) if n else ())]
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

    def _flows_page(self, f: dict, cursor, older: bool, want: int,
                    ring_only: bool = False) -> tuple[dict, list[str]] | None:
        """Up to ``want`` rows beyond the cursor (newest first when ``older``, else oldest first), and
        the sources that gave them. The ring serves time_end above a split, SQLite time_end at or below
        it, so no row can come from both. The split is the ring's evicted_max_time_end read under the
        ring lock in the same select (every flow above it is still in the ring); the ring is read
        first, so the split SQLite uses is the one the ring rows were cut at. Rows at or below the
        split still sitting in the ring are left to SQLite. A cursor is a plain (time_end, seq) key,
        so pages continue across the split in both directions, whatever source served the last one.
        With ``ring_only``, None when SQLite would be read."""
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
        if ring_only:
            return None
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


def _empty_columns() -> dict:
    cols = {name: np.zeros(0, dt) for name, (dt, _d) in FLOW_COLUMNS.items()}
    cols["seq"] = np.zeros(0, np.int64)
    return cols
