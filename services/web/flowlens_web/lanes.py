"""The pages' way to the StoreGate from async handlers: two lanes, per-client limits, and waits that
end when the browser goes away.

- ``light``: what the ring or a small table answers (the dashboard's overview, advisories,
  exporters, status, /about's last 5 minutes); ``heavy``: history reads (the flow explorer, top and
  series over SQLite). Each lane has its own store connections (StoreGate ``lane_sizes``), so a
  dashboard never waits behind a history scan: with ``web.store_connections`` = the store's query
  workers, history holds at most all but one of them. A light query finding its lane busy borrows
  an idle history connection (history never borrows back), so dashboards also run side by side.
- A turn on a lane is waited for on the event loop (cancellable), then the query runs on a thread
  of its own; the turn is given back when that thread ends, even if the page stopped waiting.
- A client (address) runs or waits for at most ``heavy_per_client`` heavy queries at once; one
  more is refused with ``TooBusy`` (the app answers 429 with Retry-After).
- A heavy query that would wait more than half of ``query.timeout`` for its turn (the turns ahead
  of it times the recent mean turn, per history connection; or the oldest waiting turn has waited
  that long already) is refused at once with ``TooBusy`` too, instead of waiting the whole timeout
  for a 503: a crowd gets a deliberate 429 with the wait. Half: the other half is the store's answer.
  One admitted on a low estimate that still waits the whole timeout gets the same 429 (late).
- While a page waits, the request's ``receive`` is watched: a disconnect cancels the wait
  (``ClientGone``) and, if the query had not started, it never runs.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import logging
import math
import time
from typing import Any, Callable

from . import timing
from .storegate import BORROWED, HEAVY, LIGHT, StoreBusy, StoreGate

log = logging.getLogger(__name__)

# which lane each gate method takes by default
HISTORY_TURN_WEIGHT = 0.2  # each ended heavy turn's weight in the moving average of turns
LANE_OF = {"overview": LIGHT, "advisories": LIGHT, "exporters": LIGHT, "status": LIGHT, "notes": LIGHT,
           "flows": HEAVY, "top": HEAVY, "series": HEAVY}


class TooBusy(Exception):
    """This client already has its share of history queries running or waiting."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ClientGone(Exception):
    """The browser closed the connection while its page waited on the store."""


class StoreLanes:
    def __init__(self, gate: StoreGate, heavy_per_client: int, retry_after_s: int = 2):
        self.gate = gate
        self.heavy_per_client = heavy_per_client
        self.retry_after_s = retry_after_s
        self._slots = {lane: asyncio.Semaphore(n) for lane, n in gate.lane_sizes.items()}
        self._pool = concurrent.futures.ThreadPoolExecutor(sum(gate.lane_sizes.values()), "store-lane")
        self._heavy: collections.Counter[str] = collections.Counter()  # client -> heavy queries running or waiting
        self.cancelled = 0      # waits ended because the browser went away
        self.refused = 0        # heavy queries refused with 429
        self.borrowed = 0       # light queries run on an idle history connection
        self.shed = 0           # heavy queries refused with 429 because their wait would pass query.timeout
        self._history_turns = 0  # heavy turns running or waiting (not light ones on a borrowed connection)
        self._history_turn_s: float | None = None  # recent mean heavy turn (moving average)
        self._history_waiting: dict[object, float] = {}  # heavy turns waiting -> since (perf_counter), oldest first

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def query(self, request, op: str, lane: str | None = None, **kw) -> Any:
        """``gate.<op>(**kw)`` on its lane for this request."""
        lane = lane or LANE_OF[op]
        method = getattr(self.gate, op)
        return await self.run(request, lane, lambda: method(lane=lane, **kw))

    async def run(self, request, lane: str, fn: Callable[[], Any]) -> Any:
        client = request.client.host if request.client else "?"
        work = asyncio.ensure_future(self._turn(lane, fn, client))
        watch = asyncio.ensure_future(_disconnected(request.receive))
        try:
            done, _ = await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
            if work in done:
                return work.result()
            work.cancel()
            self.cancelled += 1
            raise ClientGone(f"{client} went away while its page waited on the store")
        finally:
            watch.cancel()
            if not work.done():
                work.cancel()

    async def turn(self, client: str, lane: str, fn: Callable[[], Any]) -> Any:
        """``fn`` on ``lane`` for ``client`` (an address) without watching a request: for the later
        reads of a streamed response, whose disconnect Starlette watches itself."""
        return await self._turn(lane, fn, client)

    async def _turn(self, lane: str, fn: Callable[[], Any], client: str) -> Any:
        if lane == HEAVY:
            if self._heavy[client] >= self.heavy_per_client:
                self.refused += 1
                raise TooBusy(f"this browser (address {client}) already has {self._heavy[client]} history "
                              "queries running or waiting, the most web.heavy_queries_per_client allows",
                              self.retry_after_s)
            wait_s = self.expected_history_wait_s()
            if wait_s > self.gate.timeout_s / 2:
                self.shed += 1
                raise TooBusy(f"the store is busy with history pages: {self._history_turns} are running or waiting "
                              f"here, about {wait_s:.1f} s of work, more than half the {self.gate.timeout_s:g} s a page "
                              "waits (query.timeout)", max(self.retry_after_s, math.ceil(wait_s)))
            self._heavy[client] += 1
            self._history_turns += 1
        if lane == LIGHT and self._slots[LIGHT].locked() and not self._slots[HEAVY].locked():
            # the light lane is busy and a history connection idle: borrow it (history never borrows back,
            # so a dashboard still never waits behind history; several dashboards run side by side)
            await self._slots[HEAVY].acquire()  # free: returns at once
            self.borrowed += 1
            return await self._run(HEAVY, lambda: _borrowed(fn), client, share=False)
        t0 = time.perf_counter()
        token = object()
        if lane == HEAVY:
            self._history_waiting[token] = t0
        try:
            # a little over one answer's wait: the query ahead either answers or marks the store down
            await asyncio.wait_for(self._slots[lane].acquire(), self.gate.timeout_s + 0.5)
            timing.add("lane", time.perf_counter() - t0)
        except asyncio.TimeoutError:
            self._give_share(lane, client)
            self.gate.raise_if_down()
            if lane == HEAVY:  # the store answers; history is queued here past what a page waits: shed, late
                self.shed += 1
                raise TooBusy(f"the store is busy with history pages: this one waited over {self.gate.timeout_s:g} s "
                              "(query.timeout) for its turn", self.retry_after_s) from None
            raise StoreBusy(f"the store at {self.gate.endpoint} is busy: other pages waited on it for over "
                            f"{self.gate.timeout_s:g} s") from None
        except BaseException:  # cancelled while waiting: the browser went away
            self._give_share(lane, client)
            raise
        finally:
            self._history_waiting.pop(token, None)
        return await self._run(lane, fn, client)

    def expected_history_wait_s(self) -> float:
        """How long a new heavy query would wait for its turn: the turns ahead, per history
        connection, times the recent mean turn (0 until a turn has ended)."""
        oldest = next(iter(self._history_waiting.values()), None)  # waiting turns, oldest first
        waited = 0.0 if oldest is None else time.perf_counter() - oldest
        if not self._history_turn_s:
            return waited
        return max(waited, self._history_turns / self.gate.lane_sizes[HEAVY] * self._history_turn_s)

    async def _run(self, lane: str, fn: Callable[[], Any], client: str, share: bool = True) -> Any:
        """``fn`` on a thread, the turn on ``lane`` held; ``share``: the client's history share too."""
        try:
            future = self._pool.submit(contextvars.copy_context().run, fn)
        except BaseException:
            self._release(lane, client, share)
            raise
        # from here the thread's end gives the turn (and the client's share) back, even when the page
        # stopped waiting: a query sent on a REQ socket is answered before that socket takes another
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        ended = [0.0]

        def done(_) -> None:
            ended[0] = time.perf_counter()
            loop.call_soon_threadsafe(self._release, lane, client, share, ended[0] - started)
        future.add_done_callback(done)
        result = await asyncio.wrap_future(future)
        # the thread's end to here: how long a busy event loop kept this page from going on
        timing.add("resume", time.perf_counter() - ended[0])
        return result

    def _release(self, lane: str, client: str, share: bool = True, turn_s: float | None = None) -> None:
        self._slots[lane].release()
        if share:
            if lane == HEAVY and turn_s is not None:
                prev = self._history_turn_s
                self._history_turn_s = turn_s if prev is None else prev + HISTORY_TURN_WEIGHT * (turn_s - prev)
            self._give_share(lane, client)

    def _give_share(self, lane: str, client: str) -> None:
        if lane != HEAVY:
            return
        self._history_turns -= 1
        self._heavy[client] -= 1
        if self._heavy[client] <= 0:
            del self._heavy[client]

    def busy(self) -> dict:
        """Turns in use per lane and clients holding heavy shares (for /about and tests)."""
        return {"clients_with_history_queries": len(self._heavy), "cancelled": self.cancelled,
                "refused": self.refused, "shed": self.shed}


def _borrowed(fn: Callable[[], Any]) -> Any:
    BORROWED.set(HEAVY)  # this thread's context only (each call runs in a copy)
    return fn()


async def _disconnected(receive) -> None:
    """Returns when the ASGI server reports the client gone (a GET's empty body comes first)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
