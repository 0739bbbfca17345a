"""What the store does with each message its bus subscriber receives (flowmodel.bus): flow batches
into the ring and the write queue (a collector stream's batches only in order and once, delivery.py),
resend notices, advisories, collectors' health events with their exporter tables, interface names
and sFlow interface counters; a bad message is counted and logged, rate-limited.

A mixin of StoreService (service.py), which owns the subscriber socket, the ring, the writer, the
ledgers and the counters; runs on the receive loop's thread, and never waits on SQLite.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import zmq

from flowmodel.bus import (EVENT_STREAM, TOPIC_ADVISORY, TOPIC_EXPORTER, TOPIC_FLOWS_PREFIX, TOPIC_IF_COUNTERS,
                           TOPIC_INTERFACES, TOPIC_RESEND, CodecError, decode_batch, decode_body, envelope_of)
from flowmodel.logs import fields
from flowmodel.protocol import QueryError

from . import delivery, eventsink, ifcounters
from .exporter_table import ADDRESSES_PER_EXPORTER, add_flows, merge_health
from .layout import now_ms
from .writer import MARK

log = logging.getLogger(__name__)


class BusIntake:
    def _drain(self, quiet_s: float = 0.3, max_s: float = 10.0) -> None:
        """Take in whatever the forwarder still holds: until nothing arrives for quiet_s."""
        deadline = time.monotonic() + max_s
        n = 0
        while time.monotonic() < deadline and self._sub.poll(int(quiet_s * 1000), zmq.POLLIN):
            while True:
                try:
                    frames = self._sub.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.handle(frames)
                n += 1
        log.info("subscriber drained", extra=fields(messages=n))

    def handle(self, frames: list[bytes]) -> None:
        if len(frames) != 2:
            self._bad("frames", f"message has {len(frames)} frames, expected 2")
            return
        topic, body = frames
        try:
            if topic.startswith(TOPIC_FLOWS_PREFIX):
                env, batch = decode_batch(body)
                if env.stream is None:
                    self._observe(env)
                    self._flows(batch)
                else:
                    self._confirmed_flows(env, batch)
            elif topic == TOPIC_RESEND:
                self._resend(decode_body(body))
            elif topic == TOPIC_INTERFACES:
                msg = decode_body(body)
                self._observe(envelope_of(msg))
                self.writer.offer_event("interfaces", self.names.apply(msg))
            elif topic == TOPIC_IF_COUNTERS:  # sFlow interface counters (ifcounters.py)
                msg = decode_body(body)
                self._observe(envelope_of(msg))
                self.writer.offer_event("ifcounters", {"rows": ifcounters.check_event(msg)})
            elif topic == TOPIC_ADVISORY or topic == TOPIC_EXPORTER:
                msg = decode_body(body)
                env = envelope_of(msg)
                if env.source == self._health_sequencer.source:
                    return  # its own health event, for the analyzer: status says the same
                self._observe(env)
                if topic == TOPIC_ADVISORY:
                    if msg.get(EVENT_STREAM) is None:  # one that carries it is stored from the events socket
                        self._advisory(msg)
                else:
                    self._health(msg)
            else:
                self._bad("topic", f"unexpected topic {topic[:40]!r}")
        except (CodecError, QueryError, KeyError, TypeError, ValueError) as e:
            self._bad("decode", str(e), topic=topic[:40].decode(errors="replace"))

    def _bad(self, reason: str, msg: str, **kv) -> None:
        self.bad_messages += 1
        self._rl.warning(reason, "bad bus message", reason=reason, error=msg, bad_messages=self.bad_messages, **kv)

    def _observe(self, env) -> None:
        """Count message gaps, for sources whose losses are not otherwise counted: a source that
        sends confirmed flow batches resends what went missing, and its envelope seqs come again."""
        if env.source not in self._stream_sources:
            self.gaps.observe(env.source, env.seq)

    def _confirmed_flows(self, env, batch) -> None:
        """A flow batch of a collector stream: taken only in order, once (see flowmodel.bus TOPIC_ACK)."""
        self._stream_sources.add(env.source)
        verdict = self.ledger.admit(env.stream, env.batch_seq, env.flows_before, batch.count, now_ms())
        if verdict != delivery.NEW:
            return
        through = env.flows_before + batch.count
        if batch.count == 0 or self._flows(batch, self.ledger.mark(env.stream, env.batch_seq, through)):
            self.ledger.taken(env.stream, env.batch_seq, through)
        # else shed by a full write queue: not taken, so the collector's next resend brings it again

    def _resend(self, msg: dict) -> None:
        stream, from_seq, flows_before = str(msg["stream"]), int(msg["from_seq"]), int(msg["flows_before"])
        lost = self.ledger.resend(stream, from_seq, flows_before, now_ms())
        if lost:
            log.warning("flows lost by a collector's spool bound", extra=fields(
                stream=stream, lost_flows=lost, lost_flows_total=self.ledger.streams[stream].lost_flows))

    def _flows(self, batch, mark: tuple | None = None) -> bool:
        """Into the ring and the write queue. A confirmed batch (``mark``) that the write queue sheds
        goes nowhere (False): it comes again."""
        n = batch.count
        if n == 0:
            return True
        seq0 = self.next_seq
        cols = dict(batch.columns)
        cols["seq"] = np.arange(seq0, seq0 + n, dtype=np.int64)
        if mark is not None:
            cols[MARK] = mark
            if not self.writer.offer(cols):
                return False
            self.next_seq += n
            self.ring.append(batch, seq0)
        else:
            self.next_seq += n
            self.ring.append(batch, seq0)
            self.writer.offer(cols)
        self.flows_in += n
        self.batches_in += 1
        ex = batch["exporter"]
        words = np.ascontiguousarray(ex).view(np.uint64).reshape(n, 2)
        if bool((words == words[0]).all()):  # one exporter per batch is the usual case: no sort
            keys, counts = ex[:1], np.array([n])
        else:
            keys, counts = np.unique(ex, return_counts=True)
        t = now_ms()
        with self.lock:
            add_flows(self.exporter_flows, keys.tolist(), counts.tolist(), t,
                      ADDRESSES_PER_EXPORTER * self.cfg["collector.max_exporters"])
        return True

    def _advisory(self, msg: dict) -> None:
        eventsink.check_advisory(msg)
        self.writer.offer_event("advisory", msg)

    def _health(self, msg: dict) -> None:
        with self.lock:  # a collector's event may carry only the exporter rows that changed
            msg = merge_health(self.health.get(str(msg["source"])), msg)
            msg["_received_at"] = now_ms()
            self.health[str(msg["source"])] = msg
        self.writer.offer_event("exporter", {k: v for k, v in msg.items() if k != "_received_at"})
