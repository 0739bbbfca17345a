"""The web's way to the store: pages fail fast while the store is known to be down.

A few StoreClients (``web.store_connections``, one per store query worker) carry the pages' queries
(one try of ``query.timeout``: the person waiting on a page is the retry, and the next refresh
another), split in two lanes: ``light`` (one connection: what the ring or a small table answers,
the dashboard's queries) and ``heavy`` (the rest: history reads), so a dashboard never queues behind
a history scan, here or among the store's workers; /healthz and /metrics use a second one that waits
``quick_timeout_s`` at most, so they answer within a second or two whatever the pages are doing. When a query
gets no answer the gate remembers "store down" and every page fails at once with that reason, while a
background thread pings the store every ``recheck_s`` (``quick_timeout_s`` each, on its own socket)
and lifts the mark as soon as it answers. Waiting for a turn on the pages' socket is bounded too
(StoreBusy after ``query.timeout``), so requests never pile up behind a store that stopped answering.
"""
from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
from typing import Any, Callable

from flowmodel.client import StoreClient, StoreError, StoreUnavailable
from flowmodel.logs import fields

from . import timing

log = logging.getLogger(__name__)

LIGHT, HEAVY = "light", "heavy"
# set (to HEAVY) on the thread of a light query that StoreLanes let use an idle history connection
BORROWED: contextvars.ContextVar[str | None] = contextvars.ContextVar("flowlens_borrowed_lane", default=None)
QUICK_TIMEOUT_S = 1.0   # the background ping's wait for an answer
RECHECK_S = 2.0         # pause between background pings while the store is down


class StoreBusy(StoreUnavailable):
    """Other pages held the store connection for longer than the wait allowed; nothing was sent."""


class StoreGate:
    """Store queries for the pages, with the store's up/down state remembered between requests."""

    def __init__(self, endpoint: str, timeout_s: float, quick_timeout_s: float = QUICK_TIMEOUT_S,
                 recheck_s: float = RECHECK_S, clock: Callable[[], float] = time.monotonic, connections: int = 2,
                 keys=None):
        self.endpoint = endpoint
        self.keys = keys  # flowmodel.curve.client_keys(cfg): CURVE to the store's query socket; None: plain
        self.timeout_s = float(timeout_s)
        self.quick_timeout_s = quick_timeout_s
        self.recheck_s = recheck_s
        self.clock = clock
        connections = max(1, connections)
        # one connection for the light lane; history gets the rest (at least one: then they share the store's
        # workers, but still never this process's queue)
        self.lane_sizes = {LIGHT: 1, HEAVY: max(1, connections - 1)}
        self._clients = []
        self._free: dict[str, queue.Queue] = {}  # per lane, connections not in use; one query on each at a time
        for lane, n in self.lane_sizes.items():
            self._free[lane] = queue.Queue()
            for _ in range(n):
                c = StoreClient(endpoint, timeout_s=timeout_s, retries=0, keys=keys)
                self._clients.append(c)
                self._free[lane].put(c)
        self._quick = StoreClient(endpoint, timeout_s=quick_timeout_s, retries=0, keys=keys)
        self._quick_turn = threading.Lock()
        self._quick_failed: tuple[float, str] | None = None  # (when, why) of the last quick timeout
        self._state = threading.Lock()     # guards the fields below
        self._down_since: float | None = None
        self._down_reason = ""
        self._last_ok: float | None = None
        self._prober: threading.Thread | None = None
        self._closed = threading.Event()

    # ------------------------------------------------------------------ state

    @property
    def up(self) -> bool:
        """False while the store is known to be down (no query needed to answer this)."""
        with self._state:
            return self._down_since is None

    def state(self) -> dict:
        with self._state:
            now = self.clock()
            return {"up": self._down_since is None, "reason": self._down_reason,
                    "down_for_s": None if self._down_since is None else round(now - self._down_since, 1),
                    "last_ok_s_ago": None if self._last_ok is None else round(now - self._last_ok, 1)}

    def raise_if_down(self) -> None:
        with self._state:
            if self._down_since is None:
                return
            down_for = self.clock() - self._down_since
            reason = self._down_reason
        raise StoreUnavailable(f"{reason}; it has not answered for {down_for:.0f} s and is checked again "
                               f"every {self.recheck_s:g} s")

    def mark_up(self) -> None:
        with self._state:
            was_down = self._down_since is not None
            self._down_since = None
            self._down_reason = ""
            self._last_ok = self.clock()
        if was_down:
            log.info("store answers again", extra=fields(store=self.endpoint))

    def mark_down(self, reason: str) -> None:
        with self._state:
            first = self._down_since is None
            if first:
                self._down_since = self.clock()
                self._down_reason = reason
            start = first and not self._closed.is_set() and (self._prober is None or not self._prober.is_alive())
            if start:
                self._prober = threading.Thread(target=self._probe_loop, name="store-probe", daemon=True)
        if first:
            log.warning("store not answering", extra=fields(store=self.endpoint, error=reason))
        if start:
            self._prober.start()

    def _probe_loop(self) -> None:
        """Ping on a socket of its own until the store answers (then the pages go back to it)."""
        probe = StoreClient(self.endpoint, timeout_s=self.quick_timeout_s, retries=0, keys=self.keys)
        try:
            while not self._closed.wait(self.recheck_s):
                try:
                    probe.ping()
                except StoreUnavailable:
                    continue
                except StoreError:
                    pass  # it answered, even if with an error: it is up
                except Exception:
                    log.exception("store probe failed")
                    continue
                self.mark_up()
                return
        finally:
            probe.close()
            with self._state:
                if self._prober is threading.current_thread():
                    self._prober = None
            # a mark_down that came while this thread was finishing found it alive and started none
            if not self._closed.is_set() and not self.up:
                with self._state:
                    again = self._prober is None
                    if again:
                        self._prober = threading.Thread(target=self._probe_loop, name="store-probe", daemon=True)
                if again:
                    self._prober.start()

    def close(self) -> None:
        self._closed.set()
        prober = self._prober
        if prober is not None and prober is not threading.current_thread():
            prober.join(self.quick_timeout_s + 1)
        for c in self._clients:
            c.close()
        self._quick.close()

    # ------------------------------------------------------------------ queries

    def call(self, fn: Callable[[StoreClient], Any], quick: bool = False, lane: str = HEAVY) -> Any:
        """Run ``fn(client)`` unless the store is known down; a timeout marks it down. ``quick``: on the
        socket of /healthz and /metrics (no waiting behind pages; ``quick_timeout_s`` per answer);
        else on a connection of ``lane``."""
        wait_s = self.quick_timeout_s if quick else self.timeout_s
        lane = BORROWED.get() or lane  # a light query on an idle history connection (StoreLanes lends it)
        self.raise_if_down()
        # a little over one answer's wait: the query ahead either answers or marks the store down first
        t0 = time.perf_counter()
        client = self._take(quick, wait_s + 0.5, lane)
        t1 = time.perf_counter()
        timing.add("lane", t1 - t0)
        if client is None:
            self.raise_if_down()
            raise StoreBusy(f"the store at {self.endpoint} is busy: other requests waited on it for over "
                            f"{wait_s:g} s")
        try:
            # what the query ahead of this one found, re-raised as it is (not a new failure: re-stamping
            # it would keep /healthz failing after the store came back)
            self.raise_if_down()
            if quick and self._quick_failed and self.clock() - self._quick_failed[0] < self.quick_timeout_s:
                raise StoreUnavailable(self._quick_failed[1])  # the one ahead just waited in vain
        except StoreUnavailable:
            self._give(quick, client, lane)
            raise
        try:
            result = fn(client)
        except StoreBusy:
            raise
        except StoreUnavailable as e:
            if quick:  # a second without an answer is not "down" (the store may be busy): the pages decide
                self._quick_failed = (self.clock(), str(e))
            else:
                self.mark_down(str(e))
            raise
        except StoreError:
            self.mark_up()
            raise
        finally:
            timing.add("store", time.perf_counter() - t1)
            self._give(quick, client, lane)
        if quick:
            self._quick_failed = None
        self.mark_up()
        return result

    def _take(self, quick: bool, wait_s: float, lane: str) -> StoreClient | None:
        if quick:
            return self._quick if self._quick_turn.acquire(timeout=wait_s) else None
        try:
            return self._free[lane].get(timeout=wait_s)
        except queue.Empty:
            return None

    def _give(self, quick: bool, client: StoreClient, lane: str) -> None:
        if quick:
            self._quick_turn.release()
        else:
            self._free[lane].put(client)

    def flows(self, lane: str = HEAVY, **kw):
        return self.call(lambda c: c.flows(**kw), lane=lane)

    def top(self, lane: str = HEAVY, **kw) -> dict:
        return self.call(lambda c: c.top(**kw), lane=lane)

    def series(self, lane: str = HEAVY, **kw) -> dict:
        return self.call(lambda c: c.series(**kw), lane=lane)

    def overview(self, lane: str = LIGHT, **kw) -> dict:
        return self.call(lambda c: c.overview(**kw), lane=lane)

    def exporters(self, quick: bool = False, lane: str = LIGHT) -> dict:
        return self.call(lambda c: c.exporters(), quick, lane)

    def status(self, quick: bool = False, lane: str = LIGHT) -> dict:
        return self.call(lambda c: c.status(), quick, lane)

    def advisories(self, lane: str = LIGHT, **filters) -> dict:
        """The whole advisories reply (``advisories`` and, from newer stores, ``counts`` and ``total``)."""
        return self.call(lambda c: c.request("advisories", **c._times(filters)), lane=lane)

    def notes(self, lane: str = LIGHT, **args) -> list[dict]:
        """Operators' acknowledgements and silences (flowmodel.notes)."""
        return self.call(lambda c: c.notes(**args), lane=lane)

    def ping(self, quick: bool = True) -> bool:
        return self.call(lambda c: c.ping(), quick, LIGHT)
