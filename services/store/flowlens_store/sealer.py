"""Sealing, in bounded steps on the writer thread: a partition's row-shaped flows become compressed
column blocks (layout.py, blocks.py), and its rollups (hists.py) are built once none are left.

One step is one transaction: the lowest BLOCK_ROWS rows of the row table by seq are read, sorted by
(time_end, seq), encoded, inserted as a block and deleted from the row table. A SIGKILL between
steps leaves a file where every flow is in exactly one shape; the next start goes on from there
(the row table holds what is left). The step that empties the row table drops it with its spans.
Blocks of pruned partitions are deleted in chunks by later steps, so a prune never stalls the writer.
The rollups are built by HistBuilding (histbuild.py).
"""
from __future__ import annotations

import logging
import sqlite3
import time

import msgpack
import numpy as np

from .blocks import BLOCK_ROWS, encode_block
from .backfill import RollupBackfill
from .histbuild import BlockFold, HistBuilding
from .hists import HistBuilder
from .rowcodec import SQL_COLUMNS, rows_to_columns

log = logging.getLogger(__name__)

SEAL_GRACE_MS = 120_000  # a partition is sealed this long after its end: late flows still land as rows
BUFFER_MAX_ROWS = 4 * BLOCK_ROWS  # rows mirrored in memory for all partitions together (about 18 MiB)
DELETE_CHUNK_BLOCKS = 64  # blocks of a pruned partition deleted per step


class _Mirror:
    """A partition's rows not yet in blocks, as columns in memory, in arrival (seq) order: blocks are
    cut from here without reading the rows back, and its rollups summed as they are."""
    __slots__ = ("parts", "rows", "builder", "fed")

    def __init__(self):
        self.parts: list[dict] = []
        self.rows = 0
        self.builder: HistBuilder | None = None
        self.fed = 0  # blocks folded into builder

    def take(self, n: int) -> dict[str, np.ndarray]:
        cols = self.parts[0] if len(self.parts) == 1 else {k: np.concatenate([p[k] for p in self.parts])
                                                          for k in self.parts[0]}
        head = {k: v[:n] for k, v in cols.items()}
        rest = {k: v[n:] for k, v in cols.items()}
        self.parts = [rest] if len(rest["seq"]) else []
        self.rows -= len(head["seq"])
        return head


def _head(pieces: list[dict], k: int) -> tuple[dict[str, np.ndarray], list[dict]]:
    """The first ``k`` rows of consecutive column pieces (as one piece, a copy when they span
    several) and the pieces left after them (views)."""
    out, left, need = [], [], k
    for piece in pieces:
        rows = len(piece["seq"])
        if need == 0:
            left.append(piece)
        elif rows <= need:
            out.append(piece)
            need -= rows
        else:
            out.append({c: v[:need] for c, v in piece.items()})
            left.append({c: v[need:] for c, v in piece.items()})
            need = 0
    head = out[0] if len(out) == 1 else {c: np.concatenate([q[c] for q in out]) for c in out[0]}
    return head, left


class Sealer(HistBuilding):
    """The sealing state of one writer connection. ``partitions`` is the writer's own map
    (name -> [start, end, rows, min, max, sealed, hot_rows]); ``row_tables`` the row tables that exist."""

    def __init__(self, db: sqlite3.Connection, partitions: dict, row_tables: set, block_rows: int = BLOCK_ROWS,
                 grace_ms: int = SEAL_GRACE_MS, prefix_v4: int = 24, prefix_v6: int = 64, hist_max_keys: int = 200_000,
                 quiet_s: float = 0.0):
        self.db = db
        # a partition is sealed only once no rows came for it this long (wall time): flows of a past hour
        # replayed or caught up in bulk would otherwise seal it again and again as they keep arriving
        self.quiet_s = quiet_s
        self.last_write: dict[str, float] = {}
        self.prefix_v4, self.prefix_v6, self.hist_max_keys = prefix_v4, prefix_v6, hist_max_keys
        self._hist: BlockFold | None = None  # the partition whose rollups are being built: its builder, blocks left
        self.partitions = partitions
        self.row_tables = row_tables
        self.block_rows = block_rows
        self.grace_ms = grace_ms
        self.hists_due: list[str] = []
        self.more_due = False  # the last step saw further partitions due: the writer steps again soon
        self.mirrors: dict[str, _Mirror] = {}  # partitions whose row table is mirrored in memory
        self.mirrored_rows = 0
        self.doomed_blocks: list[int] = []  # blocks of pruned partitions, deleted in chunks
        self.old_tables: list[str] = []  # leftovers of layout 1 (<name>_old, <name>_pruned), deleted in chunks
        self.blocks_written = 0
        self.rows_sealed = 0
        self._current: str | None = None
        self._t0 = 0.0
        self._cpu0 = 0.0
        # rollups of dimensions added since a partition was sealed: when nothing else is to do
        self.backfill = RollupBackfill(db, partitions, prefix_v4, prefix_v6, hist_max_keys)

    def recover(self) -> None:
        """After a start: blocks whose partition is gone (a prune cut short) and layout-1 leftovers are
        deleted in later steps; partitions with blocks and no rows whose rollups were not built get them."""
        self.doomed_blocks = [r[0] for r in self.db.execute(
            "SELECT DISTINCT block FROM block_columns WHERE block NOT IN (SELECT id FROM blocks)")]
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        self.old_tables = sorted(t for t in tables if t.startswith("flows_") and t.endswith(("_old", "_pruned")))
        self.hists_due = sorted(n for n, p in self.partitions.items()
                                if not p[5] and not p[6] and p[2] and n not in self.row_tables)
        self.backfill.recover()

    # ------------------------------------------------------------ scheduling

    def due(self, now: int) -> list[str]:
        """Partitions past their end and grace whose row table is still there (rows, or none left after
        their blocks were cut as they arrived): the last step drops it and sums their rollups."""
        quiet = time.monotonic() - self.quiet_s
        return [n for n, p in sorted(self.partitions.items(), key=lambda kv: kv[1][0])
                if n in self.row_tables and p[1] + self.grace_ms <= now and self.last_write.get(n, 0.0) <= quiet]

    def pending(self) -> bool:
        """Work under way that should go on soon (a partition half moved, rollups to build, deletions)."""
        return bool(self._current is not None or self._hist is not None or self.hists_due or self.doomed_blocks
                    or self.old_tables or self.more_due or self.backfill.pending())

    def absorb(self, name: str, cols: dict[str, np.ndarray], table_was_empty: bool) -> dict[str, np.ndarray]:
        """Inside the writer's transaction: rows arriving for ``name``. A partition mirrored in memory
        (from an empty row table on) cuts a block whenever its mirror and these rows reach block_rows:
        the mirrored rows are deleted from the row table and the new ones never become rows, so at high
        rates most flows go straight into blocks. Returns the rows to insert as rows (the rest). On a
        rollback the caller calls abandon(): the partition then reads its rows from SQLite when sealed."""
        self.last_write[name] = time.monotonic()
        m = self.mirrors.get(name)
        if m is None:
            if not table_was_empty:
                return cols
            m = self.mirrors[name] = _Mirror()
        n = len(cols["seq"])
        if m.rows + n < self.block_rows:
            m.parts.append(cols)
            m.rows += n
            self.mirrored_rows += n
            self._bound(name)
            return cols
        p = self.partitions[name]
        had = m.rows
        old_max = int(m.parts[-1]["seq"][-1]) if had else None
        # blocks are cut from the mirrored parts and the new rows without joining them all first (a
        # 50,000-row chunk on 32,767 mirrored rows made a 12 MB copy that the tail's views then held)
        pieces = m.parts + [cols]
        m.parts, m.rows = [], 0
        self.mirrored_rows -= had
        for _ in range((had + n) // self.block_rows):
            block, pieces = _head(pieces, self.block_rows)
            order = np.lexsort((block["seq"], block["time_end"]))
            block = {k: v[order] for k, v in block.items()}
            self._insert_block(name, block)
            self._feed(name, m, block)
            self.rows_sealed += len(block["seq"])
            del block
        if old_max is not None:
            self.db.execute(f"DELETE FROM {name} WHERE seq <= ?", (old_max,))
            p[6] -= had
        # the tail as its own copy, so the caller's chunk is not held by the mirror
        tail = {k: np.concatenate([q[k] for q in pieces]) for k in cols} if pieces else {k: v[:0] for k, v in cols.items()}
        if len(tail["seq"]):
            m.parts = [tail]
            m.rows = len(tail["seq"])
            self.mirrored_rows += m.rows
        return tail

    def abandon(self, names) -> None:
        """The writer's transaction rolled back: what the mirrors of ``names`` hold may not be in SQLite."""
        for name in names:
            self._unmirror(name)

    def _bound(self, name: str) -> None:
        while self.mirrored_rows > BUFFER_MAX_ROWS and len(self.mirrors) > 1:
            # too many partitions at once (a replay across many hours): the oldest goes back to reading
            # its rows from SQLite when it is sealed
            victim = min((n for n in self.mirrors if n != name), key=lambda n: self.partitions[n][0])
            self._unmirror(victim)

    def _unmirror(self, name: str) -> None:
        m = self.mirrors.pop(name, None)
        if m is not None:
            self.mirrored_rows -= m.rows

    def step(self, now: int) -> bool:
        """One bounded piece of work, its own transaction. Returns whether more is pending."""
        if self.doomed_blocks:
            self._delete_blocks()
        elif self.old_tables:
            self._delete_old_chunk(self.old_tables[0])
        elif self._current is not None:
            self._move_chunk(self._current)
        elif self._hist is not None:
            self._hist_step()
        else:
            due = self.due(now)
            if due:
                name = due[0]
                self._t0, self._cpu0 = time.monotonic(), time.process_time()
                m = self.mirrors.get(name)
                if m is not None and m.rows == self.partitions[name][6]:
                    self._cut(name, m.rows, now)
                else:
                    self._unmirror(name)
                    self._current = name
                    self._move_chunk(name)
            elif self.hists_due:
                name = self.hists_due.pop(0)
                if name in self.partitions and not self.partitions[name][6]:
                    self._begin_hists(name)
            elif self.backfill.pending():
                self.backfill.step()
        self.more_due = bool(self.due(now))
        return self.pending()

    # ------------------------------------------------------------ moving rows into blocks

    def _move_chunk(self, name: str) -> None:
        p = self.partitions.get(name)
        if p is None or name not in self.row_tables:
            self._current = None
            return
        rows = self.db.execute(f"SELECT {', '.join(SQL_COLUMNS)} FROM {name} ORDER BY seq LIMIT ?",
                               (self.block_rows,)).fetchall()
        self.db.execute("BEGIN")
        try:
            n = len(rows)
            if n:
                cols = rows_to_columns(rows)
                del rows
                order = np.lexsort((cols["seq"], cols["time_end"]))
                cols = {k: v[order] for k, v in cols.items()}
                self._insert_block(name, cols)
                self.db.execute(f"DELETE FROM {name} WHERE seq <= ?", (int(cols["seq"].max()),))
            left = max(0, p[6] - n)
            emptied = n < self.block_rows and self.db.execute(f"SELECT 1 FROM {name} LIMIT 1").fetchone() is None
            if emptied:
                left = 0
                self.db.execute(f"DROP TABLE {name}")
                self.db.execute("DELETE FROM spans WHERE part = ?", (name,))
            self.db.execute("UPDATE partitions SET hot_rows = ? WHERE name = ?", (left, name))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        p[6] = left
        self.rows_sealed += n
        if emptied:
            self.row_tables.discard(name)
            self._current = None
            self.hists_due.append(name)
            log.info("partition sealed", extra={"fields": {
                "partition": name, "rows": p[2], "wall_s": round(time.monotonic() - self._t0, 3),
                "cpu_s": round(time.process_time() - self._cpu0, 3)}})

    def _cut(self, name: str, n: int, now: int) -> None:
        """A block of the first ``n`` mirrored rows of ``name`` (the lowest seqs of its row table), one
        transaction; the table goes with its last rows once the partition is due."""
        p, m = self.partitions[name], self.mirrors[name]
        cols = m.take(n) if n else None
        if cols is not None:
            self.mirrored_rows -= len(cols["seq"])
            order = np.lexsort((cols["seq"], cols["time_end"]))
            cols = {k: v[order] for k, v in cols.items()}
        left = p[6] - (len(cols["seq"]) if cols is not None else 0)
        emptied = left == 0 and p[1] + self.grace_ms <= now
        self.db.execute("BEGIN")
        try:
            if cols is not None:
                self._insert_block(name, cols)
                self.db.execute(f"DELETE FROM {name} WHERE seq <= ?", (int(cols["seq"].max()),))
            if emptied:
                self.db.execute(f"DROP TABLE {name}")
                self.db.execute("DELETE FROM spans WHERE part = ?", (name,))
            self.db.execute("UPDATE partitions SET hot_rows = ? WHERE name = ?", (left, name))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            self._unmirror(name)  # the rows are still in the table: the SQLite path takes over
            raise
        p[6] = left
        if cols is not None:
            self.rows_sealed += len(cols["seq"])
            self._feed(name, m, cols)
        if emptied:
            self.row_tables.discard(name)
            self.mirrors.pop(name, None)
            self.last_write.pop(name, None)
            blocks = self.db.execute("SELECT count(*) FROM blocks WHERE part = ?", (name,)).fetchone()[0]
            if m.builder is not None and m.fed == blocks:  # every block of the partition went through it
                self._write_hists(name, m.builder.finish(), self._t0)
            else:
                self.hists_due.append(name)
            log.info("partition sealed", extra={"fields": {"partition": name, "rows": p[2], "blocks": blocks,
                                                           "wall_s": round(time.monotonic() - self._t0, 3)}})

    def _insert_block(self, part: str, cols: dict) -> int:
        blobs, stats = encode_block(cols)
        size = sum(len(b) for b in blobs.values())
        cur = self.db.execute(
            "INSERT INTO blocks (part, rows, time_lo, time_hi, seq_lo, seq_hi, bytes) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (part, stats["rows"], stats["time_end_min"], stats["time_end_max"], stats["seq_min"], stats["seq_max"],
             size))
        block = cur.lastrowid
        self.db.execute("INSERT INTO block_stats (block, stats) VALUES (?, ?)",
                        (block, msgpack.packb(stats, use_bin_type=True)))
        self.db.executemany("INSERT INTO block_columns (block, name, data) VALUES (?, ?, ?)",
                            [(block, k, v) for k, v in blobs.items()])
        self.blocks_written += 1
        return block

    # ------------------------------------------------------------ deleting

    def forget(self, name: str) -> None:
        """A partition was pruned (its blocks rows deleted in the caller's transaction)."""
        self.last_write.pop(name, None)
        if self._current == name:
            self._current = None
        if self._hist is not None and self._hist.name == name:
            self._hist = None
        self._unmirror(name)
        if name in self.hists_due:
            self.hists_due.remove(name)
        self.backfill.forget(name)

    def _delete_blocks(self) -> None:
        chunk, self.doomed_blocks = self.doomed_blocks[:DELETE_CHUNK_BLOCKS], self.doomed_blocks[DELETE_CHUNK_BLOCKS:]
        marks = ",".join("?" * len(chunk))
        self.db.execute("BEGIN")
        try:
            self.db.execute(f"DELETE FROM block_columns WHERE block IN ({marks})", chunk)
            self.db.execute(f"DELETE FROM block_stats WHERE block IN ({marks})", chunk)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            self.doomed_blocks[:0] = chunk
            raise

    def _delete_old_chunk(self, table: str) -> None:
        """Delete the lowest rows of a layout-1 leftover table, or DROP it once few are left."""
        self.db.execute("BEGIN")
        try:
            row = self.db.execute(f"SELECT seq FROM {table} ORDER BY seq LIMIT 1 OFFSET ?",
                                  (self.block_rows - 1,)).fetchone()
            if row is None:
                self.db.execute(f"DROP TABLE {table}")
            else:
                self.db.execute(f"DELETE FROM {table} WHERE seq <= ?", (row[0],))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        if row is None:
            self.old_tables.remove(table)
