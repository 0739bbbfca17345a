"""Advisories a sender (the analyzer, ``flowlens up``) keeps until the store confirms them, and the
DEALER that carries them on the events socket (the contract is in flowmodel.bus, TOPIC_CONFIRM).

``EventOutbox`` is pure (the caller passes the clock): it numbers events in the sender's stream,
holds them oldest first up to a bound (past it the oldest is dropped and counted as lost), says
which are due to be sent (new ones, or all again from the oldest when confirmations stopped
advancing for the resend timeout) and forgets what a confirmation covers. ``EventSender`` is the
thin socket shell around it.
"""
from __future__ import annotations

import collections
import itertools
import logging
from dataclasses import dataclass
from typing import Any, Callable

from . import bus
from .logs import fields

log = logging.getLogger(__name__)


@dataclass
class Pending:
    seq: int
    topic: bytes
    body: bytes


class EventOutbox:
    def __init__(self, stream: str, max_events: int, resend_after_ms: int):
        self.stream = stream
        self.max_events = max(1, int(max_events))
        self.resend_after_ms = int(resend_after_ms)
        self.pending: collections.deque[Pending] = collections.deque()
        self.next_seq = 1
        self.sent = 0            # entries at the front sent since the last go-back, awaiting confirmation
        self.waiting_since = 0   # ms: when the oldest in-flight entry started waiting (or the last progress)
        self.added = 0
        self.confirmed = 0
        self.lost = 0            # dropped by the bound before confirmation (the store may hold a few of them)
        self.resent = 0          # entries sent again after a go-back
        self.go_backs = 0

    def add(self, topic: bytes, event: dict, encode: Callable[[dict], bytes]) -> bytes:
        """Number ``event`` in this stream, encode it (``encode`` stamps the bus envelope) and hold
        it; returns the body, the same bytes a bus copy carries."""
        body = dict(event)
        body[bus.EVENT_STREAM] = self.stream
        body[bus.EVENT_SEQ] = self.next_seq
        data = encode(body)
        self.pending.append(Pending(self.next_seq, topic, data))
        self.next_seq += 1
        self.added += 1
        while len(self.pending) > self.max_events:
            self._pop()
            self.lost += 1
        return data

    @property
    def held_from(self) -> int:
        """The oldest event_seq still held (the next one when none is)."""
        return self.pending[0].seq if self.pending else self.next_seq

    def confirm(self, stream: str, seq: int, now_ms: int) -> int:
        """The store committed ``stream`` up to ``seq``: forget those; returns how many."""
        if stream != self.stream:
            return 0
        n = 0
        while self.pending and self.pending[0].seq <= seq:
            self._pop()
            n += 1
        if n:
            self.confirmed += n
            self.waiting_since = now_ms
        return n

    def due(self, now_ms: int) -> list[Pending]:
        """What to send now: the entries not sent yet; all of them from the oldest when the ones in
        flight have waited resend_after_ms without a confirmation advancing."""
        if self.sent and now_ms - self.waiting_since >= self.resend_after_ms:
            self.resent += self.sent
            self.go_backs += 1
            self.sent = 0
        return list(itertools.islice(self.pending, self.sent, None))

    def mark_sent(self, n: int, now_ms: int) -> None:
        if n and not self.sent:
            self.waiting_since = now_ms
        self.sent = min(len(self.pending), self.sent + n)

    def stats(self) -> dict[str, int]:
        return {"added": self.added, "confirmed": self.confirmed, "unconfirmed": len(self.pending),
                "lost": self.lost, "resent": self.resent}

    def _pop(self) -> Pending:
        if self.sent:
            self.sent -= 1
        return self.pending.popleft()


class EventSender:
    """A DEALER to the store's events socket and the outbox behind it. ``send`` holds an event and
    sends what is due; ``pump`` (called each turn of the owner's loop) takes confirmations and
    sends what is due; ``flush`` does so until everything is confirmed or a deadline passes."""

    def __init__(self, endpoint: str, source: str, max_events: int, resend_after_s: float, high_water_mark: int,
                 context=None, keys=None):
        self.endpoint = endpoint
        self.keys = keys  # flowmodel.curve.ClientKeys: CURVE to the store; None: plain (loopback)
        self.outbox = EventOutbox(f"{source}/{bus.now_ms()}", max_events, int(resend_after_s * 1000))
        self.high_water_mark = high_water_mark
        self._ctx = context
        self.sock = None
        self.bad_replies = 0
        self.snapshots_sent = 0
        self.snapshots_unsent = 0  # health snapshots the socket would not take (the store away): the next one replaces them

    def start(self) -> "EventSender":
        import zmq

        from .curve import connect_securely

        self._ctx = self._ctx or zmq.Context.instance()
        self.sock = self._ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, self.high_water_mark)
        self.sock.setsockopt(zmq.RCVHWM, self.high_water_mark)
        self.sock.setsockopt(zmq.IMMEDIATE, 1)  # no queueing while the store is away: the outbox holds them
        self.sock.setsockopt(zmq.MAXMSGSIZE, bus.CONTROL_MAX_BYTES)  # it reads confirmations: small
        connect_securely(self.sock, self.endpoint, self.keys)
        return self

    def send(self, topic: bytes, event: dict, encode: Callable[[dict], bytes]) -> bytes:
        data = self.outbox.add(topic, event, encode)
        self.pump()
        return data

    def send_snapshot(self, topic: bytes, body: bytes) -> bool:
        """A health event: sent once, not held or confirmed (the next one, a few seconds later, says
        the same and more); an empty held_from frame tells the store so. False (counted) when the
        socket would not take it."""
        import zmq

        if self.sock is None:
            return False
        try:
            self.sock.send_multipart([topic, body, b""], zmq.NOBLOCK)
        except zmq.Again:
            self.snapshots_unsent += 1
            return False
        self.snapshots_sent += 1
        return True

    def pump(self) -> int:
        """Take the confirmations that arrived and send what is due; returns how many were sent."""
        import zmq

        if self.sock is None:
            return 0
        now = bus.now_ms()
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            self._reply(frames, now)
        sent = 0
        held_from = str(self.outbox.held_from).encode()
        for p in self.outbox.due(now):
            try:
                self.sock.send_multipart([p.topic, p.body, held_from], zmq.NOBLOCK)
            except zmq.Again:  # the store is away or its queue is full: the outbox keeps them
                break
            sent += 1
        self.outbox.mark_sent(sent, now)
        return sent

    def flush(self, timeout_s: float) -> bool:
        """Pump until every event is confirmed or ``timeout_s`` passed; True when none is left."""
        import time

        import zmq

        deadline = time.monotonic() + timeout_s
        while self.outbox.pending and self.sock is not None:
            self.pump()
            left = deadline - time.monotonic()
            if left <= 0:
                break
            # unsent ones wait for the connection (IMMEDIATE): look again soon; sent ones wake on the confirmation
            unsent = self.outbox.sent < len(self.outbox.pending)
            self.sock.poll(int(min(left, 0.01 if unsent else 0.1) * 1000), zmq.POLLIN)
        return not self.outbox.pending

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None

    def stats(self) -> dict[str, Any]:
        return {**self.outbox.stats(), "snapshots_sent": self.snapshots_sent, "snapshots_unsent": self.snapshots_unsent}

    def _reply(self, frames: list[bytes], now: int) -> None:
        try:
            if len(frames) != 2 or frames[0] != bus.TOPIC_CONFIRM:
                raise ValueError(f"{len(frames)} frames, topic {frames[0][:20]!r}")
            msg = bus.decode_body(frames[1])
            self.outbox.confirm(str(msg["stream"]), int(msg[bus.EVENT_SEQ]), now)
        except (bus.CodecError, KeyError, TypeError, ValueError) as e:
            self.bad_replies += 1
            log.warning("bad reply on the events socket", extra=fields(error=str(e)[:200]))
