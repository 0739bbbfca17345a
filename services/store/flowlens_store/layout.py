"""The SQLite layout of the warm tier, known to both the writer (warm.py, sealer.py) and the readers
(queries.py, blockread.py): tables, connections, and the migration of files from older layouts.

A time partition (``partitions``: one per storage.partition_interval of time_end) keeps its flows in
two shapes. Rows that arrived recently sit in the row table ``flows_<start>`` (one row per flow,
appended in seq order, no index but the rowid; ``spans`` maps seq ranges to time_end ranges so a
window reads a few rowid ranges). Once the partition's end is SEAL_GRACE_MS past, the sealer moves
its rows, BLOCK_ROWS at a time and each move one transaction, into compressed column blocks
(``blocks``: where and what a block holds; ``block_stats``: its statistics for pruning;
``block_columns``: one zstd blob per column, blocks.py) and deletes them from the row table in the
same transaction, so a reader sees every flow exactly once, in one shape or the other. Late rows for
a sealed partition land in a new row table and are sealed the same way. ``partitions.hot_rows``
counts the rows still row-shaped; ``sealed`` is 1 once none are and its rollups (``hists``) are built.

Layouts: 1 (before blocks: sealed partitions were indexed row tables) is migrated on open: the
indexes go, each partition counts as row-shaped again with one span over it, and the sealer turns
it into blocks in the background; its SQL rollup tables become hists (legacy.py) and are dropped.
``meta.layout`` says which layout a file has.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import time

import numpy as np

from flowmodel.logs import fields
from flowmodel.schema import COLUMN_DEFAULTS

LAYOUT = 2

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS partitions (
    name TEXT PRIMARY KEY, start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL,
    rows INTEGER NOT NULL DEFAULT 0, min_time INTEGER, max_time INTEGER, sealed INTEGER NOT NULL DEFAULT 0,
    hot_rows INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS spans (
    part TEXT NOT NULL, seq_lo INTEGER NOT NULL, seq_hi INTEGER NOT NULL, time_lo INTEGER NOT NULL,
    time_hi INTEGER NOT NULL, rows INTEGER NOT NULL, PRIMARY KEY (part, seq_lo)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (
    id INTEGER PRIMARY KEY, part TEXT NOT NULL, rows INTEGER NOT NULL, time_lo INTEGER NOT NULL,
    time_hi INTEGER NOT NULL, seq_lo INTEGER NOT NULL, seq_hi INTEGER NOT NULL, bytes INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS blocks_time ON blocks (time_hi, time_lo);
CREATE INDEX IF NOT EXISTS blocks_part ON blocks (part);
CREATE TABLE IF NOT EXISTS block_stats (block INTEGER PRIMARY KEY, stats BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS block_columns (
    block INTEGER NOT NULL, name TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (block, name));
CREATE TABLE IF NOT EXISTS hists (
    dim TEXT NOT NULL, step_ms INTEGER NOT NULL, start_ms INTEGER NOT NULL, chunk INTEGER NOT NULL,
    end_ms INTEGER NOT NULL, key_lo BLOB NOT NULL, key_hi BLOB NOT NULL, rows INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (dim, step_ms, start_ms, chunk));
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
# index names partitions sealed by layout 1 had (the last three by earlier versions of it)
LAYOUT1_INDEXES = ("_te", "_sseg", "_dseg", "_time", "_src", "_dst")


# A transaction that seals an hour or loads history writes tens of MB of WAL, and a WAL file never
# shrinks by itself: SQLite truncates it to this size when a checkpoint lets the next write start
# it over (otherwise disk use stays at the largest transaction's, twice the data after a bulk load).
WAL_KEEP_BYTES = 32 << 20


def partition_name(start_ms: int) -> str:
    return f"flows_{start_ms}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def connect_writer(path: str, cache_bytes: int = 64 << 20) -> sqlite3.Connection:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    # No statement cache: sqlite3 binds a bytes parameter as a copy that stays with the prepared
    # statement until it is bound again, and each width variant of rowcodec.bulk_insert's INSERT binds
    # ~7 MB of BLOBs per 50,000 rows, so cached statements held 120 MiB after 1 M rows (12 without).
    # Preparing the writer's few statements per transaction again costs well under a millisecond.
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, cached_statements=0)
    if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
        # a new file (before WAL writes its header): pages freed by sealing and pruning can be handed
        # back to the file system (storage.max_bytes, WarmWriter.vacuum_step)
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA journal_size_limit={WAL_KEEP_BYTES}")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA cache_size=-{max(1024, cache_bytes // 1024)}")
    db.execute("PRAGMA temp_store=MEMORY")
    db.executescript(SCHEMA)
    migrate(db)
    return db


def connect_reader(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(f"file:{os.path.abspath(path)}?mode=ro", uri=True, isolation_level=None,
                         check_same_thread=False)
    db.execute("PRAGMA query_only=1")
    # 1 MiB: blocks and rollups are decoded once per query and the OS caches the file; every reader
    # (each query worker, the top cache's warmer) kept 4 MiB before, which no question was faster for
    db.execute("PRAGMA cache_size=-1024")
    return db


def file_size(path: str) -> int:
    total = 0
    for p in (path, path + "-wal"):
        try:
            total += os.path.getsize(p)
        except OSError:
            pass
    return total



def migrate(db: sqlite3.Connection) -> None:
    """Bring a file of an older layout to LAYOUT (idempotent; see the module docstring)."""
    cols = {r[1] for r in db.execute("PRAGMA table_info(partitions)")}
    if "hot_rows" not in cols:
        db.execute("ALTER TABLE partitions ADD COLUMN hot_rows INTEGER NOT NULL DEFAULT 0")
    widen_rows(db)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    row = db.execute("SELECT value FROM meta WHERE key = 'layout'").fetchone()
    if row is not None and int(row[0]) >= LAYOUT:
        if {"rollups", "rollups_hourly"} & tables:
            _convert_legacy_rollups(db)
        return
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    db.execute("BEGIN")
    try:
        next_seq = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        top = int(next_seq[0]) if next_seq else 1 << 62
        for name, rows, mn, mx, sealed in db.execute(
                "SELECT name, rows, min_time, max_time, sealed FROM partitions").fetchall():
            for t in (f"{name}_sealing",):
                if t in tables:
                    db.execute(f"DROP TABLE {t}")
            if name not in tables:
                db.execute("UPDATE partitions SET hot_rows = 0, sealed = 1 WHERE name = ?", (name,))
                continue
            for suffix in LAYOUT1_INDEXES:
                if name + suffix in indexes:
                    db.execute(f"DROP INDEX {name}{suffix}")
            db.execute("UPDATE partitions SET hot_rows = rows, sealed = 0 WHERE name = ?", (name,))
            if sealed and rows:  # a sealed layout-1 partition had no spans: one over all of it
                db.execute("INSERT OR IGNORE INTO spans (part, seq_lo, seq_hi, time_lo, time_hi, rows) "
                           "VALUES (?, 0, ?, ?, ?, ?)", (name, top, mn, mx, rows))
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('layout', ?)", (LAYOUT,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    _convert_legacy_rollups(db)


def widen_rows(db: sqlite3.Connection) -> int:
    """Row tables written before a column was added to the schema hold shorter packed ``rest``
    values (rowcodec.REST_DTYPE; the schema appends new columns at its end): each such value gets
    the new columns' defaults appended, once, in one transaction. ``meta.rest_bytes`` records the
    width the file's rows have. Returns the rows widened."""
    from .rowcodec import REST_COLUMNS, REST_DTYPE

    width = REST_DTYPE.itemsize
    row = db.execute("SELECT value FROM meta WHERE key = 'rest_bytes'").fetchone()
    if row is not None and int(row[0]) == width:
        return 0
    default = np.zeros(1, REST_DTYPE)
    for c in REST_COLUMNS:
        if c in COLUMN_DEFAULTS:  # the others (addresses included) are zero
            default[c] = COLUMN_DEFAULTS[c]
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'flows_*'")]
    widened = 0
    db.execute("BEGIN")
    try:
        for t in tables:
            if "rest" not in {r[1] for r in db.execute(f"PRAGMA table_info({t})")}:
                continue
            widened += db.execute(f"UPDATE {t} SET rest = CAST(rest || substr(:d, length(rest) + 1) AS BLOB) WHERE length(rest) < :w",
                                  {"d": default.tobytes(), "w": width}).rowcount
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('rest_bytes', ?)", (width,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    if widened:
        log.info("row tables widened to the current schema", extra=fields(rows=widened, rest_bytes=width))
    return widened


def _convert_legacy_rollups(db: sqlite3.Connection) -> None:
    from .legacy import convert

    db.execute("BEGIN")
    try:
        convert(db)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise

