"""The one SQLite writer thread, fed by a bounded queue so the bus receive loop never waits on disk.

The receive loop offers (columns-with-seq) batches with ``offer``; a full queue sheds the batch and
counts it. The queue is bounded in rows (``queue_batches`` full batches of FULL_BATCH_ROWS), not in
batches: at low rates the collector publishes small batches every 0.2 s, and 64 of those covered only
12.8 s of a writer pause, while the same memory holds 262,144 rows of any size of batch. The thread coalesces queued batches up to ``storage.write_max_rows`` per transaction,
writes advisory/health events, seals partitions one bounded step (a ~0.2 s transaction) per loop
pass, skipping passes while the queue is more than half full, and prunes on schedule. ``stop()`` commits
everything queued before it returns.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import queue
import threading
import time

import numpy as np

from flowmodel.logs import RateLimitedLog, fields

from . import delivery
from .warm import WarmWriter, now_ms

log = logging.getLogger(__name__)
_STOP = object()
MARK = "_stream_mark"  # an offered batch's delivery.Ledger.mark(): persisted with its rows
TRIM_INTERVAL_S = 5.0
FULL_BATCH_ROWS = 4096     # collector.batch_max_flows' default: the row bound is queue_batches of these
SEAL_MAX_WAIT_S = 2.0     # a busy writer still takes a sealing step this often
MAX_BATCHES_PER_FULL = 16  # and at most this many queued batches per full batch of rows (per-batch overhead)


def _malloc_trim():
    """glibc's malloc_trim, or None elsewhere."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


class Writer:
    def __init__(self, warm: WarmWriter, queue_batches: int, max_rows: int, prune_interval_s: float,
                 retention_ms: int, rollup_retention_ms: int, advisory_retention_ms: int, events_max: int = 10_000,
                 hourly_retention_ms: int | None = None, five_min_retention_ms: int | None = None, max_bytes: int = 0):
        self.warm = warm
        self.max_rows = max_rows
        self.prune_interval_s = prune_interval_s
        self.retention_ms = retention_ms
        self.rollup_retention_ms = rollup_retention_ms
        self.hourly_retention_ms = hourly_retention_ms
        self.max_bytes = max_bytes
        self.hist_retention_ms = {60_000: rollup_retention_ms,
                                  300_000: five_min_retention_ms or max(rollup_retention_ms, 30 * 86_400_000),
                                  3_600_000: hourly_retention_ms or 365 * 86_400_000}
        self.advisory_retention_ms = advisory_retention_ms
        self.queue_batches = queue_batches
        self.queue_rows_max = queue_batches * FULL_BATCH_ROWS
        self.queued_rows = 0
        self._qlock = threading.Lock()
        self.flows: queue.Queue = queue.Queue(maxsize=queue_batches * MAX_BATCHES_PER_FULL)
        self.events: queue.Queue = queue.Queue(maxsize=events_max)
        self.committed = 0
        self.stream_committed: dict[str, int] = {}  # stream -> highest batch_seq committed (read by the ack timer)
        delivery.install_marks(warm.db)
        self.shed_batches = 0
        self.shed_flows = 0
        self.shed_events = 0
        self.write_errors = 0
        self.transactions = 0
        self.pruned_partitions = 0
        self._thread: threading.Thread | None = None
        self._rl = RateLimitedLog(log)
        self._next_prune = time.monotonic() + prune_interval_s  # not at start: a restart must not drop data early
        self._next_seal = time.monotonic() + 5.0
        self._seal_wait_until = 0.0
        self.seal_steps = 0
        self.seal_step_max_s = 0.0  # longest single sealing step: the writer's longest pause for sealing
        self._trim = _malloc_trim()
        self._dirty = False      # transient buffers were freed since the last trim
        self._next_trim = 0.0

    # ---------------------------------------------------------------- producer side (receive thread)

    def offer(self, cols: dict[str, np.ndarray]) -> bool:
        n = len(cols["seq"])
        with self._qlock:
            # a batch larger than the whole bound still goes into an empty queue
            if not (self.queued_rows and self.queued_rows + n > self.queue_rows_max):
                try:
                    self.flows.put_nowait(cols)
                    self.queued_rows += n
                    return True
                except queue.Full:
                    pass
        self.shed_batches += 1
        self.shed_flows += n
        self._rl.warning("shed", "write queue full, batch shed", depth=self.flows.qsize(), rows=self.queued_rows,
                         shed_batches=self.shed_batches, shed_flows=self.shed_flows)
        return False

    def offer_event(self, topic: str, body: dict) -> bool:
        try:
            self.events.put_nowait((topic, body, now_ms()))
            return True
        except queue.Full:
            self.shed_events += 1
            self._rl.warning("shed_event", "event queue full, event shed", shed_events=self.shed_events)
            return False

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> "Writer":
        self._thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 120.0) -> None:
        if self._thread is None:
            return
        self.flows.put(_STOP)  # blocks only until the writer makes room; it is draining
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.error("writer did not finish in time", extra=fields(queued=self.flows.qsize()))
        self._thread = None
        self.warm.close()

    # ---------------------------------------------------------------- the thread

    def _run(self) -> None:
        stopping = False
        while not stopping:
            try:
                chunk: list = []
                rows = 0
                try:
                    item = self.flows.get(timeout=0.1)
                    while True:
                        if item is _STOP:
                            stopping = True
                            break
                        chunk.append(item)
                        rows += len(item["seq"])
                        if rows >= self.max_rows:
                            break
                        item = self.flows.get_nowait()
                except queue.Empty:
                    pass
                if rows:
                    with self._qlock:
                        self.queued_rows -= rows
                if chunk:
                    self._write(chunk)
                    self._dirty = True
                else:
                    self._release()
                self._events()
                self._maintain()
            except Exception:
                self.write_errors += 1
                log.exception("writer loop error")
        self._events()
        log.info("writer stopped", extra=fields(committed=self.committed, shed_batches=self.shed_batches))

    def _write(self, chunk: list[dict]) -> None:
        marks: dict[str, tuple[int, int, int]] = {}
        for c in chunk:
            mark = c.pop(MARK, None)
            if mark is not None:
                marks[mark[0]] = mark[1:]  # in queue order: the last one per stream is its highest
        cols = chunk[0] if len(chunk) == 1 else {k: np.concatenate([c[k] for c in chunk]) for k in chunk[0]}
        n = len(cols["seq"])
        try:
            delivery.stage_marks(self.warm.db, marks, now_ms())
            written = self.warm.write_flows(cols)
            if marks and written == 0:  # every row dropped before a transaction: no trigger fired
                delivery.save_marks(self.warm.db)
        except Exception:
            self.write_errors += 1
            log.exception("flow write failed; rows lost", extra=fields(rows=n))
            return
        for stream, (seq, *_rest) in marks.items():
            self.stream_committed[stream] = seq
        if written < n:
            log.warning("flows dated outside the retention window dropped: too many partitions",
                        extra=fields(rows=n - written, partitions=len(self.warm.partitions)))
        self.committed += written
        self.transactions += 1

    def _release(self) -> None:
        """With the queue empty, hand the freed transients (coalesced columns, bulk-insert blobs,
        SQLite statement memory) back to the kernel: glibc keeps them in the thread's arena
        otherwise, about 20 MiB of RSS after a burst. At most every TRIM_INTERVAL_S."""
        mono = time.monotonic()
        if self._dirty and self._trim is not None and mono >= self._next_trim:
            self._next_trim = mono + TRIM_INTERVAL_S
            self._dirty = False
            self._trim(0)

    def _events(self) -> None:
        events = []
        while True:
            try:
                events.append(self.events.get_nowait())
            except queue.Empty:
                break
        if events:
            try:
                self.warm.write_events(events)
            except Exception:
                self.write_errors += 1
                log.exception("event write failed", extra=fields(events=len(events)))

    def _seal_step(self) -> None:
        t = time.monotonic()
        self.warm.seal_step(now_ms())
        t1 = time.monotonic()
        self.seal_steps += 1
        self.seal_step_max_s = max(self.seal_step_max_s, t1 - t)
        self._seal_wait_until = t1 + SEAL_MAX_WAIT_S

    def _maintain(self) -> None:
        mono = time.monotonic()
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
            self._next_prune = mono + self.prune_interval_s
            dropped = self.warm.prune(now_ms(), self.retention_ms, self.rollup_retention_ms, self.advisory_retention_ms,
                                      self.hourly_retention_ms, max_bytes=self.max_bytes,
                                      hist_retention_ms=self.hist_retention_ms)
            self.pruned_partitions += len(dropped)
            if dropped:
                log.info("partitions dropped", extra=fields(partitions=",".join(dropped)))
