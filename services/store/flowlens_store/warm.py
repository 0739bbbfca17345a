"""The SQLite warm tier: time-partitioned flow tables, rollups, advisories and health events.

Partitions are keyed by ``time_end`` (not time_start): exporters send a flow when it ends, so
time_end follows arrival closely and a batch lands in one partition (two at a boundary), a
long-lived flow is not filed hours in the past, and the newest-first explorer order is the
partition order. Pruning drops whole partitions whose end is older than the retention (renamed,
then deleted in chunks between the writer's transactions).

A partition row is ``seq`` (INTEGER PRIMARY KEY: inserts append), the columns queries filter and
sum on, and ``rest``: the remaining schema columns packed in one BLOB (REST_DTYPE), so an insert
binds 11 values instead of 27. A partition gets its indexes when it is sealed (its end passed
SEAL_GRACE_MS ago), not while rows arrive: time values arrive out of order, and keeping even the time
index up to date doubled the writer's SQLite cost per row.

Sealing copies the partition, in chunks of SEAL_CHUNK_ROWS in seq order, into ``<name>_sealing``,
which has the indexes from the start: (time_end), (seq >> SEG_BITS, src_addr, time_end) and
(seq >> SEG_BITS, dst_addr, time_end). Each chunk is a transaction of its own between the writer's
flow transactions, so the writer never stops for long. The segment term keeps each chunk's index
inserts inside one 65,536-row slice of each address index (a few MiB, in cache): plain
(src_addr, time_end) indexes grown row by row cost more per chunk the larger the partition
(0.24 s -> 1.4 s per 50k rows over the first 2M), and one CREATE INDEX stalls the writer for the
whole partition (4-6 us a row, 150 s for an hour at 10k flows/s). Queries with an address filter
name the segments (queries.py). The chunk that finds the copy caught up renames the tables in the
same transaction; the replaced table is deleted in chunks afterwards. Partitions sealed by older
versions keep their (time_end), (src_addr, time_end), (dst_addr, time_end) indexes.

Until then the partition is found by time through ``spans``: one row per run of transactions
(at most SPAN_ROWS rows) with its seq range and its time_end range. time_end follows arrival, so a
time window maps to a few seq ranges, and seq is the rowid: a query reads those rowid ranges of the
hot partition instead of walking a time index (queries.py). Spans are written in the same
transaction as their rows and deleted when the partition is sealed.
Addresses are 16-byte BLOBs, so a CIDR is ``BETWEEN lo AND hi`` on the address indexes.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from typing import Iterable

import numpy as np

from flowmodel import addr
from flowmodel.events import SEVERITY_RANK
from flowmodel.schema import FLOW_COLUMNS

log = logging.getLogger(__name__)

SQL_COLUMNS = ("seq", "time_end", "src_addr", "dst_addr", "src_port", "dst_port", "protocol", "bytes",
               "packets", "exporter", "rest")
REST_COLUMNS = tuple(c for c in FLOW_COLUMNS if c not in SQL_COLUMNS)
REST_DTYPE = np.dtype([(c, FLOW_COLUMNS[c][0]) for c in REST_COLUMNS])  # packed, no padding
REST_VOID = np.dtype((np.void, REST_DTYPE.itemsize))
SEAL_GRACE_MS = 120_000
SPAN_ROWS = 16_384  # rows one span covers at most: a flows page on the hot partition scans whole spans
SEAL_CHUNK_ROWS = 32_768  # rows copied per sealing step: about 0.2 s with the three indexes on this class of machine
SEG_BITS = 16  # address indexes lead with seq >> SEG_BITS: inserts touch one 65,536-row segment of the index
INT64_MAX = (1 << 63) - 1
MINUTE_MS = 60_000
HOUR_MS = 3_600_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS partitions (
    name TEXT PRIMARY KEY, start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL,
    rows INTEGER NOT NULL DEFAULT 0, min_time INTEGER, max_time INTEGER, sealed INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS spans (
    part TEXT NOT NULL, seq_lo INTEGER NOT NULL, seq_hi INTEGER NOT NULL, time_lo INTEGER NOT NULL,
    time_hi INTEGER NOT NULL, rows INTEGER NOT NULL, PRIMARY KEY (part, seq_lo)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollups (
    kind TEXT NOT NULL, minute_ms INTEGER NOT NULL, key TEXT NOT NULL,
    bytes INTEGER NOT NULL, packets INTEGER NOT NULL, flows INTEGER NOT NULL,
    sbytes INTEGER NOT NULL DEFAULT 0, spackets INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, minute_ms, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollups_hourly (
    kind TEXT NOT NULL, hour_ms INTEGER NOT NULL, key TEXT NOT NULL,
    bytes INTEGER NOT NULL, packets INTEGER NOT NULL, flows INTEGER NOT NULL,
    sbytes INTEGER NOT NULL, spackets INTEGER NOT NULL,
    PRIMARY KEY (kind, hour_ms, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS advisories (
    key TEXT PRIMARY KEY, analyzer TEXT, subject TEXT, severity TEXT, severity_rank INTEGER, state TEXT,
    first_seen INTEGER, last_seen INTEGER, title TEXT, description TEXT, action TEXT,
    evidence TEXT, filter TEXT, updates INTEGER NOT NULL DEFAULT 1, source TEXT, received_at INTEGER);
CREATE INDEX IF NOT EXISTS advisories_order ON advisories (severity_rank, last_seen);
CREATE TABLE IF NOT EXISTS health (source TEXT PRIMARY KEY, kind TEXT, received_at INTEGER, body TEXT);
"""


PARTITION_DDL = ("CREATE TABLE {table} (seq INTEGER PRIMARY KEY, time_end INTEGER NOT NULL, "
                 "src_addr BLOB NOT NULL, dst_addr BLOB NOT NULL, src_port INTEGER NOT NULL, "
                 "dst_port INTEGER NOT NULL, protocol INTEGER NOT NULL, bytes INTEGER NOT NULL, "
                 "packets INTEGER NOT NULL, exporter BLOB NOT NULL, rest BLOB NOT NULL)")
SEALED_INDEXES = ("CREATE INDEX {name}_te ON {table} (time_end)",
                  f"CREATE INDEX {{name}}_sseg ON {{table}} (seq >> {SEG_BITS}, src_addr, time_end)",
                  f"CREATE INDEX {{name}}_dseg ON {{table}} (seq >> {SEG_BITS}, dst_addr, time_end)")


def partition_name(start_ms: int) -> str:
    return f"flows_{start_ms}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def connect_writer(path: str, cache_bytes: int = 64 << 20) -> sqlite3.Connection:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA cache_size=-{max(1024, cache_bytes // 1024)}")
    db.execute("PRAGMA temp_store=MEMORY")
    db.executescript(SCHEMA)
    if "sbytes" not in {r[1] for r in db.execute("PRAGMA table_info(rollups)")}:
        # a file from before scaled rollups: its history counts as unsampled
        db.execute("ALTER TABLE rollups ADD COLUMN sbytes INTEGER NOT NULL DEFAULT 0")
        db.execute("ALTER TABLE rollups ADD COLUMN spackets INTEGER NOT NULL DEFAULT 0")
        db.execute("UPDATE rollups SET sbytes = bytes, spackets = packets")
    if db.execute("SELECT 1 FROM rollups_hourly LIMIT 1").fetchone() is None:
        # a file from before hourly rollups: its minutes become hours before their shorter retention
        # prunes them (idempotent: runs only while the hourly table is empty)
        db.execute("INSERT INTO rollups_hourly (kind, hour_ms, key, bytes, packets, flows, sbytes, spackets) "
                   "SELECT kind, (minute_ms / 3600000) * 3600000, key, sum(bytes), sum(packets), sum(flows), "
                   "sum(sbytes), sum(spackets) FROM rollups GROUP BY 1, 2, 3")
    return db


def connect_reader(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(f"file:{os.path.abspath(path)}?mode=ro", uri=True, isolation_level=None,
                         check_same_thread=False)
    db.execute("PRAGMA query_only=1")
    db.execute("PRAGMA cache_size=-16384")
    return db


def file_size(path: str) -> int:
    total = 0
    for p in (path, path + "-wal"):
        try:
            total += os.path.getsize(p)
        except OSError:
            pass
    return total


# ------------------------------------------------------------------ rows <-> columns

INT_COLUMNS = ("seq", "time_end", "src_port", "dst_port", "protocol", "bytes", "packets")
ADDR_COLUMNS = ("src_addr", "dst_addr", "exporter")
_POW10 = 10 ** np.arange(18, -1, -1, dtype=np.uint64)  # 1e18 .. 1


_POW10_32 = 10 ** np.arange(9, -1, -1, dtype=np.uint32)  # 1e9 .. 1


def _digits(v: np.ndarray) -> tuple[np.ndarray, int]:
    """Non-negative uint64 column as fixed-width ASCII decimal, (n, width) uint8; width fits the max.
    Columns below 2**32 (ports, counters, times relative to the batch) divide in uint32, about
    three times faster than uint64 division."""
    top = int(v.max()) if len(v) else 0
    width = len(str(top))
    if top < 1 << 32:
        d = (v.astype(np.uint32)[:, None] // _POW10_32[10 - width:][None, :]) % np.uint32(10)
    else:
        d = (v[:, None] // _POW10[19 - width:][None, :]) % np.uint64(10)
    return d.astype(np.uint8) + np.uint8(48), width


def bulk_insert(cols: dict[str, np.ndarray]) -> tuple[str, dict]:
    """One INSERT ... SELECT that SQLite runs in C over the whole batch, and its four parameters.

    executemany binds 11 values per row under the GIL (about 3 us a row, more than SQLite's own work).
    Instead the batch is bound as three BLOBs and SQLite slices them per row with substr():
    ``i``: the integer columns as fixed-width ASCII decimals (seq and time_end relative to the batch
    minimum), read back with CAST; a run of consecutive seq values is not encoded at all (``k + first``); ``a``: src, dst, exporter (48 bytes a row); ``r``: REST_DTYPE
    records. Rows come from ``temp.nums`` (0..n-1, see WarmWriter._ensure_nums). substr on a BLOB is
    O(1); on TEXT it would scan from the start, so ``i`` must stay a BLOB. The statement text depends
    on the column widths, so SQLite's statement cache sees a handful of variants."""
    n = len(cols["time_end"])
    fields, pieces, width = {}, [], 0
    for c in INT_COLUMNS:
        v = cols[c]
        if c == "seq" and n and int(v[-1]) - int(v[0]) == n - 1 and bool((np.diff(v) == 1).all()):
            fields[c] = (None, 0, int(v[0]))  # consecutive (the usual case): seq is k + first, no digits
            continue
        if c in ("seq", "time_end"):
            base = int(v.min())
            u = (v.astype(np.int64) - base).astype(np.uint64)
        else:
            base = 0
            u = np.minimum(v.astype(np.uint64), np.uint64(INT64_MAX))
        d, w = _digits(u)
        pieces.append(d)
        fields[c] = (width, w, base)
        width += w
    ints = np.ascontiguousarray(np.concatenate(pieces, axis=1)).tobytes()
    addrs = np.empty((n, 3), "V16")
    for j, c in enumerate(ADDR_COLUMNS):
        addrs[:, j] = cols[c]
    rest = np.empty(n, REST_DTYPE)
    for c in REST_COLUMNS:
        rest[c] = cols[c]
    rw = REST_DTYPE.itemsize
    exprs = []
    for c in SQL_COLUMNS:
        if c in fields and fields[c][0] is None:
            exprs.append(f"k + {fields[c][2]}")
        elif c in fields:
            off, w, base = fields[c]
            e = f"CAST(substr(:i, k * {width} + {off + 1}, {w}) AS INTEGER)"
            exprs.append(f"{e} + {base}" if base else e)
        elif c in ADDR_COLUMNS:
            exprs.append(f"substr(:a, k * 48 + {16 * ADDR_COLUMNS.index(c) + 1}, 16)")
        else:
            exprs.append(f"substr(:r, k * {rw} + 1, {rw})")
    sql = f"SELECT {', '.join(exprs)} FROM temp.nums WHERE k < :n ORDER BY k"
    return sql, {"i": ints, "a": addrs.tobytes(), "r": rest.tobytes(), "n": n}


def flow_rows(cols: dict[str, np.ndarray]) -> Iterable[tuple]:
    """Row tuples for executemany, built column-wise (one tolist per column). Kept for reference
    and tests; the writer uses bulk_insert."""
    n = len(cols["time_end"])
    rest = np.empty(n, REST_DTYPE)
    for c in REST_COLUMNS:
        rest[c] = cols[c]
    lists = []
    for c in SQL_COLUMNS:
        if c == "rest":
            lists.append(rest.view(REST_VOID).tolist())
        elif c in ("bytes", "packets"):
            lists.append(np.minimum(cols[c], INT64_MAX).astype(np.int64).tolist())
        else:
            lists.append(cols[c].tolist())
    return zip(*lists)


def rows_to_columns(rows: list[tuple]) -> dict[str, np.ndarray]:
    """SELECT <SQL_COLUMNS> rows back into schema columns plus seq."""
    n = len(rows)
    cols: dict[str, np.ndarray] = {}
    if n == 0:
        cols = {name: np.zeros(0, dt) for name, (dt, _d) in FLOW_COLUMNS.items()}
        cols["seq"] = np.zeros(0, np.int64)
        return cols
    t = list(zip(*rows))
    for i, c in enumerate(SQL_COLUMNS):
        if c == "rest":
            rest = np.frombuffer(b"".join(t[i]), REST_DTYPE)
            for rc in REST_COLUMNS:
                cols[rc] = np.ascontiguousarray(rest[rc])
        elif c == "seq":
            cols[c] = np.array(t[i], np.int64)
        elif FLOW_COLUMNS[c][0].kind == "V":
            cols[c] = np.frombuffer(b"".join(t[i]), FLOW_COLUMNS[c][0])
        else:
            cols[c] = np.array(t[i], np.int64).astype(FLOW_COLUMNS[c][0])
    return cols


def _addr_words(col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A V16 address column as its big-endian (high, low) uint64 halves."""
    u = np.ascontiguousarray(col).view(">u8").reshape(-1, 2)
    return u[:, 0].astype(np.uint64), u[:, 1].astype(np.uint64)


def _low_mask(keep_bits: int) -> np.uint64:
    """uint64 with the top ``keep_bits`` bits set (0..64)."""
    keep_bits = max(0, min(64, keep_bits))
    return np.uint64(((1 << 64) - 1) ^ ((1 << (64 - keep_bits)) - 1))


def _prefix_words(col: np.ndarray, prefix_v4: int, prefix_v6: int) -> tuple[np.ndarray, np.ndarray]:
    """(high, low) words of each address with its host bits cleared (IPv4-mapped to prefix_v4, IPv6
    to prefix_v6): what addr.mask_column does, on two words instead of sixteen bytes."""
    hi, lo = _addr_words(col)
    v4 = (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))
    hi6 = hi & _low_mask(prefix_v6)
    lo6 = lo & _low_mask(prefix_v6 - 64)
    lo4 = lo & _low_mask(32 + prefix_v4)
    return np.where(v4, hi, hi6), np.where(v4, lo4, lo6)


# ------------------------------------------------------------------ the write side

class WarmWriter:
    """Everything that changes the SQLite file. Used by exactly one thread (the writer)."""

    def __init__(self, path: str, partition_ms: int, prefix_v4: int, prefix_v6: int, cache_bytes: int = 64 << 20,
                 span_rows: int = SPAN_ROWS, seal_chunk_rows: int = SEAL_CHUNK_ROWS):
        self.path = path
        self.partition_ms = int(partition_ms)
        self.prefix_v4 = prefix_v4
        self.prefix_v6 = prefix_v6
        self.db = connect_writer(path, cache_bytes)
        self.partitions: dict[str, list] = {}  # name -> [start, end, rows, min, max, sealed]
        for name, s, e, rows, mn, mx, sealed in self.db.execute(
                "SELECT name, start_ms, end_ms, rows, min_time, max_time, sealed FROM partitions"):
            self.partitions[name] = [s, e, rows, mn, mx, sealed]
        row = self.db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        self.next_seq = int(row[0]) if row else 1
        self._nums = 0  # rows in temp.nums
        self.span_rows = span_rows
        self.seal_chunk_rows = seal_chunk_rows
        self._spans: dict[str, list[int]] = {}  # partition -> its open span [seq_lo, seq_hi, time_lo, time_hi, rows]
        self._cover_unspanned()
        self._seal: dict | None = None  # the partition being copied into <name>_sealing, and how far
        self._old_tables: list[str] = []  # replaced tables of sealed partitions, deleted in chunks
        self._recover_seal()
        # A broken exporter clock (or spoofed packets) can date every datagram in a different hour: past
        # max_partitions, flows that would open a partition outside [now - retention, now + future] are
        # dropped and counted per exporter instead of growing the schema without end. Under the cap they
        # are kept (a replayed old capture is a normal way to reproduce a problem).
        self.max_partitions: int | None = None
        self.retention_ms = 0
        self.future_ms = 86_400_000
        self.out_of_range_flows = 0
        self.out_of_range_by_exporter: dict[bytes, int] = {}
        self.future_pruned_partitions = 0  # dropped at start by prune_future
        self.future_pruned_flows = 0

    def _cover_unspanned(self) -> None:
        """An unsealed partition with rows but no spans was written by a version that kept the time
        index from the start: one span over everything it may hold keeps queries reading all of it."""
        spanned = {r[0] for r in self.db.execute("SELECT DISTINCT part FROM spans")}
        for name, p in self.partitions.items():
            if not p[5] and p[2] and name not in spanned:
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
        name = partition_name(start)
        if name not in self.partitions:
            self.db.execute(PARTITION_DDL.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS").format(table=name))
            self.db.execute("INSERT OR IGNORE INTO partitions (name, start_ms, end_ms) VALUES (?, ?, ?)",
                            (name, start, start + self.partition_ms))
            self.partitions[name] = [start, start + self.partition_ms, 0, None, None, 0]
        return name

    def write_flows(self, cols: dict[str, np.ndarray]) -> int:
        """One transaction: the rows (with their seq column) into their partitions, plus rollups."""
        n = len(cols["time_end"])
        if n == 0:
            return 0
        te = cols["time_end"]
        part = (np.maximum(te, 0) // self.partition_ms) * self.partition_ms
        starts = np.unique(part)
        if self.max_partitions is not None:
            cols, part, starts = self._drop_out_of_range(cols, part, starts)
            n = len(cols["time_end"])
            if n == 0:
                return 0
        self.db.execute("BEGIN")
        try:
            for start in starts.tolist():
                name = self._ensure_partition(start)
                sel = slice(None) if len(starts) == 1 else (part == start)
                sub = cols if len(starts) == 1 else {c: a[sel] for c, a in cols.items()}
                self._ensure_nums(len(sub["time_end"]))
                select, params = bulk_insert(sub)
                self.db.execute(f"INSERT INTO {name} {select}", params)
                p = self.partitions[name]
                st = sub["time_end"]
                p[2] += len(st)
                mn, mx = int(st.min()), int(st.max())
                p[3] = mn if p[3] is None else min(p[3], mn)
                p[4] = mx if p[4] is None else max(p[4], mx)
                self.db.execute("UPDATE partitions SET rows = ?, min_time = ?, max_time = ? WHERE name = ?",
                                (p[2], p[3], p[4], name))
                if not p[5]:  # spans of at most span_rows, however large the transaction
                    sq = sub["seq"]
                    for j in range(0, len(sq), self.span_rows):
                        piece = slice(j, j + self.span_rows)
                        ps, pt = sq[piece], st[piece]
                        self._span(name, int(ps.min()), int(ps.max()), int(pt.min()), int(pt.max()), len(ps))
            self._write_rollups(cols)
            self.next_seq = max(self.next_seq, int(cols["seq"].max()) + 1)
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('next_seq', ?)", (self.next_seq,))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            self._spans.clear()  # the open spans may be rolled back too: the next rows open new ones
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

    def _write_rollups(self, cols: dict[str, np.ndarray]) -> None:
        """Per-minute and per-hour sums by destination prefix and by exporter, upserted, as exported and
        times the sampling rate (sbytes, spackets: what the anomaly baseline compares). Minutes are kept
        for storage.rollup_retention, hours (a sixtieth of the rows) for storage.rollup_hourly_retention:
        a two-week hour-of-week baseline over thousands of prefixes. Grouped in numpy on uint64
        key words (planner.group_rows: the constant ::ffff: word dropped, the rest packed and sorted
        once), the prefix mask applied to those words; only the groups become Python rows."""
        from .planner import group_rows

        minute = (cols["time_end"] // MINUTE_MS) * MINUTE_MS
        mword = minute.astype(np.int64).view(np.uint64) ^ np.uint64(1 << 63)  # signed order as unsigned
        upsert = ("INSERT INTO {table} (kind, {t}, key, bytes, packets, flows, sbytes, spackets) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                  "ON CONFLICT (kind, {t}, key) DO UPDATE SET bytes = bytes + excluded.bytes, "
                  "packets = packets + excluded.packets, flows = flows + excluded.flows, "
                  "sbytes = sbytes + excluded.sbytes, spackets = spackets + excluded.spackets")
        sql = upsert.format(table="rollups", t="minute_ms")
        sql_hourly = upsert.format(table="rollups_hourly", t="hour_ms")
        rate = np.maximum(cols["sampling_rate"], 1).astype(np.uint64)
        sb, sp = cols["bytes"] * rate, cols["packets"] * rate
        for kind, (hi, lo) in (("dst_prefix", _prefix_words(cols["dst_addr"], self.prefix_v4, self.prefix_v6)),
                               ("exporter", _addr_words(cols["exporter"]))):
            rep, (b, p, bs, ps), counts = group_rows([mword, hi, lo], cols["bytes"], cols["packets"], sb, sp)
            ghi, glo, gmin = hi[rep], lo[rep], minute[rep]
            texts: dict[bytes, str] = {}
            self.db.executemany(sql, self._rollup_rows(kind, gmin, ghi, glo, (b, p, counts, bs, ps), texts))
            # the hours, from the minute groups (far fewer than the flows)
            hour = (gmin // HOUR_MS) * HOUR_MS
            hword = hour.astype(np.int64).view(np.uint64) ^ np.uint64(1 << 63)
            hrep, sums, _n = group_rows([hword, ghi, glo], b, p, counts, bs, ps)
            self.db.executemany(sql_hourly, self._rollup_rows(kind, hour[hrep], ghi[hrep], glo[hrep], sums, texts))

    def _rollup_rows(self, kind: str, times: np.ndarray, hi: np.ndarray, lo: np.ndarray, sums, texts: dict) -> list:
        b, p, n, bs, ps = sums
        keys = np.empty((len(times), 2), ">u8")
        keys[:, 0], keys[:, 1] = hi, lo
        rows = []
        times = times.tolist()
        for i, a in enumerate(keys.view("V16").ravel().tolist()):
            t = texts.get(a)
            if t is None:
                t = texts[a] = (addr.prefix_text(a, self.prefix_v4, self.prefix_v6) if kind == "dst_prefix"
                                else addr.to_text(a))
            rows.append((kind, times[i], t, min(int(b[i]), INT64_MAX), min(int(p[i]), INT64_MAX), int(n[i]),
                         min(int(bs[i]), INT64_MAX), min(int(ps[i]), INT64_MAX)))
        return rows

    # ---------------------------------------------------------------- sealing, in bounded steps

    def _sealable(self, now: int) -> list[str]:
        return [name for name, p in sorted(self.partitions.items()) if not p[5] and p[1] + SEAL_GRACE_MS <= now]

    def seal_pending(self) -> bool:
        """A seal or the deletion of a replaced table is under way: call seal_step again soon."""
        return self._seal is not None or bool(self._old_tables)

    def seal_step(self, now: int, chunk_rows: int | None = None) -> bool:
        """One bounded piece of sealing work, its own transaction (about 0.2-0.3 s a 32k-row chunk):
        delete a chunk of a replaced table, or copy the next chunk of the partition being sealed into
        ``<name>_sealing`` (which has the three indexes from the start), or start sealing the oldest
        due partition. The chunk that finds the copy caught up swaps the tables in the same
        transaction: the writer is the only writer, so no row lands in between. Returns whether work
        remains (seal_pending)."""
        chunk_rows = chunk_rows or self.seal_chunk_rows
        if self._old_tables:
            self._delete_chunk(self._old_tables[0], chunk_rows)
        elif self._seal is None:
            due = self._sealable(now)
            if due:
                self._begin_seal(due[0])
        else:
            self._copy_chunk(chunk_rows)
        return self.seal_pending()

    def seal_due(self, now: int) -> int:
        """Seal every due partition now, step by step (tests, tools); returns how many were sealed.
        The writer thread calls seal_step between its transactions instead."""
        sealed = 0
        while True:
            before = sum(1 for p in self.partitions.values() if p[5])
            pending = self.seal_step(now)
            sealed += sum(1 for p in self.partitions.values() if p[5]) - before
            if not pending and not self._sealable(now):
                return sealed

    def _begin_seal(self, name: str) -> None:
        """Create ``<name>_sealing``: the partition's columns and the three indexes, empty. Index names
        end in _te/_sseg/_dseg, never _time/_src/_dst: an unsealed partition of the older layout may
        already have ``<name>_time``."""
        tmp = f"{name}_sealing"
        self.db.execute("BEGIN")
        try:
            self.db.execute(f"DROP TABLE IF EXISTS {tmp}")
            self.db.execute(PARTITION_DDL.format(table=tmp))
            for ddl in SEALED_INDEXES:
                self.db.execute(ddl.format(name=name, table=tmp))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self._seal = {"name": name, "last": 0, "t0": time.monotonic(), "cpu0": time.process_time(), "chunks": 0,
                      "max_step_s": 0.0}

    def _copy_chunk(self, chunk_rows: int) -> None:
        st = self._seal
        name, tmp = st["name"], f"{st['name']}_sealing"
        t = time.monotonic()
        self.db.execute("BEGIN")
        try:
            n = self.db.execute(f"INSERT INTO {tmp} SELECT * FROM {name} WHERE seq > ? ORDER BY seq LIMIT ?",
                                (st["last"], chunk_rows)).rowcount
            if n:
                st["last"] = self.db.execute(f"SELECT max(seq) FROM {tmp}").fetchone()[0]
            done = n < chunk_rows
            if done:  # caught up: swap in this same transaction
                self.db.execute(f"ALTER TABLE {name} RENAME TO {name}_old")
                self.db.execute(f"ALTER TABLE {tmp} RENAME TO {name}")
                self.db.execute("UPDATE partitions SET sealed = 1 WHERE name = ?", (name,))
                self.db.execute("DELETE FROM spans WHERE part = ?", (name,))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        st["chunks"] += 1
        st["max_step_s"] = max(st["max_step_s"], time.monotonic() - t)
        if done:
            self._seal = None
            self._spans.pop(name, None)
            self.partitions[name][5] = 1
            self._old_tables.append(f"{name}_old")
            log.info("partition sealed", extra={"fields": {
                "partition": name, "rows": self.partitions[name][2], "chunks": st["chunks"],
                "wall_s": round(time.monotonic() - st["t0"], 3), "cpu_s": round(time.process_time() - st["cpu0"], 3),
                "max_step_s": round(st["max_step_s"], 3)}})

    def _delete_chunk(self, table: str, chunk_rows: int) -> None:
        """Delete the lowest chunk_rows rows of a replaced table, or DROP it once empty: a DROP of a
        whole partition frees every page in one statement (about 0.7 s per million rows)."""
        self.db.execute("BEGIN")
        try:
            row = self.db.execute(f"SELECT seq FROM {table} ORDER BY seq LIMIT 1 OFFSET ?", (chunk_rows - 1,)).fetchone()
            if row is None:
                self.db.execute(f"DROP TABLE {table}")
            else:
                self.db.execute(f"DELETE FROM {table} WHERE seq <= ?", (row[0],))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        if row is None:
            self._old_tables.remove(table)

    def _recover_seal(self) -> None:
        """After a restart: a ``<name>_sealing`` left mid-copy is resumed (it holds exactly the rows up to
        its max(seq): chunks commit whole and seq only grows), unless its partition is gone or sealed,
        then it is dropped; a ``<name>_old`` left after a swap or ``<name>_pruned`` after prune is
        deleted in chunks again."""
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for t in sorted(tables):
            if t.startswith("flows_") and (t.endswith("_old") or t.endswith("_pruned")):
                self._old_tables.append(t)
            elif t.endswith("_sealing"):
                name = t[:-len("_sealing")]
                p = self.partitions.get(name)
                if p is None or p[5] or name not in tables or self._seal is not None:
                    self.db.execute(f"DROP TABLE {t}")
                    continue
                last = self.db.execute(f"SELECT max(seq) FROM {t}").fetchone()[0] or 0
                self._seal = {"name": name, "last": last, "t0": time.monotonic(), "cpu0": time.process_time(),
                              "chunks": 0, "max_step_s": 0.0}

    def prune(self, now: int, retention_ms: int, rollup_retention_ms: int, advisory_retention_ms: int,
              hourly_retention_ms: int | None = None) -> list[str]:
        """Drop partitions that ended before now - retention; delete old rollups, advisories, health.
        A partition's table is renamed to ``<name>_pruned`` and deleted in chunks by seal_step like a
        replaced table: one DROP of an hourly partition at 10k flows/s would stall the writer about
        25 s (0.7 s per million rows). A copy still being made for sealing is dropped outright, and so
        is a partition sealed by an older version: deleting rows from its (src_addr, time_end) indexes
        in chunks costs 20 times the DROP (37 s CPU for 2M rows, steps up to 1 s)."""
        dropped = []
        cutoff = now - retention_ms
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")}
        for name, p in sorted(self.partitions.items()):
            if p[1] <= cutoff:
                gone = f"{name}_pruned"
                self.db.execute("BEGIN")
                if name in tables and gone not in tables and f"{name}_src" not in tables:
                    self.db.execute(f"ALTER TABLE {name} RENAME TO {gone}")
                else:
                    self.db.execute(f"DROP TABLE IF EXISTS {name}")
                    gone = None
                self.db.execute(f"DROP TABLE IF EXISTS {name}_sealing")
                self.db.execute("DELETE FROM partitions WHERE name = ?", (name,))
                self.db.execute("DELETE FROM spans WHERE part = ?", (name,))
                self.db.execute("COMMIT")
                del self.partitions[name]
                self._spans.pop(name, None)
                if self._seal is not None and self._seal["name"] == name:
                    self._seal = None
                if gone:
                    self._old_tables.append(gone)
                dropped.append(name)
        self.db.execute("BEGIN")
        self.db.execute("DELETE FROM rollups WHERE minute_ms < ?", (now - rollup_retention_ms,))
        self.db.execute("DELETE FROM rollups_hourly WHERE hour_ms < ?",
                        (now - (hourly_retention_ms if hourly_retention_ms is not None else rollup_retention_ms),))
        self.db.execute("DELETE FROM advisories WHERE received_at < ?", (now - advisory_retention_ms,))
        self.db.execute("DELETE FROM health WHERE received_at < ?", (now - advisory_retention_ms,))
        self.db.execute("COMMIT")
        return dropped

    def prune_future(self, now: int) -> list[str]:
        """Drop partitions (and rollups) that start more than future_ms after now: written before the
        collector refused flow times from a broken or spoofed exporter clock (year 291,690,302), they
        would be shown, never expire and never be written to again. Called once, at store start."""
        hi = now + self.future_ms
        future = sorted(n for n, p in self.partitions.items() if p[0] > hi)
        if not future:
            return []
        rows = sum(self.partitions[n][2] for n in future)
        self.db.execute("BEGIN")
        for name in future:
            self.db.execute(f"DROP TABLE IF EXISTS {name}")  # its _old/_pruned leftovers go in seal_step
            self.db.execute(f"DROP TABLE IF EXISTS {name}_sealing")
            self.db.execute("DELETE FROM partitions WHERE name = ?", (name,))
            self.db.execute("DELETE FROM spans WHERE part = ?", (name,))
        self.db.execute("DELETE FROM rollups WHERE minute_ms > ?", (hi,))
        self.db.execute("DELETE FROM rollups_hourly WHERE hour_ms > ?", (hi,))
        self.db.execute("COMMIT")
        for name in future:
            del self.partitions[name]
            self._spans.pop(name, None)
            if self._seal is not None and self._seal["name"] == name:
                self._seal = None
        self.future_pruned_partitions += len(future)
        self.future_pruned_flows += rows
        log.warning("far-future partitions pruned", extra={"fields": {
            "partitions": len(future), "flows": rows, "first": future[0], "future_ms": self.future_ms}})
        return future

    def write_events(self, events: list[tuple[str, dict, int]]) -> None:
        """Advisory and health events, one transaction. ``events``: (topic, body, received_at_ms)."""
        self.db.execute("BEGIN")
        try:
            for topic, body, received in events:
                if topic == "advisory":
                    self._upsert_advisory(body, received)
                else:
                    self.db.execute("INSERT OR REPLACE INTO health (source, kind, received_at, body) VALUES (?, ?, ?, ?)",
                                    (str(body.get("source")), str(body.get("kind", "")), received,
                                     json.dumps(body, default=str)))
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
