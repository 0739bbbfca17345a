"""The store service: bus forwarder (forwarder.py), warm tier and writer, bus subscriber feeding
the ring and the writer, the events socket, and the query server (queryserver.py), started in that
order as flowmodel.lifecycle.Components parts and stopped in reverse: first the flush (SUB drained,
writer committed, acks and confirmations sent), the forwarder last. What the subscriber receives is
taken in by intake.py; the status replies are in statusview.py.
"""
from __future__ import annotations

import collections
import logging
import threading
import time

import zmq

from flowmodel import curve
from flowmodel.config import parse_duration
from flowmodel.bus import (CONTROL_MAX_BYTES, queue_limit, TOPIC_ACK, TOPIC_ADVISORY, TOPIC_EXPORTER, TOPIC_FLOWS_PREFIX,
                           TOPIC_IF_COUNTERS, TOPIC_INTERFACES, TOPIC_RESEND, GapCounter, Sequencer, default_source_id,
                           encode_event)
from flowmodel.lifecycle import Components, StartError
from flowmodel.logs import RateLimitedLog, fields
from flowmodel.notes import check_note

from . import __version__, delivery, eventsink, names, statusview
from .forwarder import Forwarder
from .intake import BusIntake
from .queryserver import QueryServer
from .topwarm import TopWarmer
from .ring import Ring
from .warm import WarmWriter, now_ms
from .writer import Writer

log = logging.getLogger(__name__)


SEAL_QUIET_S = 10.0  # a past partition still receiving flows (a replay, a catch-up) is sealed once they stop
CONFIRM_POLL_MS = 10  # the receive loop's poll while an event that just came awaits its commit ...
CONFIRM_EAGER_S = 1.0  # ... for this long after it came; then at ACK_INTERVAL_S
ACK_INTERVAL_S = 0.2  # how often the store confirms committed flow batches to the collectors (bus.TOPIC_ACK)
HEALTH_INTERVAL_S = 5.0  # how often the store publishes its write health (kind "store" on bus.TOPIC_EXPORTER)


class StoreService(BusIntake):
    """The store's parts and its receive loop; what the subscriber receives is handled by BusIntake
    (intake.py)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.started_at = now_ms()
        self.ctx: zmq.Context | None = None
        self.ring: Ring | None = None
        self.writer: Writer | None = None
        self.gaps = GapCounter()
        self.ledger = delivery.Ledger()
        self.event_ledger = eventsink.EventLedger()  # advisories confirmed one by one (flowmodel.bus TOPIC_CONFIRM)
        self.events: eventsink.EventSink | None = None
        self._stream_sources: set[str] = set()  # sources whose flow batches are confirmed: resends, not gaps
        self._acks: zmq.Socket | None = None
        self._ack_sequencer = Sequencer(default_source_id("store"))
        self._health_sequencer = Sequencer(default_source_id("store"))  # its own seqs: the analyzer counts gaps
        self.flows_in = 0
        self.batches_in = 0
        self.bad_messages = 0
        self.exporter_flows: dict[bytes, list[int]] = {}  # exporter bytes -> [flows, last_seen_ms]
        self.health: dict[str, dict] = {}  # source -> latest health event (+ _received_at)
        self.next_seq = 1
        self.rates = collections.deque(maxlen=64)  # (monotonic, flows_in, committed)
        self._ring_log_at = time.monotonic() + statusview.RATE_WINDOW_S  # first ring-cover log line once the rate is known
        self._rl = RateLimitedLog(log)
        self._stop = threading.Event()
        self.forwarder = Forwarder(cfg, str(id(self)))  # the bus's XSUB/XPUB proxy (forwarder.py)
        self._sub: zmq.Socket | None = None
        self._sockets: list[zmq.Socket] = []  # every socket made, so a start that fails half-way still closes them
        # the query server (queryserver.py); ping, status, exporters and names are the service's own ops
        self.queries = QueryServer(cfg, {"ping": lambda: {"ok": True, "version": __version__}, "status": lambda: statusview.status(self),
                                         "exporters": lambda: statusview.exporters(self),
                                         "names": lambda: statusview.names_reply(self)})
        self.gate: curve.Gate | None = None  # CURVE keys, the ZAP handler and the refused peers (flowmodel.curve)
        self.lock = threading.Lock()
        # exporter and interface names (names.py): rows from the bus and SQLite, plus the exporters: config
        self.names = names.NameBook(cfg["names.max_interfaces"], cfg["names.max_rows"], cfg["exporters"])
        self.dns: names.ReverseDns | None = None
        self.warmer: TopWarmer | None = None  # the top cache's warmer (topwarm.py)
        self.parts = self._components()

    # ---------------------------------------------------------------- lifecycle

    def _components(self) -> Components:
        """The parts in start order; they stop in reverse, so the flush at stop (drain the subscriber,
        commit, confirm) runs first, while the forwarder still carries the last acks."""
        parts = Components("store")
        parts.add("context", self._open_context, self._close_context)
        parts.add("security", self._start_gate, lambda: self.gate.stop())
        parts.add("forwarder", lambda: self.forwarder.start(self._socket, self.gate), self.forwarder.stop)
        parts.add("storage", self._open_storage, lambda: self.writer.stop())
        parts.add("subscriber", self._connect_subscriber, self._close_subscriber)
        parts.add("events", self._bind_events, lambda: self.events.close())
        parts.add("reverse dns", self._start_dns, self._stop_dns)
        parts.add("queries", lambda: self.queries.start(self._socket, self.gate, self.ring, str(id(self))),
                  self.queries.stop)
        parts.add("top warmer", self._start_warmer, lambda: self.warmer.stop() if self.warmer else None)
        parts.add("flush at stop", None, self._flush)
        return parts

    def start(self) -> "StoreService":
        """Start the parts in order; a part that fails stops the others and its own error is raised."""
        try:
            self.parts.start()
        except StartError as e:
            raise e.__cause__
        return self

    def _open_context(self) -> None:
        self.ctx = zmq.Context()

    def _start_gate(self) -> None:
        self.gate = curve.Gate(self.cfg).start(self.ctx)  # CURVE keys and the ZAP handler, when configured

    def _open_storage(self) -> None:
        """The warm tier, what it remembers (health, delivery and event marks, names), its writer
        thread, and the ring."""
        cfg = self.cfg
        warm = WarmWriter(cfg["storage.sqlite_path"], int(cfg["storage.partition_interval"] * 1000),
                          cfg["analysis.anomaly_prefix_v4"], cfg["analysis.anomaly_prefix_v6"], cfg["storage.sqlite_cache"],
                          seal_quiet_s=SEAL_QUIET_S)
        self.next_seq = warm.next_seq
        warm.max_partitions = cfg["storage.max_partitions"]
        warm.retention_ms = int(cfg["storage.sqlite_retention"] * 1000)
        warm.ifcounter_retention_ms = int(cfg["storage.ifcounter_retention"] * 1000)
        warm.ifcounter_max_rows = cfg["storage.ifcounter_max_rows"]
        warm.prune_future(now_ms())  # before the ring's evicted_max_time_end below reads the partitions
        self.health = warm.load_health()
        self.ledger = delivery.Ledger(delivery.load_streams(warm.db, now_ms()))
        self.event_ledger = eventsink.EventLedger(eventsink.load_marks(warm.db, now_ms()))
        self.names.load(names.load(warm.db))
        self.writer = Writer(warm, cfg["storage.write_queue_batches"], cfg["storage.write_max_rows"],
                             cfg["storage.prune_interval"], int(cfg["storage.sqlite_retention"] * 1000),
                             int(cfg["storage.rollup_retention"] * 1000), int(cfg["storage.advisory_retention"] * 1000),
                             hourly_retention_ms=int(cfg["storage.rollup_hourly_retention"] * 1000),
                             five_min_retention_ms=int(cfg["storage.rollup_5min_retention"] * 1000),
                             max_bytes=cfg["storage.max_bytes"]).start()
        self.ring = Ring(cfg["storage.ring_capacity"], decoded_cache_bytes=cfg["storage.ring_decoded_cache"],
                         block_sums_bytes=cfg["storage.ring_overview_cache"])
        # After a restart the ring is empty but SQLite is not: treat what SQLite holds as evicted,
        # so a recent window that reaches back before the restart is answered from SQLite.
        stored_max = [p[4] for p in warm.partitions.values() if p[4] is not None]
        if stored_max:
            self.ring.evicted_max_time_end = max(stored_max)

    def _connect_subscriber(self) -> None:
        """The store's own subscriber (flows, events, interface names, resend notices) and its ack publisher."""
        self._sub = self._socket(zmq.SUB)
        self._sub.setsockopt(zmq.RCVHWM, queue_limit(self.cfg))
        for topic in (TOPIC_FLOWS_PREFIX, TOPIC_ADVISORY, TOPIC_EXPORTER, TOPIC_INTERFACES, TOPIC_IF_COUNTERS):
            self._sub.setsockopt(zmq.SUBSCRIBE, topic)
        self._sub.setsockopt(zmq.SUBSCRIBE, TOPIC_RESEND)
        self._sub.connect(self.forwarder.subscribe_inproc)
        self._acks = self._socket(zmq.PUB)
        self._acks.connect(self.forwarder.publish_inproc)

    def _close_subscriber(self) -> None:
        if self._sub is not None:
            self._sub.close(linger=0)
            self._sub = None

    def _bind_events(self) -> None:
        """The events socket: advisories apart from flow batches, each confirmed once committed."""
        cfg = self.cfg
        self.events = eventsink.EventSink(self.event_ledger, self._confirmed_event,
                                          lambda mark: self.writer.offer_event(eventsink.MARK_ONLY, mark), self._health,
                                          cfg["storage.sqlite_path"], self._ack_sequencer)
        events_sock = self._socket(zmq.ROUTER)
        events_sock.setsockopt(zmq.MAXMSGSIZE, CONTROL_MAX_BYTES)
        self.events.bind(events_sock, cfg["storage.events_bind"], cfg["bus.events_high_water_mark"],
                         lambda sock, endpoint: self.gate.bind(sock, endpoint, curve.EVENTS))

    def _start_dns(self) -> None:
        if self.cfg["names.reverse_dns"]:
            self.dns = names.ReverseDns(self.cfg["names.dns_cache"], self.cfg["names.dns_ttl"]).start()

    def _start_warmer(self) -> None:
        """Warms the shared top cache for the dashboard's standard ranges (topwarm.py), yielding to users'
        queries and to a write backlog."""
        w = self.writer
        self.warmer = TopWarmer(self.cfg["storage.sqlite_path"], self.queries.sealed_totals,
                                [int(parse_duration(s) * 1000) for s in self.cfg["storage.query_warm_ranges"]],
                                lambda: self.queries.answering or w.queued_rows > w.queue_rows_max // 4).start()

    def _stop_dns(self) -> None:
        if self.dns is not None:
            self.dns.stop()

    def _socket(self, kind: int) -> zmq.Socket:
        s = self.ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        self._sockets.append(s)
        return s

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self) -> None:
        """Safe twice: the parts in reverse (SUB drained, writer committed, acks and confirmations
        sent; queries, events, subscriber closed; the forwarder stopped last)."""
        self.parts.stop()

    def _flush(self) -> None:
        self._drain()
        self._sub.close(linger=0)
        self._sub = None
        self.writer.stop()
        self._send_acks()  # what the last transaction committed, while the forwarder still runs
        if self.events.sock is not None:
            self.events.confirm()

    def _close_context(self) -> None:
        """Sockets whose thread never started (a bind failed half-way) or has ended are closed here;
        term() would otherwise wait for them forever."""
        alive = self.forwarder.alive + self.queries.alive
        if alive:
            log.warning("threads still running at stop", extra=fields(threads=alive))
        else:
            for sock in self._sockets:
                if not sock.closed:
                    sock.close(linger=0)
            self.ctx.term()
        self.ctx = None
        log.info("stopped", extra=fields(flows_in=self.flows_in, committed=self.writer.committed if self.writer else 0,
                                         shed_flows=self.writer.shed_flows if self.writer else 0))

    # ---------------------------------------------------------------- the receive loop (main thread)

    def run(self) -> None:
        """Receive until request_stop(); never blocks on SQLite."""
        poller = zmq.Poller()
        poller.register(self._sub, zmq.POLLIN)
        poller.register(self.events.sock, zmq.POLLIN)
        next_sample = next_ack = next_health = eager_until = 0.0
        while not self._stop.is_set():
            try:
                # an event that just came is confirmed as soon as the writer commits it (an operator's
                # acknowledgement waits on it), not at the next ACK_INTERVAL_S; briefly, so a writer
                # that cannot commit does not keep the loop reading SQLite
                eager = time.monotonic() < eager_until and bool(self.events.ledger.uncommitted())
                ready = dict(poller.poll(CONFIRM_POLL_MS if eager else 100))
                if self.events.sock in ready:
                    self.events.receive()
                    eager_until = time.monotonic() + CONFIRM_EAGER_S
                if self._sub in ready:  # a time-bounded pass: a flood of batches cannot hold the events socket back
                    eventsink.drain(lambda: self._sub.recv_multipart(zmq.NOBLOCK), self.handle, 1000)
                mono = time.monotonic()
                if mono >= next_ack:
                    next_ack = mono + ACK_INTERVAL_S
                    self._send_acks()
                    self.events.confirm()
                elif eager:
                    self.events.confirm()
                if mono >= next_health:
                    next_health = mono + HEALTH_INTERVAL_S
                    self._send_health()
                if mono >= next_sample:
                    next_sample = mono + 1.0
                    self.rates.append((mono, self.flows_in, self.writer.committed))
                    self._log_ring_cover(mono)
            except Exception:
                self.bad_messages += 1
                log.exception("receive loop error")

    def _log_ring_cover(self, mono: float) -> None:
        """Once a minute of flows has arrived, and again each hour: how many minutes the ring holds at the
        current flow rate, against storage.ring_buffer_duration (the ring is sized in flows,
        storage.ring_capacity; at a rate above capacity / duration it holds less than the duration)."""
        if mono < self._ring_log_at:
            return
        rate = statusview.rate(self, 1)
        if rate <= 0:
            return
        self._ring_log_at = mono + 3600.0
        holds_s = self.ring.capacity / rate
        want_s = self.cfg["storage.ring_buffer_duration"]
        kv = fields(flows_per_s=rate, holds_min=round(holds_s / 60, 1), ring_capacity=self.ring.capacity,
                    ring_buffer_duration_min=round(want_s / 60, 1))
        if holds_s < want_s:
            log.warning("ring holds less than storage.ring_buffer_duration at this flow rate: raise "
                        "storage.ring_capacity to keep it", extra=kv)
        else:
            log.info("ring holds", extra=kv)

    def _send_acks(self) -> None:
        self.ledger.committed(dict(self.writer.stream_committed))
        acks = self.ledger.acks(now_ms())
        if acks and self._acks is not None:
            try:
                self._acks.send_multipart([TOPIC_ACK, encode_event({"acks": acks}, self._ack_sequencer)], zmq.NOBLOCK)
            except zmq.ZMQError as e:
                self._rl.warning("ack", "cannot publish acks", error=str(e))

    def _send_health(self) -> None:
        body = {"kind": "store", "collector": self._health_sequencer.source, "stats_interval": HEALTH_INTERVAL_S,
                "counters": {"flows_in": self.flows_in, "flows_committed": self.writer.committed,
                             "shed_flows": self.writer.shed_flows, **statusview.write_health(self),
                             "refused_peers": self.gate.recent_refusals() if self.gate is not None else []}}
        if self._acks is not None:
            try:
                self._acks.send_multipart([TOPIC_EXPORTER, encode_event(body, self._health_sequencer)], zmq.NOBLOCK)
            except zmq.ZMQError as e:
                self._rl.warning("health", "cannot publish health", error=str(e))

    def _confirmed_event(self, topic: str, msg: dict) -> bool:
        """An advisory or an operator's note from the events socket: False while the writer's event
        queue is full (the sender keeps it and sends it again), ValueError when it is none."""
        (check_note if topic == "note" else eventsink.check_advisory)(msg)
        return not self.writer.events.full() and self.writer.offer_event(topic, msg)
