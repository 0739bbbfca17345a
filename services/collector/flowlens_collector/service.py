"""The collector's shell: UDP sockets in, decoded flow batches and health events out on the bus.

Datagrams come in groups (intake.py) that the decoder turns into columns in one call. Flows wait in
a ``Batcher`` until the batch is full or old enough, then go out as one ``flows.<version>`` message,
held until the store confirms it (delivery.py). Timers (health events and interface names,
reports.py; restart-state saves, template expiry) run between groups, never per datagram. The parts
start and stop through flowmodel.lifecycle.Components.
"""
from __future__ import annotations

import logging
import socket
import time

import zmq

from flowmodel import bus, curve
from flowmodel.events import service_config
from flowmodel.lifecycle import Components, StartError
from flowmodel.logs import fields

from .batcher import Batcher
from .enrich import Enricher
from .delivery import Delivery
from .intake import Intake
from .reports import Reports
from .restart_state import RestartState
from .udp import Listener

log = logging.getLogger(__name__)

EXPIRE_INTERVAL_MS = 1000          # how often the decoder drops stale held data sets and templates
# Restart state is saved at most this often, and only what changed: a template is on disk about a
# second after it arrives; the sequence file follows the durable flows (journaled in between, seqmarks.py).
STATE_SAVE_INTERVAL_MS = 1000
POLL_MAX_MS = 250
STOP_DRAIN_MAX_S = 5.0             # SIGTERM: read what the kernel already holds, for at most this long
# At start the collector does not read UDP until the bus has a subscriber (the store), for at most
# this long: a PUB socket drops what it sends before the first subscription reaches it, while the
# kernel keeps the datagrams that arrive meanwhile.
SUBSCRIBER_WAIT_S = 5.0
PUB_LINGER_AT_STOP_MS = 2000       # let queued batches reach the bus before the socket closes
# After a crash the previous run's last batches may be committed but unconfirmed: the store's first
# ack (it acks every 200 ms) says so; the loop waits this long for it, once subscribed, before reading.
MARKS_ACK_WAIT_S = 2.0
DELIVERY_INTERVAL_MS = 50          # how often acks are read and held batches (re)sent


def default_source_id(cfg) -> str:
    """'collector@host/port': the same after a restart, so the store, the analyzer and /metrics
    take the new process's reports in place of the old one's; two collectors on one host differ by
    their NetFlow port (a configured collector.instance_id takes precedence)."""
    return f"collector@{socket.gethostname()}/{cfg['collector.netflow_port']}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Collector:
    """Inert until ``start()``; ``run()`` loops until ``request_stop()``; ``stop()`` drains and closes."""

    def __init__(self, cfg, decoder=None):
        self.cfg = cfg
        if decoder is None:
            from . import flowtimes
            from .decode import Decoder  # the decoder engineer's module; imported late so the shell is testable alone

            decoder = Decoder(max_templates_per_exporter=cfg["collector.max_templates_per_exporter"],
                              pending_max_bytes=cfg["collector.pending_max_bytes"],
                              pending_max_age_ms=int(cfg["collector.pending_max_age"] * 1000),
                              pending_total_max_bytes=cfg["collector.pending_total_max_bytes"],
                              template_fields_total_max=cfg["collector.template_fields_total_max"],
                              template_lifetime_ms=int(cfg["collector.template_lifetime"] * 1000),
                              max_time_ahead_ms=flowtimes.MAX_AHEAD_MS,
                              max_exporters=cfg["collector.max_exporters"],
                              max_interfaces=cfg["names.max_interfaces"],
                              names_republish_ms=int(cfg["names.republish_interval"] * 1000),
                              max_if_counters=cfg["collector.sflow_counter_interfaces"])
        self.decoder = decoder
        self.enricher = Enricher.from_config(cfg)  # AS numbers and countries (enrichment.*), read at start
        self.source_id = cfg["collector.instance_id"] or default_source_id(cfg)
        self.config_report = service_config(cfg, "collector")  # effective keys, shown per service on About
        self.batcher = Batcher(cfg["collector.batch_max_flows"], int(cfg["collector.batch_max_age"] * 1000))
        self.stats_interval_ms = int(cfg["collector.stats_interval"] * 1000)
        self.sequencer = bus.Sequencer(self.source_id)
        self._acks: zmq.Socket | None = None
        self._next_delivery_ms = 0
        self.counters = {"datagrams": 0, "bytes": 0, "flows": 0, "groups": 0, "published_batches": 0,
                         "published_flows": 0, "health_events": 0, "loop_errors": 0, "publish_errors": 0,
                         "template_saves": 0, "template_save_errors": 0, "templates_loaded": 0,
                         "sequence_saves": 0, "sequence_save_errors": 0, "sequences_loaded": 0,
                         "template_save_max_ms": 0, "acked_batches": 0, "acked_flows": 0, "resent_batches": 0,
                         "resent_flows": 0, "resends": 0, "interface_events": 0,
                         "sequence_marks_merged": 0}
        # confirmed delivery (flowmodel.bus TOPIC_ACK): this run's stream of flow batches, and what the
        # store has not yet confirmed, of this run and of earlier ones (the spool)
        self.delivery = Delivery(cfg, self.sequencer, self.counters)
        self.intake = Intake(cfg, self._decode, self.counters)  # UDP listeners and datagram groups (intake.py)
        self.started_at_ms = 0
        self._ctx: zmq.Context | None = None
        self._pub: zmq.Socket | None = None
        self._subscribed = False
        self._subscriber_deadline = 0.0
        self._stop_requested = False
        self._started = False
        self._next_stats_ms = self._next_expire_ms = self._next_save_ms = 0
        # templates and sequence state, saved for the next run (restart_state.py); the sequence marks
        # follow the batches: journaled before one is sent, durable once it is confirmed or spooled
        self.state = RestartState(self.decoder, cfg["collector.template_path"],
                                  int(cfg["collector.template_lifetime"] * 1000), self.counters,
                                  cfg["collector.unacked_max_bytes"])
        self.delivery.before_send = lambda stream, seq: self.state.marks.record(stream, seq, self.decoder)
        self.delivery.on_durable = self.state.marks.durable_through
        self._spooled_through: dict[str, int] = {}
        self._marks_deadline = 0.0
        # health events, interface names and if-counters on the bus (reports.py)
        self.reports = Reports(self.source_id, self.sequencer, self.counters, self.stats_interval_ms,
                               self.config_report, decoder=self.decoder, enricher=self.enricher,
                               delivery=self.delivery, batcher=self.batcher, intake=self.intake)
        self.parts = self._components()

    # ------------------------------------------------------------------ lifecycle

    def _components(self) -> Components:
        """The parts, in start order; they stop in reverse, so the flush at stop comes first, while
        the listeners, the bus and the outbox are still there."""
        parts = Components("collector")
        parts.add("enrichment", self.enricher.open)  # a bad database: a ConfigError naming its key, before any bind
        parts.add("templates", self.state.load_templates)
        parts.add("listeners", self.intake.open_listeners, self.intake.close_listeners)
        parts.add("bus", self._connect_bus, self._close_bus)
        parts.add("spool", self._open_spool, self.delivery.outbox.close)
        parts.add("sequence state", lambda: self.state.load_sequences(self._spooled_through), self.state.close)
        parts.add("delivery", self._open_delivery, self.delivery.close)
        parts.add("receive loop", self._prepare_loop, self.intake.close_poll)
        parts.add("flush at stop", None, self._flush)
        return parts

    def start(self) -> None:
        """Load saved templates and sequence state, bind the UDP listeners, connect to the bus.
        Raises what the failing part raised (OSError on a failed bind), after stopping the others."""
        self.started_at_ms = self.reports.started_at_ms = now_ms()
        try:
            self.parts.start()
        except StartError as e:
            raise e.__cause__
        log.info("publishing", extra=fields(endpoint=self.cfg["bus.publish_endpoint"], source=self.source_id,
                                            receive=self.intake.methods,
                                            sndhwm=bus.queue_limit(self.cfg)))

    def _connect_bus(self) -> None:
        keys = curve.client_keys(self.cfg)  # CURVE to the store when security.* names keys
        self._ctx = zmq.Context()
        # XPUB: sends like PUB, and lets the collector see the subscriptions it is sending to
        self._pub = self._ctx.socket(zmq.XPUB)
        self._pub.setsockopt(zmq.SNDHWM, bus.queue_limit(self.cfg))
        self._pub.setsockopt(zmq.LINGER, 0)
        self._pub.setsockopt(zmq.XPUB_NODROP, 1)  # a full queue says so (EAGAIN): the batch stays held, unsent
        self._pub.setsockopt(zmq.MAXMSGSIZE, bus.SUBSCRIPTION_MAX_BYTES)  # it reads subscriptions only
        self._acks = self._ctx.socket(zmq.SUB)
        self._acks.setsockopt(zmq.LINGER, 0)
        self._acks.setsockopt(zmq.MAXMSGSIZE, bus.CONTROL_MAX_BYTES)  # acks: a small map
        self._acks.setsockopt(zmq.SUBSCRIBE, bus.TOPIC_ACK)
        curve.connect_securely(self._pub, self.cfg["bus.publish_endpoint"], keys)
        curve.connect_securely(self._acks, self.cfg["bus.subscribe_endpoint"], keys)

    def _close_bus(self) -> None:
        if self._acks is not None:
            self._acks.close(linger=0)
        if self._pub is not None:
            self._pub.setsockopt(zmq.LINGER, PUB_LINGER_AT_STOP_MS)  # let queued batches reach the bus
            self._pub.close()
        if self._ctx is not None:
            self._ctx.term()
        self._ctx = self._pub = self._acks = None

    def _open_spool(self) -> None:
        self._spooled_through = self.delivery.open_spool()

    def _open_delivery(self) -> None:
        self.delivery.open(f"{self.source_id}/{self.started_at_ms}", self._pub, self._acks)

    def _prepare_loop(self) -> None:
        self.intake.open_poll()
        t = now_ms()
        self._subscriber_deadline = time.monotonic() + SUBSCRIBER_WAIT_S
        self._next_stats_ms = t + self.stats_interval_ms
        self._next_expire_ms = t + EXPIRE_INTERVAL_MS
        self._next_save_ms = t + STATE_SAVE_INTERVAL_MS
        self._next_delivery_ms = t
        self._started = True

    def request_stop(self) -> None:
        """Safe from a signal handler: set a flag and wake the poll."""
        self._stop_requested = True
        self.intake.wake()

    def run(self) -> None:
        """The receive loop, until ``request_stop()``."""
        assert self._started, "start() first"
        while not self._stop_requested:
            try:
                self._step()
            except Exception:  # the top of the loop: log with traceback, count, keep receiving
                self.counters["loop_errors"] += 1
                log.exception("receive loop error")

    def stop(self) -> None:
        """Drain the kernel buffers, publish the last batch and the final health event, save
        templates and sequence state, close everything (the parts in reverse). Safe to call twice."""
        self.parts.stop()

    def _flush(self) -> None:
        """The first thing a stop does: what the kernel holds is decoded and published, the store gets
        a moment to confirm it, the last health event carries the whole table, the state is saved."""
        if self.state.marks.unresolved:
            self._resolve_marks(final=True)
        drained = self.intake.drain(STOP_DRAIN_MAX_S)
        self._publish_pending()
        self.delivery.await_acks()
        self.reports.want_full_table()
        self.reports.publish_health(self._pub, now_ms())
        self.state.save(force=True)
        log.info("stopped", extra=fields(drained_datagrams=drained, **self.counters))

    # ------------------------------------------------------------------ loop body

    def _step(self) -> None:
        if not self._subscribed and not self._wait_for_subscriber():
            return
        if self.state.marks.unresolved and not self._resolve_marks():
            return
        t = now_ms()
        timeout = min(POLL_MAX_MS, self._next_timer_ms(t) - t)
        due_in = self.batcher.ms_until_due(t)
        if due_in is not None:
            timeout = min(timeout, due_in)
        group_wait = self.intake.group_wait_ms(t)
        if group_wait is not None:
            timeout = min(timeout, group_wait)
        self.intake.poll_and_read(timeout, lambda: self._stop_requested)
        t = now_ms()
        self.intake.decode_if_old(t)
        if self.batcher.due(t):
            self._publish_pending()
        self._run_timers(t)

    def _wait_for_subscriber(self) -> bool:
        """True once a subscription reached the bus socket (or the wait is over); until then the
        loop leaves the datagrams in the kernel's buffer."""
        try:
            if self._pub.poll(50, zmq.POLLIN):
                self._read_subscriptions()
        except zmq.ZMQError:
            self._subscribed = True
        if not self._subscribed and time.monotonic() >= self._subscriber_deadline:
            log.warning("no subscriber on the bus yet; publishing anyway (flows sent before one appears are lost)",
                        extra=fields(endpoint=self.cfg["bus.publish_endpoint"], waited_s=SUBSCRIBER_WAIT_S))
            self._subscribed = True
        return self._subscribed

    def _resolve_marks(self, final: bool = False) -> bool:
        """After a crash (seqmarks.py): before the first datagram is read, the store's first ack says
        which of the previous run's batches it committed; without one within MARKS_ACK_WAIT_S, only
        the spool and the last save count (a batch the store committed after them is then counted
        as lost too, and the log says so)."""
        if not self._marks_deadline:
            self._marks_deadline = time.monotonic() + MARKS_ACK_WAIT_S
        committed = self.delivery.read_acks()
        if not committed and not final and time.monotonic() < self._marks_deadline:
            self._acks.poll(50)
            return False
        if not committed:
            log.warning("no ack from the store; the sequence state continues from the spool and the last save",
                        extra=fields(waited_s=MARKS_ACK_WAIT_S))
        self.state.resolve_sequences(committed)
        return True

    def _read_subscriptions(self) -> None:
        """Drain the XPUB's subscription messages (tiny; one per subscriber and topic); the first
        one for flow batches ends the start-up wait; one for health events (a store that started
        again) asks for the whole exporter table in the next health event."""
        while True:
            try:
                msg = self._pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            topic = msg[1:]
            if msg[:1] == b"\x01" and bus.TOPIC_EXPORTER.startswith(topic):
                self.reports.want_full_table()
            if msg[:1] == b"\x01" and bus.TOPIC_INTERFACES.startswith(topic) and \
                    getattr(self.decoder, "interfaces", None) is not None:
                self.decoder.interfaces.republish_all()  # a store (re)subscribed: send every table again
            # a subscription that takes flow batches ("flows.", "flows.9", "" ...), not only events
            if msg[:1] == b"\x01" and not self._subscribed and \
                    (bus.TOPIC_FLOWS_PREFIX.startswith(topic) or topic.startswith(bus.TOPIC_FLOWS_PREFIX)):
                self._subscribed = True
                log.info("bus subscriber present", extra=fields(topic=topic.decode("ascii", "replace")))

    def _decode(self, datagrams: list, sources: list, layout=None) -> None:
        t = now_ms()
        c = self.counters
        c["datagrams"] += len(datagrams)
        c["bytes"] += int(layout[2].sum()) if layout is not None else sum(map(len, datagrams))
        c["groups"] += 1
        batch = self.decoder.decode(datagrams, sources, t, layout)
        if batch is not None and batch.count:
            if self.enricher.enabled:
                self.enricher.apply(batch)
            c["flows"] += batch.count
            self.batcher.add(batch, t)
            if self.batcher.due(t):
                self._publish_pending()

    def _publish_pending(self) -> None:
        """Encode what the batcher holds into the outbox, then send what the window allows."""
        self.delivery.publish(self.batcher.take())

    # ------------------------------------------------------------------ timers

    def _next_timer_ms(self, t: int) -> int:
        return min(self._next_stats_ms, self._next_expire_ms, self._next_save_ms, self._next_delivery_ms)

    def _run_timers(self, t: int) -> None:
        if t >= self._next_delivery_ms:
            self._next_delivery_ms = t + DELIVERY_INTERVAL_MS
            self.delivery.deliver()
        if t >= self._next_expire_ms:
            self._read_subscriptions()
            self._next_expire_ms = t + EXPIRE_INTERVAL_MS
            self.decoder.expire(t)
            self.reports.publish_interfaces(self._pub, t)
            self.reports.publish_if_counters(self._pub)
        if t >= self._next_stats_ms:
            self._next_stats_ms = t + self.stats_interval_ms
            self.reports.publish_health(self._pub, t)
        if t >= self._next_save_ms:
            self._next_save_ms = t + STATE_SAVE_INTERVAL_MS
            self.state.save()

    @property
    def listeners(self) -> list[Listener]:
        return self.intake.listeners
