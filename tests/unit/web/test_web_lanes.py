"""StoreLanes against a real ZeroMQ store stand-in (a ROUTER on 127.0.0.1 that answers at once,
except history ``series`` requests, which it holds until the test lets them go): the dashboard's
lane answers while history is held, a client past its share of history queries is refused, and a
browser that disconnects ends its wait — a query that had not started is never sent."""
from __future__ import annotations

import asyncio
import re
import threading
from types import SimpleNamespace

import msgpack
import pytest
import zmq

from flowlens_web.lanes import ClientGone, StoreLanes, TooBusy
from flowlens_web.storegate import HEAVY, LIGHT, StoreGate


class HoldingStore:
    """Answers every op with {"ok": true, "op": op}; the ``hold`` ops wait for ``release()``."""

    def __init__(self, hold=("series",)):
        self.hold = hold
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.seen: list[str] = []
        self.held: list[list[bytes]] = []
        self._release = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _reply(self, frames, op):
        self.sock.send_multipart(frames[:-1] + [msgpack.packb({"ok": True, "op": op, "points": []})])

    def _loop(self):
        while not self._stop.is_set():
            if self._release.is_set():
                for frames, op in self.held:
                    self._reply(frames, op)
                self.held.clear()
            if not self.sock.poll(20):
                continue
            frames = self.sock.recv_multipart()
            op = msgpack.unpackb(frames[-1])["op"]
            self.seen.append(op)
            if op in self.hold and not self._release.is_set():
                self.held.append((frames, op))
            else:
                self._reply(frames, op)

    def release(self):
        self._release.set()

    def close(self):
        self._stop.set()
        self.thread.join(5)
        self.sock.close(0)
        self.ctx.term()


class Browser:
    """What StoreLanes reads of a Starlette request: the client address and the ASGI receive."""

    def __init__(self, host: str):
        self.client = SimpleNamespace(host=host)
        self.gone = asyncio.Event()

    async def receive(self):
        await self.gone.wait()
        return {"type": "http.disconnect"}


@pytest.fixture
def store():
    s = HoldingStore()
    yield s
    s.close()


def lanes_for(store, per_client=2):
    gate = StoreGate(store.endpoint, timeout_s=5.0, connections=2)
    return gate, StoreLanes(gate, per_client)


async def until(predicate, timeout_s=5.0):
    for _ in range(int(timeout_s / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met")


def test_the_light_lane_answers_while_history_is_held(store):
    gate, lanes = lanes_for(store)

    async def main():
        history = asyncio.ensure_future(lanes.query(Browser("10.0.0.1"), "series", step=60))
        await until(lambda: store.held)
        overview = await lanes.query(Browser("10.0.0.2"), "overview", step=10)
        assert overview["op"] == "overview" and not history.done()
        store.release()
        assert (await history)["op"] == "series"
    try:
        asyncio.run(main())
    finally:
        lanes.close()
        gate.close()
    assert gate.lane_sizes == {LIGHT: 1, HEAVY: 1}


def test_a_client_past_its_share_of_history_is_refused(store):
    gate, lanes = lanes_for(store, per_client=1)

    async def main():
        a = Browser("10.0.0.1")
        first = asyncio.ensure_future(lanes.query(a, "series", step=60))
        await until(lambda: store.held)
        with pytest.raises(TooBusy, match=r"10\.0\.0\.1.*already has 1 history"):
            await lanes.query(a, "series", step=60)
        other = asyncio.ensure_future(lanes.query(Browser("10.0.0.3"), "series", step=60))  # waits, not refused
        await asyncio.sleep(0.2)
        assert not other.done()
        store.release()
        await first
        await other
        assert lanes.refused == 1 and not lanes._heavy
        await lanes.query(a, "series", step=60)  # its share is back
    try:
        asyncio.run(main())
    finally:
        lanes.close()
        gate.close()


def test_a_disconnect_ends_the_wait_and_the_query_is_never_sent(store):
    gate, lanes = lanes_for(store)

    async def main():
        first = asyncio.ensure_future(lanes.query(Browser("10.0.0.1"), "series", step=60))
        await until(lambda: store.held)
        b = Browser("10.0.0.2")
        waiting = asyncio.ensure_future(lanes.query(b, "series", step=60))
        await asyncio.sleep(0.1)
        b.gone.set()
        with pytest.raises(ClientGone):
            await waiting
        store.release()
        await first
        await lanes.query(Browser("10.0.0.4"), "series", step=60)
        assert store.seen.count("series") == 2  # the first and the last: the gone one never went out
        assert lanes.cancelled == 1 and not lanes._heavy
    try:
        asyncio.run(main())
    finally:
        lanes.close()
        gate.close()


def test_a_disconnect_while_running_keeps_the_turn_until_the_answer(store):
    gate, lanes = lanes_for(store)

    async def main():
        a = Browser("10.0.0.1")
        running = asyncio.ensure_future(lanes.query(a, "series", step=60))
        await until(lambda: store.held)
        a.gone.set()
        with pytest.raises(ClientGone):
            await running
        # the REQ socket still owes its answer: the next history query waits for it, then runs
        nxt = asyncio.ensure_future(lanes.query(Browser("10.0.0.5"), "series", step=60))
        await asyncio.sleep(0.2)
        assert not nxt.done() and store.seen.count("series") == 1
        store.release()
        assert (await nxt)["op"] == "series"
        await until(lambda: not lanes._heavy)
    try:
        asyncio.run(main())
    finally:
        lanes.close()
        gate.close()


def test_dashboards_borrow_an_idle_history_connection_but_history_never_borrows():
    store = HoldingStore(hold=("overview", "series"))
    gate, lanes = lanes_for(store)

    async def main():
        first = asyncio.ensure_future(lanes.query(Browser("10.0.0.1"), "overview", step=10))
        await until(lambda: len(store.held) == 1)
        second = asyncio.ensure_future(lanes.query(Browser("10.0.0.2"), "overview", step=10))
        await until(lambda: len(store.held) == 2)  # both dashboards at the store at once
        assert lanes.borrowed == 1
        history = asyncio.ensure_future(lanes.query(Browser("10.0.0.3"), "series", step=60))
        await asyncio.sleep(0.2)
        assert store.seen.count("series") == 0 and not history.done()  # waits for its lane, not refused
        store.release()
        assert [(await t)["op"] for t in (first, second, history)] == ["overview", "overview", "series"]
        # with history holding its one connection, a dashboard takes its own lane and borrows nothing
        store._release.clear()
        held = asyncio.ensure_future(lanes.query(Browser("10.0.0.3"), "series", step=60))
        await until(lambda: len(store.held) == 1)
        light = await lanes.query(Browser("10.0.0.4"), "exporters")
        assert light["op"] == "exporters" and lanes.borrowed == 1
        store.release()
        await held
    try:
        asyncio.run(main())
    finally:
        lanes.close()
        gate.close()
        store.close()


def test_a_page_s_store_turns_are_timed_in_its_record(store):
    """The lane wait, the store's answer and the resume after the thread all land in the request's
    record (timing.current), including the wait of a history query queued behind a held one."""
    from flowlens_web import timing
    gate, lanes = lanes_for(store)

    async def main():
        first = asyncio.ensure_future(lanes.query(Browser("10.0.0.1"), "series", step=60))
        await until(lambda: store.held)

        async def second_page():
            record = timing.RequestTimings()
            timing.current.set(record)
            await lanes.query(Browser("10.0.0.2"), "series", step=60)
            return record
        second = asyncio.ensure_future(second_page())
        await asyncio.sleep(0.3)
        store.release()
        await first
        record = await second
        assert set(record.seconds) == {"lane", "store", "resume"}
        assert record.seconds["lane"] >= 0.25  # it waited behind the held query for its lane
        parsed = timing.parse(record.header(1.0).decode())
        assert parsed["app"] == 1000.0 and parsed["lane"] >= 250
    try:
        asyncio.run(main())
    finally:
        lanes.close()
        gate.close()


def test_history_that_would_wait_past_the_timeout_is_refused_at_once(store):
    """Turns of ~0.4 s on one history connection and a 2 s query.timeout (1 s for the turn): with
    two turns ahead the next would wait ~0.8 s and queues; with three ahead (~1.2 s) it gets
    TooBusy at once, with a Retry-After, instead of a StoreBusy (503) later."""
    gate = StoreGate(store.endpoint, timeout_s=2.0, connections=2)
    lanes = StoreLanes(gate, heavy_per_client=5)

    async def main():
        first = asyncio.ensure_future(lanes.query(Browser("10.0.0.1"), "series", step=60))
        await until(lambda: store.held)
        await asyncio.sleep(0.4)
        store.release()
        await first
        assert 0.35 <= lanes._history_turn_s < 1.0
        assert lanes.expected_history_wait_s() == 0
        store._release.clear()
        running = asyncio.ensure_future(lanes.query(Browser("10.0.0.2"), "series", step=60))
        await until(lambda: store.held)
        waiting = asyncio.ensure_future(lanes.query(Browser("10.0.0.3"), "series", step=60))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # ~0.4 s ahead of it: it waits
        third = asyncio.ensure_future(lanes.query(Browser("10.0.0.4"), "series", step=60))
        await asyncio.sleep(0.05)
        assert not third.done()  # ~0.8 s ahead: still within half the timeout
        with pytest.raises(TooBusy, match=r"3 are running or waiting here, about 1\.\d s of work") as refused:
            await lanes.query(Browser("10.0.0.5"), "series", step=60)
        assert refused.value.retry_after_s >= 2 and lanes.shed == 1 and lanes.refused == 0
        store.release()
        for t in (running, waiting, third):
            assert (await t)["op"] == "series"
        assert lanes._history_turns == 0 and not lanes._heavy and not lanes._history_waiting
    try:
        asyncio.run(main())
    finally:
        lanes.close()
        gate.close()


def test_history_is_refused_once_the_oldest_waiter_has_waited_half_the_timeout(store):
    """No turn has ended yet (no mean to go by): the oldest waiting turn's wait is the signal."""
    gate = StoreGate(store.endpoint, timeout_s=1.0, connections=2)
    lanes = StoreLanes(gate, heavy_per_client=5)

    async def main():
        running = asyncio.ensure_future(lanes.query(Browser("10.0.0.1"), "series", step=60))
        await until(lambda: store.held)
        waiting = asyncio.ensure_future(lanes.query(Browser("10.0.0.2"), "series", step=60))
        await asyncio.sleep(0.1)
        second = asyncio.ensure_future(lanes.query(Browser("10.0.0.3"), "series", step=60))
        await asyncio.sleep(0.5)
        assert not second.done()  # it came when the oldest had waited 0.1 s
        with pytest.raises(TooBusy, match="the store is busy with history pages"):
            await lanes.query(Browser("10.0.0.4"), "series", step=60)
        store.release()
        for t in (running, waiting, second):
            assert (await t)["op"] == "series"
    try:
        asyncio.run(main())
    finally:
        lanes.close()
        gate.close()


def test_history_that_waited_the_whole_timeout_is_a_429_and_a_dashboard_s_a_503(store):
    """A history turn admitted (no mean yet) that still waits past query.timeout is shed late, as
    TooBusy (429: the store answers, history is queued here); the light lane keeps StoreBusy. The
    turns ahead hold their lanes on their threads (1.2 s) without a store query to time out."""
    import time as _time

    from flowlens_web.storegate import StoreBusy
    gate = StoreGate(store.endpoint, timeout_s=0.3, connections=2)
    lanes = StoreLanes(gate, heavy_per_client=5)

    async def main():
        held = [asyncio.ensure_future(lanes.run(Browser("10.0.0.1"), lane, lambda: _time.sleep(1.2)))
                for lane in (HEAVY, LIGHT)]
        await asyncio.sleep(0.05)
        history, dashboard = await asyncio.gather(lanes.query(Browser("10.0.0.2"), "series", step=60),
                                                  lanes.query(Browser("10.0.0.3"), "overview", step=10),
                                                  return_exceptions=True)
        assert isinstance(history, TooBusy) and re.search(r"waited over 0\.3 s .* for its turn", str(history))
        assert type(dashboard) is StoreBusy
        assert lanes.shed == 1 and gate.up
        await asyncio.gather(*held)
    try:
        asyncio.run(main())
    finally:
        lanes.close()
        gate.close()
