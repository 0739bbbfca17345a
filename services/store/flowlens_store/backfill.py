"""Rollups of dimensions added after a partition was sealed, built from its blocks in the background.

A file sealed by an older FlowLens has no rollups for the dimensions added since (interfaces, AS and
ToS at 5 minutes, the interface and AS pairs a Sankey draws): its pages over those days fell back to
raw flows (a 72 h Sankey 3.1 s instead of 0.2). Once per rollup version (``meta.rollup_dims``), the
writer's start lists the sealed partitions whose blocks are still there and whose rollups lack a
dimension; the sealer's idle steps (``step``, on the writer thread, lowest priority) fold their
blocks a few at a time into the missing dimensions only and insert those rollups in one
transaction per partition, newest partition first (the likeliest to be asked). A SIGKILL loses at
most the partition under way; the next start lists what is still missing. A partition that gets
late rows meanwhile is dropped from the list: sealing it again builds every dimension.
"""
from __future__ import annotations

import logging
import time

from .histbuild import BlockFold
from .hists import DIMS, HistBuilder, key_chunks

log = logging.getLogger(__name__)

ROLLUP_DIMS_VERSION = 2  # raise when hists.DIMS gains a dimension: files below it are backfilled

class RollupBackfill:
    """``partitions`` is the writer's map (name -> [start, end, rows, min, max, sealed, hot_rows])."""

    def __init__(self, db, partitions: dict, prefix_v4: int, prefix_v6: int, max_keys: int):
        self.db = db
        self.partitions = partitions
        self.prefix_v4, self.prefix_v6, self.max_keys = prefix_v4, prefix_v6, max_keys
        self.queue: list[tuple[str, tuple[str, ...]]] = []  # (partition, its missing dimensions)
        self._cur: BlockFold | None = None
        self.partitions_done = 0
        self.blocks_read = 0

    def recover(self) -> None:
        """At start: list the sealed partitions missing dimensions, unless this file is up to date."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'rollup_dims'").fetchone()
        if row is not None and row[0] >= ROLLUP_DIMS_VERSION:
            return
        present: dict[int, set[str]] = {}
        for start, dim in self.db.execute("SELECT DISTINCT start_ms, dim FROM hists"):
            present.setdefault(start, set()).add(dim)
        with_blocks = {r[0] for r in self.db.execute("SELECT DISTINCT part FROM blocks")}
        for name, p in sorted(self.partitions.items(), key=lambda kv: -kv[1][0]):
            missing = tuple(d for d in DIMS if d not in present.get(p[0], ()))
            if p[5] and not p[6] and name in with_blocks and p[0] in present and missing:
                self.queue.append((name, missing))
        if self.queue:
            log.info("rollups of newer dimensions to build for older partitions",
                     extra={"fields": {"partitions": len(self.queue)}})
        else:
            self._mark_done()

    def pending(self) -> bool:
        return bool(self._cur is not None or self.queue)

    def forget(self, name: str) -> None:
        """A partition was pruned or got late rows (its next seal builds every dimension)."""
        self.queue = [q for q in self.queue if q[0] != name]
        if self._cur is not None and self._cur.name == name:
            self._cur = None

    def step(self) -> None:
        """Fold the next few blocks; the partition's last step inserts its new rollups."""
        if self._cur is None:
            if not self.queue:
                return
            name, missing = self.queue.pop(0)
            self._cur = BlockFold(self.db, name, HistBuilder(self.prefix_v4, self.prefix_v6, self.max_keys,
                                                             dims={d: DIMS[d] for d in missing}))
        fold = self._cur
        p = self.partitions.get(fold.name)
        if p is None or not p[5] or p[6]:  # pruned, or late rows: sealing again builds them all
            self._cur = None
            return
        self.blocks_read += fold.step(self.db)
        if not fold.done:
            return
        self._cur = None
        self._write(fold.name, p, fold.builder.finish(), fold.t0)

    def _write(self, name: str, p: list, blobs: dict, t0: float) -> None:
        self.db.execute("BEGIN")
        try:
            self.db.executemany(
                "INSERT OR REPLACE INTO hists (dim, step_ms, start_ms, chunk, end_ms, key_lo, key_hi, rows, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(dim, step, p[0], i, p[1], lo, hi, n, blob) for (dim, step), whole in blobs.items()
                 for i, (lo, hi, n, blob) in enumerate(key_chunks(dim, whole, step))])
            if not self.queue:
                self._mark_done()
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.partitions_done += 1
        log.info("rollups of newer dimensions built", extra={"fields": {
            "partition": name, "blobs": len(blobs), "wall_s": round(time.monotonic() - t0, 3),
            "left": len(self.queue)}})

    def _mark_done(self) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('rollup_dims', ?)", (ROLLUP_DIMS_VERSION,))

    def stats(self) -> dict:
        return {"partitions_left": len(self.queue) + (self._cur is not None), "partitions_done": self.partitions_done,
                "blocks_read": self.blocks_read}
