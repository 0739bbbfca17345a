"""The writer thread's housekeeping between its transactions, on a schedule: a sealing step
(warm.seal_step) at most every loop pass and at least every SEAL_MAX_WAIT_S while the queue is
busy, the free pages a prune left handed back to the file system while it is idle, pruning every
storage.prune_interval, and memory freed by the writer and the query workers handed back to the
kernel (malloc_trim).

A mixin of writer.Writer, which owns the warm tier, the queue and the retention settings; its
``_maintain`` runs ``_maintain_steps`` and retries a step that failed after a backoff.
"""
from __future__ import annotations

import logging
import time

from flowmodel.logs import fields
from flowmodel.memory import malloc_trim

from .layout import now_ms

log = logging.getLogger(__name__)

TRIM_INTERVAL_S = 5.0     # freed memory goes back to the kernel this often while the queue is empty ...
TRIM_BUSY_S = 2.0         # ... and while it is not (a long burst: sealing and rollups churn)
SEAL_MAX_WAIT_S = 2.0     # a busy writer still takes a sealing step this often


class WriterHousekeeping:
    def _init_housekeeping(self, prune_interval_s: float) -> None:
        """The schedule's state, set by Writer.__init__."""
        self.pruned_partitions = 0
        self._next_prune = time.monotonic() + prune_interval_s  # not at start: a restart must not drop data early
        self._next_seal = time.monotonic() + 5.0
        self._seal_wait_until = 0.0
        self.seal_steps = 0
        self.seal_step_max_s = 0.0  # longest single sealing step: the writer's longest pause for sealing
        self._trim = malloc_trim()
        self._next_trim = 0.0

    def _maintain_steps(self, mono: float) -> None:
        if self.warm.vacuum_due and not self.warm.seal_pending() and self.queued_rows == 0:
            self.warm.vacuum_step()  # hand pages freed by a prune back to the file system, 8 MiB a pass
        if self.warm.seal_pending():
            # one bounded step (<= ~0.3 s) per loop pass, after the flow transaction; none while the
            # queue is more than half full, unless sealing has waited SEAL_MAX_WAIT_S for a step
            if self.queued_rows <= self.queue_rows_max // 2 or mono >= self._seal_wait_until:
                self._seal_step()
        elif mono >= self._next_seal:
            self._next_seal = mono + 5.0
            self._seal_step()
        if mono >= self._next_prune:
            dropped = self.warm.prune(now_ms(), self.retention_ms, self.rollup_retention_ms, self.advisory_retention_ms,
                                      self.hourly_retention_ms, max_bytes=self.max_bytes,
                                      hist_retention_ms=self.hist_retention_ms)
            self._next_prune = mono + self.prune_interval_s  # after it succeeded: a failed prune is tried again
            self.pruned_partitions += len(dropped)
            if dropped:
                log.info("partitions dropped", extra=fields(partitions=",".join(dropped)))

    def _seal_step(self) -> None:
        t = time.monotonic()
        pending = self.warm.seal_step(now_ms())
        if not pending and self.seal_steps and self._trim is not None:
            # the last due partition is sealed: its row mirror and rollup builders are garbage now, and
            # a query right after a load should not find them in RSS until the next periodic trim (the
            # history bench's store: 140 MB just after sealing, 95 MB once trimmed)
            self._trim(0)
            self._next_trim = time.monotonic() + TRIM_INTERVAL_S
        t1 = time.monotonic()
        self.seal_steps += 1
        self.seal_step_max_s = max(self.seal_step_max_s, t1 - t)
        self._seal_wait_until = t1 + SEAL_MAX_WAIT_S

    def _release(self, busy: bool = False) -> None:
        """Hand freed memory back to the kernel: the writer's transients (coalesced columns, bulk-insert
        blobs, blocks and rollups being built), and as malloc_trim walks every arena, what the query
        workers freed after a large answer; glibc keeps it in RSS otherwise (about 20 MiB after a
        burst). Every TRIM_INTERVAL_S while the queue is empty, every TRIM_BUSY_S while it is not; a
        trim with nothing to free costs well under a millisecond."""
        mono = time.monotonic()
        if self._trim is not None and mono >= self._next_trim:
            self._next_trim = mono + (TRIM_BUSY_S if busy else TRIM_INTERVAL_S)
            self._trim(0)
