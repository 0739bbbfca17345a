"""The collector's side of confirmed delivery (flowmodel.bus TOPIC_ACK): flow batches go into the
outbox (outbox.py) numbered in this run's stream, are sent while the window has room, and stay held
until the store's ack covers them; when the store confirms nothing for resend_timeout, everything
held is sent again from the oldest, after a resend notice per stream saying where it starts.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import zmq

from flowmodel import bus
from flowmodel.logs import RateLimitedLog, fields

from .outbox import Outbox

log = logging.getLogger(__name__)

STOP_ACK_WAIT_S = 3.0   # SIGTERM: wait this long for the store to confirm what is held, then spool it


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Delivery:
    """Inert until ``open()``. ``pub`` is the collector's bus socket (set by the collector once
    connected), ``acks`` a SUB socket on TOPIC_ACK that ``open()`` is given."""

    def __init__(self, cfg, sequencer: bus.Sequencer, counters: dict):
        self.sequencer = sequencer
        self.counters = counters
        self.outbox = Outbox(cfg["collector.spool_path"], cfg["collector.unacked_max_bytes"],
                             cfg["collector.spool_max_bytes"])
        self.window = bus.queue_limit(cfg)  # batches sent and not yet confirmed, at most
        self.resend_timeout_s = cfg["collector.resend_timeout"]
        self.stream = ""               # this run's stream of flow batches
        self.batch_seq = 0
        self.flows_before = 0
        self.pub: zmq.Socket | None = None
        self.acks: zmq.Socket | None = None
        self._need_notice = True       # send resend notices before the next (re)send from the oldest
        self._last_progress = 0.0      # monotonic: last ack that confirmed something, or last go-back
        self.unconfirmed_since_ms = 0  # when the store stopped confirming (0: it confirms)
        self.lost_by_stream: dict[str, int] = {}  # the store's count of flows it never got, per stream of ours
        self.own_streams: set[str] = set()
        # seqmarks.py: called with (stream, batch_seq) of the batch that ends a publication before it is
        # sent, and of the newest batch made durable (confirmed, or spooled and flushed)
        self.before_send: Callable[[str, int], None] | None = None
        self.on_durable: Callable[[str, int], None] | None = None
        self._spooled_mark: tuple[str, int] | None = None
        self._rlog = RateLimitedLog(log)

    def open_spool(self) -> dict[str, int]:
        """Take back what an earlier run spooled; returns stream -> the newest batch_seq spooled."""
        self.outbox.open()
        through: dict[str, int] = {}
        for e in self.outbox.entries:
            through[e.stream] = max(e.batch_seq, through.get(e.stream, 0))
        return through

    def open(self, stream: str, pub: zmq.Socket, acks: zmq.Socket) -> None:
        """This run's batches are ``stream``; an earlier run's spooled ones go first."""
        self.stream, self.pub, self.acks = stream, pub, acks
        self._need_notice = bool(self.outbox.entries)  # an earlier run's batches: say where they start
        self.own_streams = {self.stream} | {e.stream for e in self.outbox.first_of_each_stream()}
        self._last_progress = time.monotonic()

    def close(self) -> None:
        """Spool what is still held (the next run sends it again): durable from then on."""
        self.outbox.close()
        self._note_spooled(synced=True)

    def _note_spooled(self, synced: bool = False) -> None:
        newest = self.outbox.newest_spooled()
        if newest is None or (newest.stream, newest.batch_seq) == self._spooled_mark:
            return
        if (synced or self.outbox.sync()) and self.on_durable is not None:
            self._spooled_mark = (newest.stream, newest.batch_seq)
            self.on_durable(newest.stream, newest.batch_seq)

    # ---------------------------------------------------------------- producer side

    def publish(self, taken: list) -> None:
        """The batcher's (version, parts) pairs into the outbox, then send what the window allows."""
        for version, parts in taken:
            flows = sum(part.count for part in parts)
            self.batch_seq += 1
            body = bus.encode_batch(parts, self.sequencer, stream=self.stream, batch_seq=self.batch_seq,
                                    flows_before=self.flows_before)
            self.outbox.add(self.stream, self.batch_seq, self.flows_before, flows, bus.flows_topic(version), body)
            self.flows_before += flows
            self.counters["published_batches"] += 1
            self.counters["published_flows"] += flows
        if taken and self.before_send is not None:
            self.before_send(self.stream, self.batch_seq)
        self._note_spooled()
        self.pump()

    def pump(self) -> None:
        """Send held batches from the first one not in flight, while the window has room. After a
        go-back, first a resend notice per stream: the oldest batch still held (what is before it
        was confirmed, or dropped by the spool bound)."""
        ob = self.outbox
        if not ob.entries:
            return
        if self._need_notice:
            for e in ob.first_of_each_stream():
                notice = {"stream": e.stream, "from_seq": e.batch_seq, "flows_before": e.flows_before}
                try:
                    self.pub.send_multipart([bus.TOPIC_RESEND, bus.encode_event(notice, self.sequencer)], flags=zmq.NOBLOCK)
                except zmq.ZMQError:
                    return  # queue full: try again at the next pass
            self._need_notice = False
        while ob.in_flight < len(ob.entries) and ob.in_flight < self.window:
            e = ob.entries[ob.in_flight]
            body = ob.body(e)
            if body is None:  # a spooled batch that cannot be read back: lost, counted
                ob.drop_through(ob.in_flight)
                self._need_notice = True
                return
            try:
                self.pub.send_multipart([e.topic, body], flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return  # the bus queue is full: the rest waits for the next pass
            except zmq.ZMQError as ex:
                self.counters["publish_errors"] += 1
                self._rlog.warning("publish", "cannot publish a flow batch", error=str(ex), flows=e.count)
                return
            if e.sent:
                self.counters["resent_batches"] += 1
                self.counters["resent_flows"] += e.count
            e.sent = True
            ob.in_flight += 1

    # ---------------------------------------------------------------- acks

    def read_acks(self) -> dict[str, int]:
        """Take in the acks waiting; returns stream -> highest batch_seq the store says it committed."""
        acked: dict[str, int] = {}
        while True:
            try:
                frames = self.acks.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                msg = bus.decode_body(frames[-1])
                for stream, (seq, lost) in (msg.get("acks") or {}).items():
                    acked[str(stream)] = max(int(seq), acked.get(str(stream), 0))
                    if stream in self.own_streams:
                        self.lost_by_stream[stream] = int(lost)
            except (bus.CodecError, TypeError, ValueError, AttributeError) as e:
                self._rlog.warning("ack", "bad ack message", error=str(e))
        if not acked:
            return acked
        ob = self.outbox
        before_flows = ob.flows
        n = ob.ack(acked)
        if self.on_durable is not None:
            for stream, seq in acked.items():
                self.on_durable(stream, seq)
        if n:
            self.counters["acked_batches"] += n
            self.counters["acked_flows"] += before_flows - ob.flows
            self._last_progress = time.monotonic()
            if self.unconfirmed_since_ms:
                log.info("store confirms again", extra=fields(unconfirmed_s=(now_ms() - self.unconfirmed_since_ms) / 1000,
                                                             held_flows=ob.flows, dropped_flows=ob.dropped_flows))
            self.unconfirmed_since_ms = 0
        return acked

    def deliver(self) -> None:
        """Read acks; when batches in flight have waited resend_timeout without one, go back to the oldest."""
        self.read_acks()
        ob = self.outbox
        mono = time.monotonic()
        if not ob.entries:
            self._last_progress = mono
        elif mono - self._last_progress >= self.resend_timeout_s:
            if not self.unconfirmed_since_ms:
                self.unconfirmed_since_ms = now_ms() - int(self.resend_timeout_s * 1000)
                log.warning("store does not confirm; holding and resending", extra=fields(
                    held_batches=len(ob.entries), held_flows=ob.flows))
            self.counters["resends"] += 1
            ob.in_flight = 0
            self._need_notice = True
            self._last_progress = mono
        self.pump()

    def await_acks(self) -> None:
        """At stop: give the store a moment to confirm what is held (the rest is spooled for the next run)."""
        deadline = time.monotonic() + STOP_ACK_WAIT_S
        while self.outbox.entries and time.monotonic() < deadline:
            self.deliver()
            if self.outbox.entries:
                self.acks.poll(50)

    def health_counters(self) -> dict:
        """The delivery fields of the collector's health event counters."""
        ob = self.outbox
        return {"unconfirmed_batches": len(ob.entries), "unconfirmed_flows": ob.flows, "spooled_batches": ob.spooled,
                "spool_bytes": ob.spool_bytes, "spool_dropped_batches": ob.dropped_batches,
                "spool_dropped_flows": ob.dropped_flows, "spool_errors": ob.spool_errors,
                "unconfirmed_since": self.unconfirmed_since_ms, "lost_flows": sum(self.lost_by_stream.values())}
