"""Building a sealed partition's rollups (hists.py), the last of its sealing steps: summed from
its blocks as they are cut, when the partition was mirrored in memory from its first block (at most
BUILDERS_MAX partitions at once), else read back from its blocks HIST_BLOCKS_PER_STEP at a time, one
bounded step each; then written, with the partition marked sealed, in one transaction.

A mixin of sealer.Sealer, which owns the connection, the partitions and their mirrors.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from .blockread import Block, BlockCounters, read_block
from .hists import HistBuilder, key_chunks

if TYPE_CHECKING:
    from .sealer import _Mirror

log = logging.getLogger(__name__)

BUILDERS_MAX = 1  # partitions whose rollups are summed as their blocks are cut (the others are rebuilt at seal):
# each holds the hour's distinct (bucket, key) sums, 15-45 MB at a medium site
HIST_BLOCKS_PER_STEP = 4  # blocks folded into a partition's rollups per step (about 0.1 s)
HIST_COLUMNS = ("time_end", "src_addr", "dst_addr", "src_port", "dst_port", "protocol", "bytes", "packets",
                "sampling_rate", "exporter", "input_if", "output_if", "src_as", "dst_as", "tos")


class BlockFold:
    """A partition's blocks folded into a HistBuilder HIST_BLOCKS_PER_STEP at a time, one bounded step
    each: how sealing rebuilds a partition's rollups and how the backfill builds missing dimensions."""

    def __init__(self, db, name: str, builder: HistBuilder):
        ids = db.execute("SELECT id, part, rows, time_lo, time_hi FROM blocks WHERE part = ? ORDER BY id",
                         (name,)).fetchall()
        self.name, self.builder, self.t0 = name, builder, time.monotonic()
        self.blocks = [Block(*r) for r in ids]  # still to fold

    def step(self, db) -> int:
        """Fold the next blocks; returns how many (``done`` once none are left)."""
        todo, self.blocks = self.blocks[:HIST_BLOCKS_PER_STEP], self.blocks[HIST_BLOCKS_PER_STEP:]
        counters = BlockCounters()
        for block in todo:
            self.builder.add(read_block(db, block, HIST_COLUMNS, counters))
        return len(todo)

    @property
    def done(self) -> bool:
        return not self.blocks


class HistBuilding:
    def _feed(self, name: str, m: _Mirror, block: dict) -> None:
        """Fold a block just cut into the partition's rollups, when they are summed from its first block."""
        if m.builder is None and m.fed == 0 and sum(1 for x in self.mirrors.values() if x.builder is not None) \
                < BUILDERS_MAX:
            first = self.db.execute("SELECT count(*) FROM blocks WHERE part = ?", (name,)).fetchone()[0] == 1
            if first:
                m.builder = HistBuilder(self.prefix_v4, self.prefix_v6, self.hist_max_keys)
        if m.builder is not None:
            m.builder.add(block)
        m.fed += 1

    def _begin_hists(self, name: str) -> None:
        self._hist = BlockFold(self.db, name, HistBuilder(self.prefix_v4, self.prefix_v6, self.hist_max_keys))
        self._hist_step()

    def _hist_step(self) -> None:
        """Fold the next blocks of the partition into its rollups; the last step writes them and marks
        the partition sealed, one transaction. Rows arriving meanwhile (late) start it over later."""
        fold = self._hist
        p = self.partitions.get(fold.name)
        if p is None or p[6]:  # pruned, or late rows arrived: their seal queues the rollups again
            self._hist = None
            return
        fold.step(self.db)
        if not fold.done:
            return
        self._hist = None
        self._write_hists(fold.name, fold.builder.finish(), fold.t0)

    def _write_hists(self, name: str, blobs: dict, t0: float) -> None:
        p = self.partitions[name]
        self.db.execute("BEGIN")
        try:
            self.db.execute("DELETE FROM hists WHERE start_ms = ? AND end_ms = ?", (p[0], p[1]))
            self.db.executemany(
                "INSERT INTO hists (dim, step_ms, start_ms, chunk, end_ms, key_lo, key_hi, rows, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(dim, step, p[0], i, p[1], lo, hi, n, blob) for (dim, step), whole in blobs.items()
                 for i, (lo, hi, n, blob) in enumerate(key_chunks(dim, whole, step))])
            self.db.execute("UPDATE partitions SET sealed = 1 WHERE name = ?", (name,))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        p[5] = 1
        log.info("partition rollups built", extra={"fields": {
            "partition": name, "blobs": len(blobs), "bytes": sum(len(b) for b in blobs.values()),
            "wall_s": round(time.monotonic() - t0, 3)}})
