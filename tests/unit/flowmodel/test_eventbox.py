"""The advisory outbox (flowmodel.eventbox.EventOutbox): numbering, the bound, go-back resends and
confirmations, with the store's ledger on the other end for the exactly-once property."""
from __future__ import annotations

import random

import msgpack
import pytest

from flowmodel import bus
from flowmodel.eventbox import EventOutbox

encode = msgpack.packb


def decoded(p) -> dict:
    return msgpack.unpackb(p.body)


def test_events_are_numbered_in_the_stream_and_held_until_confirmed():
    box = EventOutbox("analyzer@h:1/100", max_events=10, resend_after_ms=1000)
    bodies = [box.add(bus.TOPIC_ADVISORY, {"key": f"k{i}"}, encode) for i in range(3)]
    assert [msgpack.unpackb(b)[bus.EVENT_SEQ] for b in bodies] == [1, 2, 3]
    assert {msgpack.unpackb(b)[bus.EVENT_STREAM] for b in bodies} == {"analyzer@h:1/100"}
    assert [decoded(p)["key"] for p in box.due(0)] == ["k0", "k1", "k2"]
    box.mark_sent(3, 0)
    assert box.due(10) == []  # sent, waiting
    assert box.confirm("someone-else/1", 3, 20) == 0
    assert box.confirm("analyzer@h:1/100", 2, 20) == 2
    assert [p.seq for p in box.pending] == [3] and box.held_from == 3
    assert box.confirm("analyzer@h:1/100", 3, 30) == 1
    assert box.held_from == 4 and box.stats() == {"added": 3, "confirmed": 3, "unconfirmed": 0, "lost": 0, "resent": 0}


def test_the_bound_drops_the_oldest_and_counts_it_lost():
    box = EventOutbox("s/1", max_events=3, resend_after_ms=1000)
    for i in range(5):
        box.add(bus.TOPIC_ADVISORY, {"key": f"k{i}"}, encode)
    assert [p.seq for p in box.pending] == [3, 4, 5]
    assert box.lost == 2 and box.held_from == 3


def test_unconfirmed_events_go_again_from_the_oldest_after_the_resend_timeout():
    box = EventOutbox("s/1", max_events=100, resend_after_ms=1000)
    for i in range(4):
        box.add(bus.TOPIC_ADVISORY, {"key": f"k{i}"}, encode)
    box.mark_sent(4, 0)
    assert box.due(999) == []
    box.confirm("s/1", 1, 500)  # progress restarts the wait
    assert box.due(1400) == []
    again = box.due(1500)
    assert [p.seq for p in again] == [2, 3, 4] and box.resent == 3
    box.mark_sent(1, 1500)  # only one got out (the socket's queue was full)
    assert [p.seq for p in box.due(1600)] == [3, 4]


def test_a_bound_drop_while_in_flight_keeps_the_send_position():
    box = EventOutbox("s/1", max_events=2, resend_after_ms=1000)
    box.add(bus.TOPIC_ADVISORY, {"key": "a"}, encode)
    box.add(bus.TOPIC_ADVISORY, {"key": "b"}, encode)
    box.mark_sent(2, 0)
    box.add(bus.TOPIC_ADVISORY, {"key": "c"}, encode)  # drops "a", which was in flight
    assert [p.seq for p in box.due(1)] == [3]


@pytest.mark.parametrize("seed", range(8))
def test_over_a_lossy_link_every_event_is_taken_once(seed):
    """The outbox and the store's ledger over a link that loses, with a store that sometimes cannot
    take an event: whatever the bound did not drop is taken exactly once, and what it dropped is
    counted on both ends."""
    from flowlens_store.eventsink import NEW, EventLedger

    rng = random.Random(seed)
    box = EventOutbox("s/1", max_events=40, resend_after_ms=50)
    ledger = EventLedger()
    taken: list[int] = []
    now, total = 0, 300
    for step in range(5000):
        now += 10
        if box.added < total and step % 3 == 0:
            for _ in range(rng.randrange(4)):
                box.add(bus.TOPIC_ADVISORY, {"key": f"k{box.next_seq}"}, encode)
        held_from = box.held_from
        sent = 0
        for p in box.due(now)[:rng.randrange(1, 8)]:
            sent += 1
            if rng.random() < 0.2:
                continue  # lost on the way (a reconnect)
            msg = decoded(p)
            if ledger.admit(msg[bus.EVENT_STREAM], msg[bus.EVENT_SEQ], held_from) == NEW and rng.random() > 0.1:
                ledger.taken(msg[bus.EVENT_STREAM], msg[bus.EVENT_SEQ])
                taken.append(msg[bus.EVENT_SEQ])
        box.mark_sent(sent, now)
        if "s/1" in ledger.streams and rng.random() < 0.2:  # the writer commits now and then
            ledger.committed({"s/1": ledger.streams["s/1"].taken})
        for stream, st in ledger.streams.items():
            if rng.random() < 0.5:  # confirmations get lost too
                box.confirm(stream, st.committed, now)
        if box.added >= total and not box.pending:
            break
    assert not box.pending, "the outbox did not drain"
    assert len(taken) == len(set(taken)), "an event was taken twice"
    assert taken == sorted(taken)
    assert box.added >= total and len(taken) + ledger.lost == box.added
    assert ledger.lost <= box.lost
    assert ledger.duplicates and box.resent and ledger.out_of_order  # the link did lose and repeat
