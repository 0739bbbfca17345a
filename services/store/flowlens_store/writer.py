"""The one SQLite writer thread, fed by a bounded queue so the bus receive loop never waits on disk.

The receive loop offers (columns-with-seq) batches with ``offer``; a full queue sheds the batch and
counts it. The queue is bounded in rows (``queue_batches`` full batches of FULL_BATCH_ROWS), not in
batches: at low rates the collector publishes small batches every 0.2 s, and 64 of those covered only
12.8 s of a writer pause, while the same memory holds 262,144 rows of any size of batch. The thread coalesces queued batches up to ``storage.write_max_rows`` per transaction,
writes advisory/health events, and between transactions seals partitions one bounded step (a ~0.2 s
transaction) per loop pass, skipping passes while the queue is more than half full, and prunes on
schedule (housekeeping.py). ``stop()`` commits everything queued before it returns.

A chunk whose transaction fails (a full disk, an I/O error) is not dropped: it stays at the head and
is tried again with a backoff (RETRY_FIRST_S doubling to RETRY_MAX_S) while no later chunk is taken,
so rows and the delivery marks that confirm them commit in arrival order. The queue then fills and
the receive loop sheds (counted; collectors keep what was not confirmed and send it again). Failed
event writes and sealing or pruning steps are kept and retried the same way.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time

import numpy as np

from flowmodel.logs import RateLimitedLog, fields

from . import delivery
from .housekeeping import WriterHousekeeping
from .warm import WarmWriter, now_ms

log = logging.getLogger(__name__)
_STOP = object()
_WAKE = object()  # in the flows queue after an event: the writer takes it now, not after its 0.1 s wait
MARK = "_stream_mark"  # an offered batch's delivery.Ledger.mark(): persisted with its rows
FULL_BATCH_ROWS = 4096     # collector.batch_max_flows' default: the row bound is queue_batches of these
MAX_BATCHES_PER_FULL = 16  # and at most this many queued batches per full batch of rows (per-batch overhead)
RETRY_FIRST_S = 0.5       # a failed transaction is tried again after this, then after twice as long ...
RETRY_MAX_S = 10.0        # ... up to this
STOP_RETRY_S = 5.0        # at stop, a chunk that still cannot be written is tried this long, then left
                          # to the collectors (unconfirmed) and counted in unwritten_at_stop


class _Chunk:
    """Coalesced batches on their way into one transaction, kept whole until it commits."""

    __slots__ = ("cols", "marks", "rows", "written")

    def __init__(self, cols: dict[str, np.ndarray], marks: dict[str, tuple[int, int, int]]):
        self.cols = cols
        self.marks = marks  # stream -> (batch_seq, flows through it, lost flows): persisted with the rows
        self.rows = len(cols["seq"])
        self.written: int | None = None  # rows committed, once write_flows returned (only the marks may remain)


class Writer(WriterHousekeeping):
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
        self.queued_batches_max = queue_batches * MAX_BATCHES_PER_FULL
        self.queued_batches = 0
        self._qlock = threading.Lock()
        # bounded by queued_rows and queued_batches, so an event's wake marker never takes a batch's place
        self.flows: queue.Queue = queue.Queue()
        self.events: queue.Queue = queue.Queue(maxsize=events_max)
        self.committed = 0
        self.stream_committed: dict[str, int] = {}  # stream -> highest batch_seq committed (read by the ack timer)
        delivery.install_marks(warm.db)
        self.shed_batches = 0
        self.shed_flows = 0
        self.shed_events = 0
        self.write_errors = 0       # failed flow or event transactions (each attempt)
        self.maintain_errors = 0    # failed sealing, pruning or vacuum steps (each attempt)
        self.write_failing_since: int | None = None  # ms of the first failure of the chunk now being retried
        self.last_write_error: str | None = None     # "database or disk is full"
        self.last_write_error_at: int | None = None
        self.unwritten_at_stop = 0  # rows given up at stop while writes failed (collectors still hold them)
        self._failed: _Chunk | None = None
        self._retry_at = 0.0
        self._backoff_s = RETRY_FIRST_S
        self._failed_events: list = []
        self._events_retry_at = 0.0
        self._maintain_retry_at = 0.0
        self._maintain_backoff_s = RETRY_FIRST_S
        self._stop_requested = threading.Event()
        self._give_up_at: float | None = None
        self.transactions = 0
        self._thread: threading.Thread | None = None
        self._rl = RateLimitedLog(log)
        self._init_housekeeping(prune_interval_s)

    @property
    def failed_rows(self) -> int:
        """Rows of the chunk whose transaction failed, waiting for its retry."""
        c = self._failed
        return c.rows if c is not None else 0

    @property
    def rows_waiting(self) -> int:
        """Rows held in memory for SQLite: the failed chunk and the queue."""
        return self.failed_rows + self.queued_rows

    # ---------------------------------------------------------------- producer side (receive thread)

    def offer(self, cols: dict[str, np.ndarray]) -> bool:
        n = len(cols["seq"])
        with self._qlock:
            # a batch larger than the whole bound still goes into an empty queue
            if not (self.queued_rows and self.queued_rows + n > self.queue_rows_max) and \
                    self.queued_batches < self.queued_batches_max:
                self.flows.put_nowait(cols)
                self.queued_rows += n
                self.queued_batches += 1
                return True
        self.shed_batches += 1
        self.shed_flows += n
        self._rl.warning("shed", "write queue full, batch shed", depth=self.queued_batches, rows=self.queued_rows,
                         shed_batches=self.shed_batches, shed_flows=self.shed_flows)
        return False

    def offer_event(self, topic: str, body: dict) -> bool:
        try:
            self.events.put_nowait((topic, body, now_ms()))
        except queue.Full:
            self.shed_events += 1
            self._rl.warning("shed_event", "event queue full, event shed", shed_events=self.shed_events)
            return False
        if self.flows.empty():  # queued flows wake the writer anyway
            self.flows.put_nowait(_WAKE)
        return True

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> "Writer":
        self._thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 120.0) -> None:
        if self._thread is None:
            return
        self._stop_requested.set()
        deadline = time.monotonic() + timeout_s
        self.flows.put(_STOP)  # after what is queued: the writer drains it (or gives up, see STOP_RETRY_S)
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            log.error("writer did not finish in time", extra=fields(queued=self.flows.qsize()))
        self._thread = None
        self.warm.close()

    # ---------------------------------------------------------------- the thread

    def _run(self) -> None:
        stopping = False
        while True:
            try:
                if self._failed is not None:
                    if not self._retry_failed():
                        break  # given up at stop
                elif stopping:
                    break
                else:
                    chunk, stopping = self._take()
                    if chunk:
                        self._write(self._coalesce(chunk))
                        del chunk
                    self._release(busy=bool(self.queued_rows))
                self._events()
                self._maintain()
            except Exception:
                self.write_errors += 1
                log.exception("writer loop error")
                self._rollback()
        self._events()
        log.info("writer stopped", extra=fields(committed=self.committed, shed_batches=self.shed_batches,
                                                unwritten_at_stop=self.unwritten_at_stop))

    def _take(self) -> tuple[list, bool]:
        """Queued batches for one transaction (up to max_rows), and whether stop() was asked."""
        chunk: list = []
        rows = 0
        stopping = False
        try:
            item = self.flows.get(timeout=0.1)
            while True:
                if item is _STOP:
                    stopping = True
                    break
                if item is _WAKE:
                    break
                chunk.append(item)
                rows += len(item["seq"])
                if rows >= self.max_rows:
                    break
                item = self.flows.get_nowait()
        except queue.Empty:
            pass
        if chunk:
            with self._qlock:
                self.queued_rows -= rows
                self.queued_batches -= len(chunk)
        return chunk, stopping

    @staticmethod
    def _coalesce(chunk: list[dict]) -> _Chunk:
        marks: dict[str, tuple[int, int, int]] = {}
        for c in chunk:
            mark = c.pop(MARK, None)
            if mark is not None:
                marks[mark[0]] = mark[1:]  # in queue order: the last one per stream is its highest
        cols = chunk[0] if len(chunk) == 1 else {k: np.concatenate([c[k] for c in chunk]) for k in chunk[0]}
        return _Chunk(cols, marks)

    def _write(self, c: _Chunk) -> bool:
        """One attempt at the chunk's transaction. On failure the chunk is kept (``_failed``) and
        nothing is confirmed: its marks commit with its rows, and only then reach stream_committed."""
        try:
            delivery.stage_marks(self.warm.db, c.marks, now_ms())
            if c.written is None:
                c.written = self.warm.write_flows(c.cols)
            if c.marks and c.written == 0:  # every row dropped before a transaction: no trigger fired
                delivery.save_marks(self.warm.db)
        except Exception as e:
            self._failed = c
            self._write_failed(e, "flow write failed; rows kept for a retry", rows=c.rows, rows_waiting=self.rows_waiting)
            self._retry_at = time.monotonic() + self._backoff_s
            self._backoff_s = min(RETRY_MAX_S, self._backoff_s * 2)
            return False
        if self._failed is not None or self.write_failing_since is not None:
            log.warning("flow writes resumed", extra=fields(
                rows=c.rows, failing_s=round((now_ms() - (self.write_failing_since or now_ms())) / 1000, 1),
                write_errors=self.write_errors))
        self._failed = None
        self._events_retry_at = 0.0  # the file takes writes again: kept events go next
        if not self._failed_events:
            self.write_failing_since = None
        self._backoff_s = RETRY_FIRST_S
        for stream, (seq, *_rest) in c.marks.items():
            self.stream_committed[stream] = seq
        written, n = c.written, c.rows
        if written < n:
            log.warning("flows dated outside the retention window dropped: too many partitions",
                        extra=fields(rows=n - written, partitions=len(self.warm.partitions)))
        self.committed += written
        self.transactions += 1
        return True

    def _retry_failed(self) -> bool:
        """Wait (at most 0.1 s a pass) for the failed chunk's retry time, then try it once. False when
        stop() was asked and it still fails after STOP_RETRY_S: the rows are left to the collectors."""
        mono = time.monotonic()
        if self._stop_requested.is_set():
            self._retry_at = min(self._retry_at, mono + RETRY_FIRST_S)
            if self._give_up_at is None:
                self._give_up_at = mono + STOP_RETRY_S
        if mono < self._retry_at:
            self._stop_requested.wait(min(0.1, self._retry_at - mono))
            return True
        if self._write(self._failed):
            return True
        if self._stop_requested.is_set() and time.monotonic() >= self._give_up_at:
            lost = self.failed_rows
            while True:
                try:
                    item = self.flows.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, dict):  # not a _STOP or _WAKE marker
                    lost += len(item["seq"])
            with self._qlock:
                self.queued_rows = self.queued_batches = 0
            self.unwritten_at_stop += lost
            self._failed = None
            log.error("store stopping with rows it could not write; collectors resend what was not confirmed",
                      extra=fields(rows=lost, error=self.last_write_error))
            return False
        return True

    def _write_failed(self, e: Exception, msg: str, **kv) -> None:
        """Count a failed transaction, leave no transaction open, log the first of a run in full."""
        self.write_errors += 1
        self._rollback()
        self.last_write_error = str(e) or type(e).__name__
        self.last_write_error_at = now_ms()
        if self.write_failing_since is None:
            self.write_failing_since = self.last_write_error_at
            log.exception(msg, extra=fields(path=self.warm.path, free_bytes=free_bytes(self.warm.path), **kv))
        else:
            self._rl.warning("write_failed", msg, error=self.last_write_error, write_errors=self.write_errors, **kv)

    def _rollback(self) -> None:
        """A step that failed may leave its transaction open (warm.prune has no rollback of its own)."""
        try:
            if self.warm.db.in_transaction:
                self.warm.db.execute("ROLLBACK")
        except Exception as e:
            self._rl.warning("rollback", "rollback failed", error=str(e))

    def _events(self) -> None:
        """Queued events in one transaction; after a failure they are kept (up to the event queue's
        bound, the rest shed and counted) and tried again with the flows' backoff."""
        if self._failed_events and time.monotonic() < self._events_retry_at:
            return
        events, self._failed_events = self._failed_events, []
        while len(events) < self.events.maxsize:
            try:
                events.append(self.events.get_nowait())
            except queue.Empty:
                break
        if events:
            try:
                self.warm.write_events(events)
            except Exception as e:
                self._failed_events = events
                self._events_retry_at = time.monotonic() + self._backoff_s
                self._write_failed(e, "event write failed; events kept for a retry", events=len(events))
                return
            if self._failed is None:
                self.write_failing_since = None

    def _maintain(self) -> None:
        """Sealing, vacuum and pruning steps; one that fails is counted and tried again after a
        backoff (each is its own transaction, so a failure undoes only that step)."""
        mono = time.monotonic()
        if mono < self._maintain_retry_at:
            return
        try:
            self._maintain_steps(mono)
        except Exception as e:
            self.maintain_errors += 1
            self._rollback()
            self._maintain_retry_at = time.monotonic() + self._maintain_backoff_s
            self._maintain_backoff_s = min(RETRY_MAX_S, self._maintain_backoff_s * 2)
            self.last_write_error = str(e) or type(e).__name__
            self.last_write_error_at = now_ms()
            self._rl.warning("maintain", "sealing or pruning step failed; tried again later", error=self.last_write_error,
                             maintain_errors=self.maintain_errors)
            return
        self._maintain_backoff_s = RETRY_FIRST_S


def free_bytes(path: str) -> int | None:
    """Bytes free to this process on the file system holding ``path``."""
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def mount_point(path: str) -> str:
    """The mount point of the file system holding ``path`` (what to free space on)."""
    p = os.path.dirname(os.path.abspath(path))
    while not os.path.ismount(p):
        p = os.path.dirname(p)
    return p
