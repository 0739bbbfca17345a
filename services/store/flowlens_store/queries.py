"""Query ops over the ring and SQLite: flows (keyset pages), top, series, advisories, rollups.

top and series are answered by one source, chosen by ``planner.use_ring``: the ring for a recent
window it still holds whole, else SQLite (everything committed). A flows page is split at the ring's
evicted_max_time_end: the ring serves time_end above it, SQLite the rest (flowpages.py). SQLite reads run on this
thread's own read-only connection inside one read transaction, cut off by a progress handler after
``storage.query_time_limit``.

Flows sit in two shapes (layout.py). Row-shaped ones (a partition's recent rows) have no time
index: they are read by rowid (seq) ranges, those of the partition's ``spans`` whose time_end range
meets the window. Sealed ones are column blocks (blockread.py), skipped on their time range and
statistics and decoded column by column. top and series sum over both; a flows page takes the rows
nearest the cursor from each and merges them by (time_end, seq).

The ops live in mixins by job: flows pages (flowpages.py), top and overview (topops.py), series
(seriesops.py); this module holds the connection, the time limit, the partition and span helpers
they share, and the advisories, notes and rollups ops.
"""
from __future__ import annotations

import json
import sqlite3
import time
from typing import Callable

import numpy as np

from flowmodel.events import ADVISORY_STATES, SEVERITIES
from flowmodel.protocol import QueryError, parse_when

from . import blockread as B
from . import histops
from .explore import explore as explore_op
from .ifcounters import ifcounters as ifcounters_op
from .notes import query as notes_op
from . import histread as H
from . import groupby as G
from . import planner as P
from .flowpages import FlowPages
from .hists import key_text
from .blockruns import BlockRuns
from .layout import connect_reader, now_ms
from .seriesops import SeriesOps
from .topops import TopOps

INT64_MAX = (1 << 63) - 1
MAX_SEQ_RANGES = 64  # a window meeting more separate runs of spans reads from the first to the last


class QueryEngine(FlowPages, TopOps, SeriesOps):
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
        self.sealed_totals: H.SealedTotals | None = None  # tops' merged rollup key totals, shared by the workers
        self.block_runs: BlockRuns | None = None  # unsealed hours' grouped block sums (blockruns.py), shared too
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

    def _hot_where(self, db, name: str, sealed, f: dict, where: str, params: list) -> list[tuple[str, list]]:
        """(where, params) per seq range of an unsealed partition that the window needs; one pair,
        unchanged, when the time index answers or the window needs all of it; none when it needs nothing."""
        ranges = self._seq_ranges(self._spans(db, name, sealed), f.get("since", -(1 << 62)),
                                  f.get("until", 1 << 62) - 1)
        if ranges is None:
            return [(where, params)]
        return [(f"{where} AND seq BETWEEN ? AND ?", params + [a, b]) for a, b in ranges]

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

    def explore(self, args: dict) -> dict:
        return explore_op(self, args)  # top N keys with their series per step (explore.py)

    def ifcounters(self, args: dict) -> dict:
        return ifcounters_op(self, args)  # an interface's sFlow counters per step (ifcounters.py)

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
            rep, (sums,), _c = G.group_rows([ids.astype(np.uint64)], got["bytes"][keep])
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


def _json(text):
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {}
