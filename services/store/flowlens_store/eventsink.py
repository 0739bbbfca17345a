"""The store's side of the events socket (flowmodel.bus TOPIC_CONFIRM): advisories arrive on a ROUTER
apart from flow batches, each stream's in order and once; the store confirms what it committed.

``EventLedger`` is pure: per sender stream, the highest event_seq taken (handed to the writer), the
highest committed, the events the sender dropped before they arrived, and the duplicates and
out-of-order ones it refused. A taken event goes to the writer carrying its stream's mark
(EVENT_MARK), which the writer's event transaction saves in ``event_streams`` with the advisory
(warm.write_events), so a restarted store still knows what it holds. ``EventSink`` is the socket
shell, driven by the store's receive loop: it reads the committed marks back from SQLite (on its
own read connection) and confirms them to the senders.
"""
from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import Callable

import zmq

from flowmodel import bus
from flowmodel.events import ADVISORY_STATES, SEVERITIES
from flowmodel.logs import RateLimitedLog, fields

log = logging.getLogger(__name__)

EVENT_MARK = "_event_mark"   # [stream, event_seq, lost]: in an offered event's body, saved with it
MARK_ONLY = "event_mark"     # writer topic of an event that stores nothing but its mark (a refused event)
EVENT_STREAMS_DDL = ("CREATE TABLE IF NOT EXISTS event_streams (stream TEXT PRIMARY KEY, seq INTEGER NOT NULL, "
                     "lost INTEGER NOT NULL, seen_at INTEGER NOT NULL)")
STREAM_RETENTION_MS = 7 * 86_400_000  # a stream silent this long is forgotten (its sender is long gone)

NEW, DUPLICATE, OUT_OF_ORDER = "new", "duplicate", "out_of_order"
# The longest one pass of the store's receive loop spends on one socket before it turns to the others:
# flow batches that arrive faster than the store takes them must not keep the events socket (and the
# confirmations sent between passes) waiting.
PASS_S = 0.05


@dataclass
class EventStream:
    taken: int = 0          # highest event_seq handed to the writer, in order
    committed: int = 0      # highest event_seq committed to SQLite (what the confirmation says)
    lost: int = 0           # events the sender no longer held when they were due here
    confirmed: int = 0      # highest event_seq confirmed to the sender
    confirm_due: bool = False  # the sender sent something again: confirm even without progress
    peer: bytes | None = None  # ROUTER identity of the sender's DEALER


class EventLedger:
    def __init__(self, committed: dict[str, tuple[int, int]] | None = None):
        """``committed``: stream -> (event_seq, lost) as persisted."""
        self.streams: dict[str, EventStream] = {
            s: EventStream(seq, seq, lost) for s, (seq, lost) in (committed or {}).items()}
        self.taken_events = 0
        self.duplicates = 0
        self.out_of_order = 0
        self.refused = 0     # taken but not stored: not an advisory the store accepts (counted, logged)
        self.deferred = 0    # not taken for now (the writer's event queue was full): the sender sends it again

    def admit(self, stream: str, seq: int, held_from: int) -> str:
        """NEW when ``seq`` is the stream's next event, after skipping (and counting as lost) those
        below ``held_from`` the sender no longer holds; the caller then offers it and calls ``taken``."""
        st = self.streams.get(stream)
        if st is None:
            st = self.streams[stream] = EventStream()
        if seq <= st.taken:
            self.duplicates += 1
            st.confirm_due = True
            return DUPLICATE
        if held_from > st.taken + 1:
            st.lost += held_from - st.taken - 1
            st.taken = held_from - 1
        if seq != st.taken + 1:
            self.out_of_order += 1
            st.confirm_due = True
            return OUT_OF_ORDER
        return NEW

    def taken(self, stream: str, seq: int) -> None:
        self.streams[stream].taken = seq
        self.taken_events += 1

    def mark(self, stream: str, seq: int) -> list:
        return [stream, seq, self.streams[stream].lost]

    def uncommitted(self) -> list[str]:
        return [s for s, st in self.streams.items() if st.taken > st.committed]

    def committed(self, marks: dict[str, int]) -> None:
        for stream, seq in marks.items():
            st = self.streams.get(stream)
            if st is not None and seq > st.committed:
                st.committed = seq

    def confirmations(self) -> list[tuple[bytes, str, int]]:
        """(peer, stream, committed seq) for each stream whose sender should hear: progress, or it
        sent something again."""
        out = []
        for s, st in self.streams.items():
            if st.peer is not None and st.committed and (st.committed > st.confirmed or st.confirm_due):
                out.append((st.peer, s, st.committed))
                st.confirmed, st.confirm_due = st.committed, False
        return out

    @property
    def lost(self) -> int:
        return sum(st.lost for st in self.streams.values())

    def stats(self) -> dict:
        return {"streams": len(self.streams), "taken": self.taken_events, "duplicates": self.duplicates,
                "out_of_order": self.out_of_order, "refused": self.refused, "deferred": self.deferred,
                "lost": self.lost, "unconfirmed_streams": len(self.uncommitted())}


def check_advisory(msg: dict) -> None:
    """ValueError, saying why, for an advisory event the store does not accept."""
    for key in ("key", "severity", "state"):
        if not isinstance(msg.get(key), str) or not msg[key]:
            raise ValueError(f"advisory without {key}")
    if msg["severity"] not in SEVERITIES:
        raise ValueError(f"advisory severity {msg['severity']!r} is not one of {SEVERITIES}")
    if msg["state"] not in ADVISORY_STATES:
        raise ValueError(f"advisory state {msg['state']!r} is not one of {ADVISORY_STATES}")


def drain(recv: Callable[[], list[bytes]], handle: Callable[[list[bytes]], None], limit: int,
          budget_s: float = PASS_S, clock: Callable[[], float] = time.monotonic) -> int:
    """One pass of the receive loop over one socket: messages from ``recv`` (zmq.Again when none is
    waiting) into ``handle`` until none is waiting, ``limit`` were taken or ``budget_s`` has passed
    since the pass began; returns how many were taken."""
    end = clock() + budget_s
    n = 0
    while n < limit:
        try:
            frames = recv()
        except zmq.Again:
            break
        n += 1
        handle(frames)
        if clock() >= end:
            break
    return n


# ---------------------------------------------------------------- SQLite

def load_marks(db: sqlite3.Connection, now: int) -> dict[str, tuple[int, int]]:
    """The persisted event stream marks (created when missing); silent streams are forgotten."""
    db.execute(EVENT_STREAMS_DDL)
    db.execute("DELETE FROM event_streams WHERE seen_at < ?", (now - STREAM_RETENTION_MS,))
    return {s: (seq, lost) for s, seq, lost in db.execute("SELECT stream, seq, lost FROM event_streams")}


def save_mark(db: sqlite3.Connection, mark, received: int) -> None:
    """Inside the writer's event transaction: the stream's mark commits with its event."""
    stream, seq, lost = mark
    db.execute("INSERT INTO event_streams (stream, seq, lost, seen_at) VALUES (?, ?, ?, ?) "
               "ON CONFLICT (stream) DO UPDATE SET seq = max(seq, excluded.seq), lost = excluded.lost, "
               "seen_at = excluded.seen_at", (str(stream), int(seq), int(lost), received))


def read_committed(db: sqlite3.Connection, streams: list[str]) -> dict[str, int]:
    out = {}
    for i in range(0, len(streams), 500):
        part = streams[i:i + 500]
        out.update(db.execute(f"SELECT stream, seq FROM event_streams WHERE stream IN ({','.join('?' * len(part))})",
                              part).fetchall())
    return out


# ---------------------------------------------------------------- the socket shell

class EventSink:
    """The ROUTER of the events socket. ``offer(topic, msg)`` (the store's) validates an event and
    queues it for the writer: True when queued, False when the queue is full, ValueError when it is
    not an event the store accepts. ``on_health(msg)`` takes a sender's health event (unconfirmed)."""

    def __init__(self, ledger: EventLedger, offer: Callable[[str, dict], bool], offer_mark: Callable[[dict], bool],
                 on_health: Callable[[dict], None], sqlite_path: str, sequencer: bus.Sequencer):
        self.ledger = ledger
        self.offer = offer
        self.offer_mark = offer_mark
        self.on_health = on_health
        self.sqlite_path = sqlite_path
        self.sequencer = sequencer
        self.sock: zmq.Socket | None = None
        self.bad_messages = 0
        self.health_events = 0
        self._db: sqlite3.Connection | None = None
        self._rl = RateLimitedLog(log)

    def bind(self, sock: zmq.Socket, endpoint: str, high_water_mark: int,
             bind: Callable[[zmq.Socket, str], None] | None = None) -> None:
        """``bind(sock, endpoint)`` binds it (the store's CURVE gate, flowmodel.curve); plain bind when None."""
        sock.setsockopt(zmq.SNDHWM, high_water_mark)
        sock.setsockopt(zmq.RCVHWM, high_water_mark)
        (bind or zmq.Socket.bind)(sock, endpoint)
        self.sock = sock

    def receive(self, limit: int = 1000) -> int:
        return drain(lambda: self.sock.recv_multipart(zmq.NOBLOCK), self.handle, limit)

    def handle(self, frames: list[bytes]) -> None:
        try:
            if len(frames) != 4:
                raise ValueError(f"message has {len(frames)} frames, expected identity, topic, body, held_from")
            peer, topic, body, held = frames
            if topic == bus.TOPIC_EXPORTER and not held:
                self.on_health(bus.decode_body(body))
                self.health_events += 1
                return
            if topic not in (bus.TOPIC_ADVISORY, bus.TOPIC_NOTE):
                raise ValueError(f"unexpected topic {topic[:40]!r}")
            msg = bus.decode_body(body)
            stream, seq, held_from = msg[bus.EVENT_STREAM], int(msg[bus.EVENT_SEQ]), int(held)
            if not isinstance(stream, str) or not stream or seq < 1:
                raise ValueError("event without a stream and a positive event_seq")
        except (bus.CodecError, KeyError, TypeError, ValueError) as e:
            self.bad_messages += 1
            self._rl.warning("bad", "bad message on the events socket", error=str(e)[:200],
                             bad_messages=self.bad_messages)
            return
        led = self.ledger
        before = led.streams[stream].lost if stream in led.streams else 0
        verdict = led.admit(stream, seq, held_from)
        st = led.streams[stream]
        st.peer = peer
        if st.lost > before:
            log.warning("advisories lost by a sender's bound before they reached the store",
                        extra=fields(stream=stream, lost=st.lost - before, lost_total=st.lost))
        if verdict != NEW:
            return
        msg[EVENT_MARK] = led.mark(stream, seq)
        try:
            queued = self.offer(topic.decode(), msg)
        except ValueError as e:  # never acceptable: taken, so the stream moves on; its mark alone is saved
            led.refused += 1
            self._rl.warning("refused", "advisory refused", error=str(e)[:200], stream=stream, event_seq=seq,
                             refused=led.refused)
            queued = self.offer_mark({EVENT_MARK: msg[EVENT_MARK]})
        if queued:
            led.taken(stream, seq)
        else:
            led.deferred += 1

    def confirm(self) -> int:
        """Read what the writer committed and confirm it to the senders; returns confirmations sent."""
        waiting = self.ledger.uncommitted()
        if waiting:
            try:
                if self._db is None:
                    self._db = sqlite3.connect(self.sqlite_path, isolation_level=None, check_same_thread=False)
                    self._db.execute("PRAGMA query_only=1")
                self.ledger.committed(read_committed(self._db, waiting))
            except sqlite3.Error as e:
                self._rl.warning("read", "cannot read committed event marks", error=str(e))
        n = 0
        for peer, stream, seq in self.ledger.confirmations():
            try:
                self.sock.send_multipart([peer, bus.TOPIC_CONFIRM,
                                          bus.encode_event({"stream": stream, bus.EVENT_SEQ: seq}, self.sequencer)], zmq.NOBLOCK)
                n += 1
            except zmq.ZMQError as e:  # the sender is gone or its queue full: it sends again and hears then
                self._rl.warning("confirm", "cannot confirm events", error=str(e))
        return n

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
