"""The series op: bytes, packets and flows per step over a window, from the ring, the rollups
(histops.py) or SQLite rows and sealed blocks; optionally spread over each flow's lifetime and
scaled by its sampling rate. A mixin of QueryEngine (queries.py).
"""
from __future__ import annotations

import numpy as np

from flowmodel.protocol import FLOW_FILTERS, QueryError
from flowmodel.schema import rate_factor

from . import blockread as B
from . import blockruns as BR
from . import histops
from . import groupby as G
from . import planner as P
from .rowcodec import RATE_SQL, REST_DTYPE, SQL_COLUMNS, packed_rate, rows_to_columns

MAX_SERIES_POINTS = 10_000
SERIES_CHUNK_ROWS = 65_536  # rows a spread/scaled SQLite series folds at a time


class SeriesOps:
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
        self._block_series(db, f, step_ms, False, out)
        return out

    def _block_series(self, db, f: dict, step_ms: int, scaled: bool, got: dict) -> None:
        """Sealed blocks' flows per end step into ``got``: a partition's blocks read whole are summed
        through the hot-hour runs (blockruns.py), so a refresh reads only the blocks written since."""
        names = ("time_end", "bytes", "packets") + (("sampling_rate",) if scaled else ())

        def keyed(cols):
            b, p = cols["bytes"], cols["packets"]
            if scaled:
                rate = rate_factor(cols["sampling_rate"])
                b, p = b * rate, p * rate
            return {"t": (cols["time_end"] // step_ms) * step_ms}, b, p
        keys, b, p, n = BR.grouped_blocks(db, f, ("series", step_ms, scaled), ("t",), names, keyed, self.block_runs,
                                          self.blocks, self._check)
        if len(b):
            G.add_sums(got, keys["t"].tolist(), b, p, n)

    def _sql_series_rows(self, db, f: dict, step_ms: int, acc, scaled: bool, got: dict) -> None:
        """A spread or scaled series from SQLite: start time and sampling rate live in the packed rest
        column, so rows are read in chunks and folded in numpy (memory bounded by the chunk)."""
        if acc is None:  # per end step: the rows grouped by SQLite, the blocks through the hot-hour runs
            self._sql_series_grouped(db, f, step_ms, scaled, got)
            return
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

    def _sql_series_grouped(self, db, f: dict, step_ms: int, scaled: bool, got: dict) -> None:
        """An unspread series from SQLite: rows summed per step (and packed 1-in-N rate) by SQLite,
        then each group's sums times its rate; sealed blocks as _block_series."""
        rate = f", {RATE_SQL} AS rate" if scaled else ""
        for name, _s, _e, sealed in self._partitions(db, f):
            where, params = P.sql_where(f, addr_index=False)
            for where, params in self._hot_where(db, name, sealed, f, where, params):
                for row in db.execute(f"SELECT (time_end / {step_ms}) * {step_ms} AS t{rate}, sum(bytes), sum(packets), "
                                      f"count(*) FROM {name} WHERE {where} GROUP BY t{', rate' if scaled else ''}", params):
                    n = packed_rate(row[1]) if scaled else 1
                    cur = got.setdefault(row[0], [0, 0, 0])
                    cur[0] += row[-3] * n
                    cur[1] += row[-2] * n
                    cur[2] += row[-1]
        self._block_series(db, f, step_ms, scaled, got)

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


def _fold_series(cols: dict, step_ms: int, acc, scaled: bool, got: dict) -> None:
    """Add flows (time_end, bytes, packets, and time_start / sampling_rate when needed) to a series:
    flows per end step into ``got`` (t -> [bytes, packets, flows]); bytes and packets there too, or
    spread into ``acc`` when it is given."""
    te = cols["time_end"]
    if len(te) == 0:
        return
    b, p = cols["bytes"], cols["packets"]
    if scaled:
        rate = rate_factor(cols["sampling_rate"])
        b, p = b * rate, p * rate
    steps = te // step_ms
    if acc is not None:
        acc.add_flows(cols["time_start"], te, [b, p])
        b = p = np.zeros(len(te), np.uint64)
    rep, (bs, ps), n = G.group_rows(G.key_words(steps), b, p)
    G.add_sums(got, (steps[rep] * step_ms).tolist(), bs, ps, n)
