"""Pruning of the warm tier, on the writer thread: partitions whose end is older than
storage.retention, then the oldest ones while the file's used pages exceed storage.max_bytes (the
size cap, counted in flows), and at start those dated too far ahead; old rollups, advisories, health
events, notes and interface counters with them; and the free pages a prune leaves handed back to the
file system a step at a time.

A mixin of WarmWriter (warm.py), which owns the connection, the partitions and the sealer: a
dropped partition's blocks leave ``blocks`` at once and their columns are deleted in chunks by the
sealer (``doomed_blocks``), as is a large row table renamed ``<name>_pruned`` (``old_tables``).
"""
from __future__ import annotations

import logging

from . import ifcounters, notes

log = logging.getLogger(__name__)

ROW_BYTES_ESTIMATE = 245  # bytes a row-shaped flow takes with its share of pages (measured, issue 12)


class WarmPruning:
    def prune(self, now: int, retention_ms: int, rollup_retention_ms: int, advisory_retention_ms: int,
              hourly_retention_ms: int | None = None, max_bytes: int = 0,
              hist_retention_ms: dict[int, int] | None = None) -> list[str]:
        """Drop partitions that ended before now - retention, then, while the file's used pages exceed
        ``max_bytes`` (0: no cap), the oldest partitions (counted in flows); delete old rollups,
        advisories and health events. A partition's blocks go from ``blocks`` at once and their
        columns in chunks by seal_step; a large row table is renamed ``<name>_pruned`` and deleted in
        chunks too (one DROP of an hour at 10k flows/s would stall the writer for seconds)."""
        dropped = []
        cutoff = now - retention_ms
        for name, p in sorted(self.partitions.items(), key=lambda kv: kv[1][0]):
            if p[1] <= cutoff:
                self._drop_partition(name)
                dropped.append(name)
        if max_bytes:
            used = self.used_bytes()
            sizes = dict(self.db.execute("SELECT part, sum(bytes) FROM blocks GROUP BY part"))
            for name, p in sorted(self.partitions.items(), key=lambda kv: kv[1][0]):
                if used <= max_bytes or len(self.partitions) <= 1:
                    break
                used -= int(sizes.get(name) or 0) + p[6] * ROW_BYTES_ESTIMATE
                self.size_pruned_partitions += 1
                self.size_pruned_flows += p[2]
                log.warning("partition dropped for storage.max_bytes", extra={"fields": {
                    "partition": name, "flows": p[2], "max_bytes": max_bytes}})
                self._drop_partition(name)
                dropped.append(name)
        self.db.execute("BEGIN")
        if hist_retention_ms is None:  # the rollups' own retention, per step (Writer passes the config's)
            hist_retention_ms = {60_000: rollup_retention_ms, 300_000: max(rollup_retention_ms, 30 * 86_400_000),
                                 3_600_000: hourly_retention_ms or 365 * 86_400_000}
        for step_ms, keep_ms in hist_retention_ms.items():
            self.db.execute("DELETE FROM hists WHERE step_ms = ? AND end_ms < ?", (step_ms, now - keep_ms))
        self.db.execute("DELETE FROM advisories WHERE received_at < ?", (now - advisory_retention_ms,))
        self.db.execute("DELETE FROM health WHERE received_at < ?", (now - advisory_retention_ms,))
        notes.prune(self.db, now - advisory_retention_ms)
        ifcounters.prune(self.db, now, self.ifcounter_retention_ms, self.ifcounter_max_rows)
        self.db.execute("COMMIT")
        if dropped:
            self.vacuum_due = True
        return dropped

    def used_bytes(self) -> int:
        """Bytes of the file's pages in use (free pages are reused, or handed back by vacuum_step)."""
        pages = self.db.execute("PRAGMA page_count").fetchone()[0] - self.db.execute("PRAGMA freelist_count").fetchone()[0]
        return pages * self.db.execute("PRAGMA page_size").fetchone()[0]

    def vacuum_step(self, pages: int = 2048) -> bool:
        """Hand up to ``pages`` free pages back to the file system (auto_vacuum=INCREMENTAL files);
        returns whether free pages remain."""
        if self.db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            self.vacuum_due = False
            return False
        self.db.execute(f"PRAGMA incremental_vacuum({int(pages)})")
        self.vacuum_due = self.db.execute("PRAGMA freelist_count").fetchone()[0] > 0
        return self.vacuum_due

    def _drop_partition(self, name: str) -> None:
        p = self.partitions[name]
        blocks = [r[0] for r in self.db.execute("SELECT id FROM blocks WHERE part = ?", (name,))]
        self.db.execute("BEGIN")
        try:
            if name in self.row_tables:
                if p[6] > self.sealer.block_rows:
                    self.db.execute(f"DROP TABLE IF EXISTS {name}_pruned")
                    self.db.execute(f"ALTER TABLE {name} RENAME TO {name}_pruned")
                    self.sealer.old_tables.append(f"{name}_pruned")
                else:
                    self.db.execute(f"DROP TABLE {name}")
            self.db.execute("DELETE FROM blocks WHERE part = ?", (name,))
            self.db.execute("DELETE FROM partitions WHERE name = ?", (name,))
            self.db.execute("DELETE FROM spans WHERE part = ?", (name,))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        del self.partitions[name]
        self.row_tables.discard(name)
        self._spans.pop(name, None)
        self.sealer.forget(name)
        self.sealer.doomed_blocks.extend(blocks)

    def prune_future(self, now: int) -> list[str]:
        """Drop partitions (and rollups) that start more than future_ms after now: written before the
        collector refused flow times from a broken or spoofed exporter clock (year 291,690,302), they
        would be shown, never expire and never be written to again. Called once, at store start."""
        hi = now + self.future_ms
        future = sorted(n for n, p in self.partitions.items() if p[0] > hi)
        if not future:
            return []
        rows = sum(self.partitions[n][2] for n in future)
        for name in future:
            self._drop_partition(name)
        self.db.execute("BEGIN")
        self.db.execute("DELETE FROM hists WHERE start_ms > ?", (hi,))
        self.db.execute("COMMIT")
        self.future_pruned_partitions += len(future)
        self.future_pruned_flows += rows
        log.warning("far-future partitions pruned", extra={"fields": {
            "partitions": len(future), "flows": rows, "first": future[0], "future_ms": self.future_ms}})
        return future
