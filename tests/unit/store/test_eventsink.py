"""The store's side of the events socket: the ledger's order and duplicate rules, and the stream
marks committed with their advisories in the writer's event transaction (a real SQLite file)."""
from __future__ import annotations

import sqlite3

from flowlens_store import eventsink
from flowlens_store.eventsink import DUPLICATE, NEW, OUT_OF_ORDER, EventLedger
from flowlens_store.warm import WarmWriter


def test_a_stream_is_taken_in_order_and_once():
    led = EventLedger()
    assert led.admit("a/1", 1, 1) == NEW
    led.taken("a/1", 1)
    assert led.admit("a/1", 1, 1) == DUPLICATE
    assert led.admit("a/1", 3, 1) == OUT_OF_ORDER  # 2 went missing: the sender sends it again
    assert led.admit("a/1", 2, 1) == NEW
    led.taken("a/1", 2)
    assert (led.duplicates, led.out_of_order, led.taken_events, led.lost) == (1, 1, 2, 0)


def test_events_the_sender_no_longer_holds_are_counted_lost_and_skipped():
    led = EventLedger({"a/1": (4, 0)})  # persisted: 1-4 committed by an earlier run of the store
    assert led.admit("a/1", 3, 3) == DUPLICATE
    assert led.admit("a/1", 9, 9) == NEW  # 5-8 were dropped by the sender's bound
    led.taken("a/1", 9)
    assert led.lost == 4 and led.mark("a/1", 9) == ["a/1", 9, 4]


def test_confirmations_go_on_progress_or_when_a_sender_sends_again():
    led = EventLedger()
    led.admit("a/1", 1, 1)
    led.taken("a/1", 1)
    led.streams["a/1"].peer = b"peer-a"
    assert led.confirmations() == []  # nothing committed yet
    assert led.uncommitted() == ["a/1"]
    led.committed({"a/1": 1})
    assert led.confirmations() == [(b"peer-a", "a/1", 1)]
    assert led.confirmations() == []
    led.admit("a/1", 1, 1)  # sent again: the confirmation was lost
    assert led.confirmations() == [(b"peer-a", "a/1", 1)]


def advisory(key: str, stream: str, seq: int, lost: int = 0) -> dict:
    return {"key": key, "severity": "WARNING", "state": "raised", "first_seen": 1, "last_seen": 2,
            eventsink.EVENT_MARK: [stream, seq, lost]}


def test_marks_commit_with_the_advisories_and_load_after_a_restart(tmp_path):
    path = str(tmp_path / "f.db")
    warm = WarmWriter(path, 3_600_000, 24, 64, 1 << 20)
    try:
        assert eventsink.load_marks(warm.db, 1000) == {}
        warm.write_events([("advisory", advisory("k1", "a/1", 1), 1000), ("advisory", advisory("k2", "a/1", 2, 3), 1001),
                           (eventsink.MARK_ONLY, {eventsink.EVENT_MARK: ["b/7", 5, 0]}, 1002)])
        reader = sqlite3.connect(path)
        assert eventsink.read_committed(reader, ["a/1", "b/7", "c/0"]) == {"a/1": 2, "b/7": 5}
        assert reader.execute("SELECT count(*) FROM advisories").fetchone()[0] == 2  # the mark alone stores no row
        assert reader.execute("SELECT count(*) FROM health").fetchone()[0] == 0
        reader.close()
        # a failing transaction takes its marks back with its rows
        bad = advisory("k3", "a/1", 3)
        bad["severity"] = "NOT-A-SEVERITY"
        try:
            warm.write_events([("advisory", advisory("k4", "a/1", 3), 1003), ("advisory", bad, 1004)])
        except KeyError:
            pass
        else:
            raise AssertionError("an unknown severity should fail the transaction")
        assert eventsink.load_marks(warm.db, 2000) == {"a/1": (2, 3), "b/7": (5, 0)}
    finally:
        warm.close()
    led = EventLedger(eventsink.load_marks(sqlite3.connect(path), 2000))
    assert led.admit("a/1", 2, 1) == DUPLICATE and led.admit("a/1", 3, 1) == NEW


def test_advisories_the_store_refuses_say_why():
    import pytest

    for bad, why in (({"severity": "WARNING", "state": "raised"}, "without key"),
                     ({"key": "k", "severity": "LOUD", "state": "raised"}, "severity 'LOUD'"),
                     ({"key": "k", "severity": "WARNING", "state": "gone"}, "state 'gone'")):
        with pytest.raises(ValueError, match=why):
            eventsink.check_advisory(bad)


def test_a_pass_over_a_socket_that_never_empties_ends_on_time():
    """The store's receive loop drains the bus's flow batches in passes (eventsink.drain). When they
    arrive faster than the store takes them, a pass used to end only after 1,000 batches: tens of
    seconds on a starved machine, all that time without reading the events socket or confirming."""
    import zmq

    clock = [0.0]
    taken: list[int] = []

    def flood():  # a batch is always waiting
        return [b"flows.9", b"batch"]

    def handle(frames):  # each batch costs 30 ms of the receive loop
        taken.append(1)
        clock[0] += 0.030

    assert eventsink.drain(flood, handle, 1000, clock=lambda: clock[0]) == 2  # 60 ms >= PASS_S (50 ms)
    assert clock[0] < eventsink.PASS_S + 0.030 < 1.0

    waiting = [[b"a"], [b"b"], [b"c"]]

    def queue():
        if not waiting:
            raise zmq.Again()
        return waiting.pop(0)

    got: list[list[bytes]] = []
    assert eventsink.drain(queue, got.append, 2, clock=lambda: 0.0) == 2 and got == [[b"a"], [b"b"]]  # the limit
    assert eventsink.drain(queue, got.append, 1000, clock=lambda: 0.0) == 1  # until none is waiting
    assert eventsink.drain(queue, got.append, 1000, clock=lambda: 0.0) == 0 and got[-1] == [b"c"]
