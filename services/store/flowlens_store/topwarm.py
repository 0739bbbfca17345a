"""Warms the shared top cache (histread.SealedTotals) for the dashboard's standard ranges, so a user's
first dashboard over a day or three finds its hours merged already instead of merging 72 hourly
source blobs in the request (~150 ms a dimension on the shared 2-core box).

A thread, inert until ``start``. At start and whenever the sealed hours a range ending now covers
change (an hour sealed, the clock past an hour), it merges each range's whole-hour pieces for the
dashboard's tops (src, dst, protocol, scaled bytes: the key the dashboard's own top asks for) through
the cache, a UTC day's hours at a time as key_totals asks for them, so a later query with the same
pieces is a hit, and any window holding the same whole days finds those; a round every REFRESH_S
also puts back what other windows' tops evicted. It never delays users or ingest: it runs
at the lowest CPU priority, pauses between rollup pieces while a query is being answered or the
write queue has a backlog (``busy``), and gives an item up after WAIT_LIMIT_S of pausing (counted).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

from . import histread as H
from .layout import connect_reader, now_ms

log = logging.getLogger(__name__)

DASHBOARD_DIMS = ("src", "dst", "protocol")  # the tops the dashboard (and the overview op) shows
SCALED_NAMES = ("sbytes", "spackets", "flows")  # the sums a scaled top merges (histops.top)
POLL_S = 10.0       # how often the warmer looks for newly sealed hours or a new hour
REFRESH_S = 60.0    # a round at least this often: puts back what other windows' tops evicted (hits cost ~1 ms)
WAIT_LIMIT_S = 5.0  # pausing for users longer than this gives the item up until the next round (read txn bound)


class _GiveUp(Exception):
    """Stop this item: the service is stopping, or users kept the store busy too long."""


class TopWarmer:
    """``ranges_ms``: the window lengths to warm (storage.query_warm_ranges); ``busy``: true while a
    user's query or a write backlog should have the CPU."""

    def __init__(self, sqlite_path: str, cache: H.SealedTotals, ranges_ms: list[int], busy: Callable[[], bool],
                 clock: Callable[[], int] = now_ms, poll_s: float = POLL_S):
        self.sqlite_path = sqlite_path
        self.cache = cache
        self.ranges_ms = sorted(set(ranges_ms))
        self.busy = busy
        self.clock = clock
        self.poll_s = poll_s
        self.polls = 0           # looks at the sealed hours and the clock
        self.rounds = 0          # rounds run (at start, then one per change of the sealed hours or the hour)
        self.merged = 0          # (range, dim, UTC day) totals merged into the cache
        self.fresh = 0           # ... found in the cache already (another range's whole day, or unchanged)
        self.given_up = 0        # ... given up (users busy past WAIT_LIMIT_S, or stopping)
        self.errors = 0
        self.paused_s = 0.0      # time spent waiting for users' queries
        self.last_round_ms = 0.0  # how long the last round took
        self.last_round_at = 0   # when it ended (ms since epoch), 0 before the first
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._db = None

    def start(self) -> "TopWarmer":
        if self.ranges_ms and self.cache is not None:
            self._thread = threading.Thread(target=self._run, name="top-warmer", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Safe twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def stats(self) -> dict:
        return {"ranges_s": [r // 1000 for r in self.ranges_ms], "polls": self.polls, "rounds": self.rounds, "merged": self.merged,
                "fresh": self.fresh, "given_up": self.given_up, "errors": self.errors,
                "paused_s": round(self.paused_s, 1), "last_round_ms": round(self.last_round_ms, 1),
                "last_round_at": self.last_round_at, "cache_bytes": self.cache.bytes if self.cache else 0}

    # ---------------------------------------------------------------- the thread

    def _run(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)  # this thread only (Linux)
        except (OSError, AttributeError):
            log.info("top warmer runs at normal priority: the platform has no per-thread nice")
        self._db = connect_reader(self.sqlite_path)
        seen, due = None, 0.0
        try:
            while not self._stop.is_set():
                self.polls += 1
                try:
                    mark = self._mark()
                    if mark != seen or time.monotonic() >= due:
                        self.warm_round()
                        seen, due = mark, time.monotonic() + REFRESH_S
                except Exception:
                    self.errors += 1
                    log.exception("top warmer round failed")
                self._stop.wait(self.poll_s)
        finally:
            self._db.close()

    def _mark(self) -> tuple:
        """What decides the pieces of a range ending now: the hour, and the sealed partitions' rollups."""
        row = self._db.execute("SELECT count(*), max(end_ms) FROM partitions WHERE sealed").fetchone()
        hists = self._db.execute("SELECT max(rowid) FROM hists").fetchone()
        return self.clock() // H.HOUR_STEP, tuple(row), hists[0]

    def warm_round(self) -> None:
        """One pass over every (range, dim); public so tests drive it without the thread."""
        if self._db is None:
            self._db = connect_reader(self.sqlite_path)
        t = time.perf_counter()
        now = self.clock()
        for span in self.ranges_ms:
            for dim in DASHBOARD_DIMS:
                if self._stop.is_set():
                    return
                self._warm_one(dim, now - span, now)
        self.rounds += 1
        self.last_round_ms = (time.perf_counter() - t) * 1000
        self.last_round_at = now_ms()

    def _warm_one(self, dim: str, since: int, until: int) -> None:
        db = self._db
        db.execute("BEGIN")
        try:
            hours = [p for p in H.plan(db, dim, since, until).pieces if p[2] >= H.HOUR_STEP]
            for run in H.day_runs(hours):  # the runs key_totals asks the cache for (a UTC day's hours each)
                merged = []

                def compute(run=run):
                    merged.append(True)
                    return H.key_totals(db, dim, run, SCALED_NAMES, self._yield_to_users)
                self.cache.totals(db, dim, run, SCALED_NAMES, compute)
                if merged:
                    self.merged += 1
                else:
                    self.fresh += 1
        except _GiveUp:
            self.given_up += 1
        finally:
            db.execute("COMMIT")

    def _yield_to_users(self) -> None:
        """Called between rollup pieces: wait while users' queries or ingest should have the CPU."""
        waited = 0.0
        while self.busy():
            if self._stop.is_set() or waited >= WAIT_LIMIT_S:
                self.paused_s += waited
                raise _GiveUp()
            self._stop.wait(0.02)
            waited += 0.02
        self.paused_s += waited
        if self._stop.is_set():
            raise _GiveUp()
