"""The write side of the SQLite warm tier: flows into their time partitions' row tables, rollups,
advisories and health events; pruning by time and size (pruning.py) and sealing (sealer.py) in
bounded steps between the flow transactions. The layout both sides know is in layout.py.

Partitions are keyed by ``time_end`` (not time_start): exporters send a flow when it ends, so
time_end follows arrival closely and a batch lands in one partition (two at a boundary), a
long-lived flow is not filed hours in the past, and the newest-first explorer order is the
partition order. Pruning drops whole partitions whose end is older than the retention.

Rows arrive in a row table with no index but the rowid (seq): time values arrive out of order, and
keeping even a time index up to date doubled the writer's SQLite cost per row. ``spans`` (at most
SPAN_ROWS rows each) map seq ranges to time_end ranges: time_end follows arrival, so a time window
maps to a few seq ranges, read by rowid (queries.py). Spans are written in the same transaction as
their rows and deleted with the row table.
"""
from __future__ import annotations

import json
import logging
import sqlite3

import numpy as np

from flowmodel.events import SEVERITY_RANK

from . import eventsink, ifcounters, notes
from .names import save as save_interface_names
from .layout import connect_reader, connect_writer, file_size, now_ms, partition_name  # noqa: F401 (re-exported)
from .rowcodec import (INT64_MAX, PARTITION_DDL, REST_DTYPE, SQL_COLUMNS, bulk_insert, flow_rows,  # noqa: F401
                       rows_to_columns)
from .pruning import WarmPruning
from .sealer import SEAL_GRACE_MS, Sealer  # noqa: F401

log = logging.getLogger(__name__)

SPAN_ROWS = 16_384  # rows one span covers at most: a flows page on the hot partition scans whole spans


# ------------------------------------------------------------------ the write side

class WarmWriter(WarmPruning):
    """Everything that changes the SQLite file. Used by exactly one thread (the writer); pruning is
    in WarmPruning (pruning.py)."""

    def __init__(self, path: str, partition_ms: int, prefix_v4: int, prefix_v6: int, cache_bytes: int = 64 << 20,
                 span_rows: int = SPAN_ROWS, seal_chunk_rows: int | None = None, seal_quiet_s: float = 0.0):
        self.path = path
        self.partition_ms = int(partition_ms)
        self.prefix_v4 = prefix_v4
        self.prefix_v6 = prefix_v6
        self.db = connect_writer(path, cache_bytes)
        self.partitions: dict[str, list] = {}  # name -> [start, end, rows, min, max, sealed, hot_rows]
        for name, s, e, rows, mn, mx, sealed, hot in self.db.execute(
                "SELECT name, start_ms, end_ms, rows, min_time, max_time, sealed, hot_rows FROM partitions"):
            self.partitions[name] = [s, e, rows, mn, mx, sealed, hot]
        self.row_tables = {r[0] for r in self.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'flows_[0-9]*' AND name NOT GLOB '*_*_*'")}
        row = self.db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        self.next_seq = int(row[0]) if row else 1
        self._nums = 0  # rows in temp.nums
        self.span_rows = span_rows
        self._spans: dict[str, list[int]] = {}  # partition -> its open span [seq_lo, seq_hi, time_lo, time_hi, rows]
        self._cover_unspanned()
        self.sealer = Sealer(self.db, self.partitions, self.row_tables, prefix_v4=prefix_v4, prefix_v6=prefix_v6,
                             quiet_s=seal_quiet_s, **({"block_rows": seal_chunk_rows} if seal_chunk_rows else {}))
        self.sealer.recover()
        # A broken exporter clock (or spoofed packets) can date every datagram in a different hour: past
        # max_partitions, flows that would open a partition outside [now - retention, now + future] are
        # dropped and counted per exporter instead of growing the schema without end. Under the cap they
        # are kept (a replayed old capture is a normal way to reproduce a problem).
        self.max_partitions: int | None = None
        self.retention_ms = 0
        self.future_ms = 86_400_000
        self.out_of_range_flows = 0
        self.out_of_range_by_exporter: dict[bytes, int] = {}
        self.size_pruned_partitions = 0  # dropped for storage.max_bytes
        self.size_pruned_flows = 0
        self.vacuum_due = False
        self.future_pruned_partitions = 0  # dropped at start by prune_future
        self.future_pruned_flows = 0
        self.ifcounter_retention_ms = 30 * 86_400_000  # storage.ifcounter_retention, _max_rows (set by the service)
        self.ifcounter_max_rows = 2_000_000

    def _cover_unspanned(self) -> None:
        """An unsealed partition with rows but no spans was written by a version that kept the time
        index from the start: one span over everything it may hold keeps queries reading all of it."""
        spanned = {r[0] for r in self.db.execute("SELECT DISTINCT part FROM spans")}
        for name, p in self.partitions.items():
            if p[6] and name in self.row_tables and name not in spanned:
                self.db.execute("INSERT OR IGNORE INTO spans (part, seq_lo, seq_hi, time_lo, time_hi, rows) "
                                "VALUES (?, ?, ?, ?, ?, ?)", (name, 0, self.next_seq - 1, p[3], p[4], p[2]))

    def close(self) -> None:
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self.db.close()

    def _ensure_nums(self, n: int) -> None:
        """temp.nums holds 0..at least n-1: the row source of bulk_insert (in memory, this connection only)."""
        if n <= self._nums:
            return
        want = max(n, 2 * self._nums, 65_536)
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS nums (k INTEGER PRIMARY KEY)")
        self.db.execute("INSERT INTO temp.nums (k) WITH RECURSIVE c(x) AS (SELECT ? UNION ALL SELECT x + 1 FROM c "
                        "WHERE x + 1 < ?) SELECT x FROM c", (self._nums, want))
        self._nums = want

    def _ensure_partition(self, start: int) -> str:
        """The partition's row table, created for its first rows, and again for late rows after sealing."""
        name = partition_name(start)
        if name not in self.row_tables:
            self.db.execute(PARTITION_DDL.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS").format(table=name))
            self.row_tables.add(name)
        if name not in self.partitions:
            self.db.execute("INSERT OR IGNORE INTO partitions (name, start_ms, end_ms) VALUES (?, ?, ?)",
                            (name, start, start + self.partition_ms))
            self.partitions[name] = [start, start + self.partition_ms, 0, None, None, 0, 0]
        return name

    def write_flows(self, cols: dict[str, np.ndarray]) -> int:
        """One transaction: the rows (with their seq column) into their partitions, plus rollups."""
        n = len(cols["time_end"])
        if n == 0:
            return 0
        te = cols["time_end"]
        part = (np.maximum(te, 0) // self.partition_ms) * self.partition_ms
        starts = np.unique(part)
        dropped_before = (self.out_of_range_flows, dict(self.out_of_range_by_exporter))  # a retry counts them again
        if self.max_partitions is not None:
            cols, part, starts = self._drop_out_of_range(cols, part, starts)
            n = len(cols["time_end"])
            if n == 0:
                return 0
        written = []  # (partition, its rows, whether its row table was empty): mirrored after the commit
        # what the transaction changes in memory, put back if it does not commit (a full disk): the
        # partition counters, the row tables it creates, temp.nums and next_seq roll back with it
        names = [partition_name(st) for st in starts.tolist()]
        before = {name: (list(self.partitions[name]) if name in self.partitions else None, name in self.row_tables)
                  for name in names}
        nums, next_seq = self._nums, self.next_seq
        committed = []  # (partition, its rows, min and max time once this transaction commits)
        self.db.execute("BEGIN")
        try:
            for start in starts.tolist():
                name = self._ensure_partition(start)
                sel = slice(None) if len(starts) == 1 else (part == start)
                sub = cols if len(starts) == 1 else {c: a[sel] for c, a in cols.items()}
                written.append(name)
                rows = self.sealer.absorb(name, sub, self.partitions[name][6] == 0)
                p = self.partitions[name]
                if len(rows["seq"]):
                    self._ensure_nums(len(rows["seq"]))
                    select, params = bulk_insert(rows)
                    self.db.execute(f"INSERT INTO {name} {select}", params)
                    p[6] += len(rows["seq"])
                st = sub["time_end"]
                mn, mx = int(st.min()), int(st.max())
                # rows and time bounds change in memory once committed: status never counts a
                # transaction that a full disk then rolls back
                counted = (p[2] + len(st), mn if p[3] is None else min(p[3], mn), mx if p[4] is None else max(p[4], mx))
                committed.append((p, counted))
                if p[5]:  # late rows for a sealed partition: its rollups no longer cover it until it is sealed again
                    p[5] = 0
                    self.db.execute("DELETE FROM hists WHERE start_ms = ? AND end_ms = ?", (p[0], p[1]))
                self.db.execute("UPDATE partitions SET rows = ?, min_time = ?, max_time = ?, hot_rows = ?, sealed = ? "
                                "WHERE name = ?", (*counted, p[6], p[5], name))
                if len(rows["seq"]):  # spans of at most span_rows, however large the transaction
                    sq, st = rows["seq"], rows["time_end"]
                    for j in range(0, len(sq), self.span_rows):
                        piece = slice(j, j + self.span_rows)
                        ps, pt = sq[piece], st[piece]
                        self._span(name, int(ps.min()), int(ps.max()), int(pt.min()), int(pt.max()), len(ps))
            self.next_seq = max(self.next_seq, int(cols["seq"].max()) + 1)
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('next_seq', ?)", (self.next_seq,))
            self.db.execute("COMMIT")
            for p, counted in committed:
                p[2], p[3], p[4] = counted
        except BaseException:
            for name, (p, had_table) in before.items():
                if p is None:
                    self.partitions.pop(name, None)
                else:
                    self.partitions[name][:] = p  # in place: the sealer holds the same lists
                if not had_table:
                    self.row_tables.discard(name)
            self._nums, self.next_seq = nums, next_seq
            self.out_of_range_flows, self.out_of_range_by_exporter = dropped_before
            self._spans.clear()  # the open spans may be rolled back too: the next rows open new ones
            self.sealer.abandon(written)
            if self.db.in_transaction:  # SQLITE_FULL may have rolled it back already
                self.db.execute("ROLLBACK")
            raise
        return n  # rows written (out-of-range ones dropped above are not)

    def _drop_out_of_range(self, cols: dict, part: np.ndarray, starts: np.ndarray):
        new = [st for st in starts.tolist() if partition_name(st) not in self.partitions]
        if len(self.partitions) + len(new) <= self.max_partitions:
            return cols, part, starts
        now = now_ms()
        lo, hi = now - self.retention_ms - self.partition_ms, now + self.future_ms
        bad = [st for st in new if not lo <= st <= hi]
        if not bad:
            return cols, part, starts
        drop = np.isin(part, np.array(bad, dtype=part.dtype))
        self.out_of_range_flows += int(drop.sum())
        exp, counts = np.unique(cols["exporter"][drop], return_counts=True)
        for e, c in zip(exp.tolist(), counts.tolist()):
            if e in self.out_of_range_by_exporter or len(self.out_of_range_by_exporter) < 1024:
                self.out_of_range_by_exporter[e] = self.out_of_range_by_exporter.get(e, 0) + c
        keep = ~drop
        return {c: a[keep] for c, a in cols.items()}, part[keep], np.setdiff1d(starts, bad)

    def _span(self, name: str, seq_lo: int, seq_hi: int, t_lo: int, t_hi: int, rows: int) -> None:
        """Grow the partition's open span by these rows (inside the caller's transaction), or open a new
        one once it holds span_rows. seq only grows, so spans never overlap in seq."""
        sp = self._spans.get(name)
        if sp is not None and sp[4] + rows <= self.span_rows and seq_lo > sp[1]:
            sp[1], sp[2], sp[3], sp[4] = seq_hi, min(sp[2], t_lo), max(sp[3], t_hi), sp[4] + rows
            self.db.execute("UPDATE spans SET seq_hi = ?, time_lo = ?, time_hi = ?, rows = ? WHERE part = ? AND seq_lo = ?",
                            (sp[1], sp[2], sp[3], sp[4], name, sp[0]))
            return
        self._spans[name] = [seq_lo, seq_hi, t_lo, t_hi, rows]
        self.db.execute("INSERT OR REPLACE INTO spans (part, seq_lo, seq_hi, time_lo, time_hi, rows) VALUES (?, ?, ?, ?, ?, ?)",
                        (name, seq_lo, seq_hi, t_lo, t_hi, rows))

    # ---------------------------------------------------------------- sealing (sealer.py)

    def seal_pending(self) -> bool:
        """Sealing work under way: call seal_step again soon."""
        return self.sealer.pending()

    def seal_step(self, now: int, chunk_rows: int | None = None) -> bool:
        """One bounded piece of sealing work, its own transaction; returns whether work remains."""
        self._spans_sync()
        pending = self.sealer.step(now)
        if not pending and not self.vacuum_due:
            # a bulk load sealed many partitions at once: their row pages are free and no flow will need
            # them soon; hand them back when they are over a quarter of the file (and over 64 MiB)
            free, total = (self.db.execute(f"PRAGMA {k}").fetchone()[0] for k in ("freelist_count", "page_count"))
            self.vacuum_due = free > max(total // 4, (64 << 20) // 4096)
        return pending

    def seal_due(self, now: int) -> int:
        """Seal every due partition now, step by step (tests, tools); returns how many were sealed.
        The writer thread calls seal_step between its transactions instead."""
        before = {n for n, p in self.partitions.items() if p[5]}
        while self.sealer.step(now) or self.sealer.due(now):
            pass
        return len({n for n, p in self.partitions.items() if p[5]} - before)

    def _spans_sync(self) -> None:
        # a row table the sealer dropped takes its open span with it
        for name in [n for n in self._spans if n not in self.row_tables]:
            del self._spans[name]

    # ---------------------------------------------------------------- events

    def write_events(self, events: list[tuple[str, dict, int]]) -> None:
        """Advisory and health events, one transaction. ``events``: (topic, body, received_at_ms)."""
        self.db.execute("BEGIN")
        try:
            for topic, body, received in events:
                if topic == "advisory":
                    self._upsert_advisory(body, received)
                elif topic == "note":  # an operator's acknowledgement or silence (flowmodel.notes)
                    notes.save(self.db, body, received)
                elif topic == "interfaces":  # interface names (names.NameBook.apply)
                    save_interface_names(self.db, body, received)
                elif topic == "ifcounters":  # sFlow interface counters (ifcounters.check_event)
                    ifcounters.save(self.db, body["rows"])
                elif topic != eventsink.MARK_ONLY:
                    self.db.execute("INSERT OR REPLACE INTO health (source, kind, received_at, body) VALUES (?, ?, ?, ?)",
                                    (str(body.get("source")), str(body.get("kind", "")), received,
                                     json.dumps(body, default=str)))
                mark = body.get(eventsink.EVENT_MARK)
                if mark is not None:  # a confirmed event: its stream's mark commits with it
                    eventsink.save_mark(self.db, mark, received)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def _upsert_advisory(self, a: dict, received: int) -> None:
        self.db.execute(
            "INSERT INTO advisories (key, analyzer, subject, severity, severity_rank, state, first_seen, last_seen, "
            "title, description, action, evidence, filter, updates, source, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET analyzer = excluded.analyzer, subject = excluded.subject, "
            "severity = excluded.severity, severity_rank = excluded.severity_rank, state = excluded.state, "
            # a condition raised again after it resolved is a new episode: its own first_seen and count
            "first_seen = CASE WHEN state = 'resolved' AND excluded.state = 'raised' THEN excluded.first_seen "
            "ELSE min(first_seen, excluded.first_seen) END, last_seen = max(last_seen, excluded.last_seen), "
            "title = excluded.title, description = excluded.description, action = excluded.action, "
            "evidence = excluded.evidence, filter = excluded.filter, "
            "updates = CASE WHEN state = 'resolved' AND excluded.state = 'raised' THEN 1 ELSE updates + 1 END, "
            "source = excluded.source, received_at = excluded.received_at",
            (a["key"], str(a.get("analyzer", "")), str(a.get("subject", "")), a["severity"],
             SEVERITY_RANK[a["severity"]], a["state"], int(a.get("first_seen") or a.get("last_seen") or received),
             int(a.get("last_seen") or a.get("first_seen") or received), str(a.get("title", "")),
             str(a.get("description", "")), str(a.get("action", "")), json.dumps(a.get("evidence") or {}, default=str),
             json.dumps(a.get("filter") or {}, default=str), str(a.get("source", "")), received))

    def load_health(self) -> dict[str, dict]:
        out = {}
        for source, received, body in self.db.execute("SELECT source, received_at, body FROM health"):
            try:
                b = json.loads(body)
            except ValueError:
                continue
            b["_received_at"] = received
            out[source] = b
        return out
