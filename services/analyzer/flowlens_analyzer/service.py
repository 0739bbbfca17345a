"""The analyzer service: SUB to flow batches and exporter health on the bus, the engine on flow
time, advisories sent to the store on the events socket until it confirms them (and published on
the bus for subscribers), PUB of the analyzer's own health event.

Constructed inert; ``start()`` starts its parts in order (flowmodel.lifecycle.Components),
``run_once()`` is one turn of the loop (tests and the main loop drive it), ``stop()`` is safe twice
and stops them in reverse.
"""
from __future__ import annotations

import logging
from typing import Any

import zmq

from flowmodel import bus, curve
from flowmodel.eventbox import EventSender
from flowmodel.events import process_stats, service_config
from flowmodel.lifecycle import Components, StartError
from flowmodel.logs import RateLimitedLog, fields

from . import health
from .baseline_seed import SEED_BUDGET_S, seed_baseline
from .dedupe import SeenBatches
from .engine import Engine
from .silencing import Silencer, SilenceReader

log = logging.getLogger(__name__)
DRAIN_MAX = 2000  # messages handled per turn before the engine gets a look
ADOPT_LIMIT = 10_000  # open advisories taken over from the store at start (the store may cap it lower)
FLUSH_AT_STOP_S = 5.0  # how long stop() waits for the store to confirm the advisories still held


class AnalyzerService:
    def __init__(self, cfg, context: zmq.Context | None = None):
        self.cfg = cfg
        self.source = cfg["analysis.instance_id"] or bus.default_source_id("analyzer")
        self.engine = Engine(cfg)
        self.engine.health.window = self.engine.window  # shed and ahead-of-clock flows, for the health advisories
        self.sequencer = bus.Sequencer(self.source)
        self.gaps = bus.GapCounter()
        self.seen = SeenBatches()  # batches a collector sent again (confirmed delivery): counted once
        self._ctx = context
        self._own_ctx = context is None
        self.sub: zmq.Socket | None = None
        self.pub: zmq.Socket | None = None
        self.events: EventSender | None = None  # advisories to the store, held until confirmed
        self.silencer = Silencer()  # operators' silences hold matching advisories back (read by silence_reader)
        self.silence_reader: SilenceReader | None = None
        self.started_at = bus.now_ms()
        self.health_every_ms = int(cfg["analysis.health_interval"] * 1000)
        self.next_health = 0
        self.counters: dict[str, Any] = {"messages": 0, "batches": 0, "flows": 0, "health_events": 0,
                                         "bad_messages": 0, "advisories_published": 0, "loop_errors": 0,
                                         "adopted_advisories": 0, "seeded_rows": 0}
        self.bad_reasons: dict[str, int] = {}
        self.rlog = RateLimitedLog(log)
        self.adopted_clock: int | None = None  # newest last_seen (flow time) of the advisories adopted at start
        self.adopted_wall = 0
        self.config_report = service_config(cfg, "analyzer")  # effective keys, shown per service on About
        self._keys = None
        self.parts = self._components()

    # ---------------------------------------------------------------- lifecycle

    def _components(self) -> Components:
        """The parts, in start order; they stop in reverse, so the flush at stop (advisories the store
        has not confirmed, the last health event) comes first, while the sockets are still open."""
        parts = Components("analyzer")
        parts.add("context", self._open_context, self._close_context)
        parts.add("publisher", self._connect_publisher, lambda: self._close_socket("pub"))
        parts.add("subscriber", self._connect_subscriber, lambda: self._close_socket("sub"))
        parts.add("events", self._open_events, self._close_events)
        parts.add("silences", self._open_silences, lambda: self.silence_reader.stop())
        parts.add("flush at stop", None, self._flush)
        return parts

    def start(self) -> None:
        """Connect to the bus and the store's events socket, start reading silences. Raises what the
        failing part raised, after stopping the others."""
        self._keys = curve.client_keys(self.cfg)  # CURVE to the store's sockets when security.* names keys
        try:
            self.parts.start()
        except StartError as e:
            raise e.__cause__

    def stop(self) -> None:
        self.parts.stop()

    def _open_context(self) -> None:
        self._ctx = self._ctx or zmq.Context()

    def _close_context(self) -> None:
        if self._own_ctx and self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    def _connect_publisher(self) -> None:
        self.pub = self._ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.setsockopt(zmq.SNDHWM, self.cfg["bus.high_water_mark"])  # advisories and health: small
        self._connect_or_close("pub", self.cfg["bus.publish_endpoint"])

    def _connect_subscriber(self) -> None:
        self.sub = self._ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RCVHWM, bus.queue_limit(self.cfg))  # flow batches
        self.sub.setsockopt(zmq.MAXMSGSIZE, bus.max_message_bytes(self.cfg))
        self.sub.setsockopt(zmq.SUBSCRIBE, bus.TOPIC_FLOWS_PREFIX)
        self.sub.setsockopt(zmq.SUBSCRIBE, bus.TOPIC_EXPORTER)
        self._connect_or_close("sub", self.cfg["bus.subscribe_endpoint"])

    def _connect_or_close(self, name: str, endpoint: str) -> None:
        """Connect the socket; on a failure close it first: a part that failed is not stopped, and
        an open socket would hold the context's term() for ever."""
        try:
            curve.connect_securely(getattr(self, name), endpoint, self._keys)
        except Exception:
            self._close_socket(name)
            raise

    def _close_socket(self, name: str) -> None:
        sock = getattr(self, name)
        if sock is not None and not sock.closed:
            sock.close(linger=0)
        setattr(self, name, None)

    def _open_events(self) -> None:
        self.events = EventSender(self.cfg["bus.events_endpoint"], self.source, self.cfg["bus.events_unconfirmed_max"],
                                  self.cfg["bus.events_resend_timeout"], self.cfg["bus.events_high_water_mark"],
                                  context=self._ctx, keys=self._keys).start()
        self.engine.health.outbox = self.events.outbox  # advisories it dropped: a health advisory of their own
        self.next_health = bus.now_ms() + min(self.health_every_ms, 1000)

    def _close_events(self) -> None:
        if self.events is not None:
            self.events.close()

    def _open_silences(self) -> None:
        self.silence_reader = SilenceReader(self.cfg, self.silencer, self.cfg["analysis.health_interval"]).start()

    def _flush(self) -> None:
        if self.events is not None and self.events.sock is not None and self.events.outbox.pending:
            if not self.events.flush(FLUSH_AT_STOP_S):
                log.warning("advisories not confirmed by the store at stop, lost with this process",
                            extra=fields(advisories=len(self.events.outbox.pending)))
        if self.pub is not None and not self.pub.closed:
            try:
                self._publish_health(bus.now_ms())
            except zmq.ZMQError:
                pass

    # ---------------------------------------------------------------- baseline seed

    def seed_from_store(self, client, budget_s: float = SEED_BUDGET_S) -> dict[str, Any]:
        """Seed the anomaly baseline from the store's rollups (baseline_seed.py): a store error reply
        skips a part, StoreUnavailable ends the seeding and is raised. Returns what was loaded: rows
        per part, keys, seconds."""
        report = seed_baseline(self.engine, self.cfg, client, budget_s)
        self.counters["seeded_rows"] = report["hourly_rows"] + report["minute_rows"]
        return report

    # ---------------------------------------------------------------- open advisories of an earlier run

    def adopt_from_store(self, client) -> int:
        """Take over the advisories the store holds as raised/updated (an earlier run of the analyzer
        published them), so they update or resolve; returns how many were adopted."""
        reply = client.request("advisories", state="raised,updated", limit=ADOPT_LIMIT)
        rows = reply.get("advisories") or []
        if int(reply.get("total") or len(rows)) > len(rows):
            log.warning("more open advisories in the store than adopted",
                        extra=fields(adopted=len(rows), total=reply.get("total")))
        n = self.engine.health_book.adopt([a for a in rows if a.get("analyzer") == health.NAME])
        n += self.engine.book.adopt([a for a in rows if a.get("analyzer") != health.NAME])
        self.adopted_clock = self.engine.book.newest_last_seen()
        self.adopted_wall = bus.now_ms()
        self.counters["adopted_advisories"] = n
        return n

    def _resolve_adopted(self, now: int) -> None:
        """Until flows arrive (which run windows), flow time for the adopted advisories moves on with the
        wall clock from the newest one's last_seen, so that they resolve when nothing renews them."""
        if self.adopted_clock is None or self.engine.window.clock is not None or not self.engine.book.open:
            return
        for event in self.engine.book.fold([], self.adopted_clock + (now - self.adopted_wall)):
            self._publish_advisory(event)

    # ---------------------------------------------------------------- loop

    def run_once(self, timeout_ms: int = 100) -> int:
        """Handle what arrives within timeout_ms, run due windows, publish; returns messages handled."""
        handled = 0
        if self.sub.poll(timeout_ms, zmq.POLLIN):
            while handled < DRAIN_MAX:
                try:
                    frames = self.sub.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                handled += 1
                self._handle(frames)
        self.events.pump()
        now = bus.now_ms()
        for event in self.engine.poll(now):
            self._publish_advisory(event)
        if now >= self.next_health:
            self.next_health = now + self.health_every_ms
            for event in self.engine.health_check(now, dict(self.gaps.gaps)):
                self._publish_advisory(event)
            self._resolve_adopted(now)
            self._publish_health(now)
        return handled

    def run(self, should_stop) -> None:
        while not should_stop():
            try:
                self.run_once()
            except Exception:
                self.counters["loop_errors"] += 1
                log.exception("analyzer loop error")

    def _bad(self, reason: str, detail: str) -> None:
        self.counters["bad_messages"] += 1
        self.bad_reasons[reason] = self.bad_reasons.get(reason, 0) + 1
        self.rlog.warning(reason, "bad bus message", reason=reason, detail=detail[:200])

    def _handle(self, frames: list[bytes]) -> None:
        self.counters["messages"] += 1
        if len(frames) != 2:
            self._bad("frames", f"{len(frames)} frames")
            return
        topic, body = frames
        now = bus.now_ms()
        try:
            if topic.startswith(bus.TOPIC_FLOWS_PREFIX):
                env, batch = bus.decode_batch(body)
                if not self.seen.is_new(env.stream, env.batch_seq, batch.count):
                    return  # sent again: its envelope seq is an old one, so not a bus gap or restart either
                self.gaps.observe(env.source, env.seq)
                self.counters["batches"] += 1
                self.counters["flows"] += batch.count
                self.engine.add(batch, now)
            elif topic == bus.TOPIC_EXPORTER:
                msg = bus.decode_body(body)
                if msg.get("source") != self.source:  # our own events: we do not see our advisories' seqs
                    self.gaps.observe(str(msg["source"]), int(msg["seq"]))
                    self.engine.health.observe(msg, now)
            else:
                self._bad("topic", topic.decode("ascii", "replace"))
        except bus.CodecError as e:
            self._bad("codec", str(e))
        except (KeyError, TypeError, ValueError) as e:
            self._bad("content", repr(e))

    def _publish_advisory(self, event: dict) -> None:
        """To the store on the events socket (held until confirmed), and the same body on the bus for
        subscribers (the store stores that copy only from the events socket); not at all while an
        operator's silence holds it (silencing.py)."""
        if not self.silencer.admit(event, bus.now_ms()):
            return
        body = self.events.send(bus.TOPIC_ADVISORY, event, lambda b: bus.encode_event(b, self.sequencer))
        self.pub.send_multipart([bus.TOPIC_ADVISORY, body])
        self.counters["advisories_published"] += 1
        log.info("advisory", extra=fields(key=event["key"], state=event["state"], severity=event["severity"],
                                          description=event["description"]))

    def stats(self) -> dict[str, Any]:
        w = self.engine.window
        return {**self.counters, "bus_gaps": self.gaps.total_gaps, "bad_reasons": dict(self.bad_reasons),
                "window_flows": w.size, "late_flows": w.counters["late"], "future_flows": w.counters["future"],
                "overflow_flows": w.counters["overflow"], "runs": w.counters["runs"],
                **self._advisory_delivery(),
                "duplicate_batches": self.seen.duplicate_batches, "duplicate_flows": self.seen.duplicate_flows,
                "advisories_silenced": self.silencer.silenced, "silences": len(self.silencer.silences),
                "silence_reads_failed": self.silence_reader.failed if self.silence_reader else 0,
                "open_advisories": len(self.engine.book.open) + len(self.engine.health_book.open),
                "analyzer_cpu_seconds": {k: round(v, 3) for k, v in self.engine.cpu_seconds.items()},
                "analyzer_errors": dict(self.engine.errors),
                "flow_clock": w.clock}

    def _advisory_delivery(self) -> dict[str, int]:
        """advisories_confirmed (by the store), _unconfirmed (held), _lost (dropped by
        bus.events_unconfirmed_max before confirmation), _resent (sent again after a resend timeout);
        health events the events socket would not take (the store away; the bus copy may still land)."""
        ob = self.events.stats() if self.events is not None else {}
        return {**{f"advisories_{k}": ob.get(k, 0) for k in ("confirmed", "unconfirmed", "lost", "resent")},
                "health_events_unsent": ob.get("snapshots_unsent", 0)}

    def _publish_health(self, now: int) -> None:
        body = {"kind": "analyzer", "collector": self.source, "process": process_stats(self.started_at),
                "counters": self.stats(), "listen": [], "socket": [], "exporters": [],
                "config": self.config_report}
        data = bus.encode_event(body, self.sequencer)
        self.pub.send_multipart([bus.TOPIC_EXPORTER, data])
        if self.events is not None:
            self.events.send_snapshot(bus.TOPIC_EXPORTER, data)  # the store's copy, apart from flow batches
        self.counters["health_events"] += 1
