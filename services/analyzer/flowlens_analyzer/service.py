"""The analyzer service: SUB to flow batches and exporter health on the bus, the engine on flow
time, PUB of advisory events and of the analyzer's own health event.

Constructed inert; ``start()`` connects, ``run_once()`` is one turn of the loop (tests and the
main loop drive it), ``stop()`` is safe twice and closes in reverse order.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import zmq

from flowmodel import addr, bus
from flowmodel.events import process_stats
from flowmodel.logs import RateLimitedLog, fields

from . import anomaly, health
from .engine import Engine

log = logging.getLogger(__name__)
DRAIN_MAX = 2000  # messages handled per turn before the engine gets a look
ADOPT_LIMIT = 10_000  # open advisories taken over from the store at start (the store may cap it lower)


class AnalyzerService:
    def __init__(self, cfg, context: zmq.Context | None = None):
        self.cfg = cfg
        self.source = cfg["analysis.instance_id"] or bus.default_source_id("analyzer")
        self.engine = Engine(cfg)
        self.engine.health.window = self.engine.window  # shed and ahead-of-clock flows, for the health advisories
        self.sequencer = bus.Sequencer(self.source)
        self.gaps = bus.GapCounter()
        self._ctx = context
        self._own_ctx = context is None
        self.sub: zmq.Socket | None = None
        self.pub: zmq.Socket | None = None
        self.started_at = bus.now_ms()
        self.health_every_ms = int(cfg["analysis.health_interval"] * 1000)
        self.next_health = 0
        self.counters: dict[str, Any] = {"messages": 0, "batches": 0, "flows": 0, "health_events": 0,
                                         "bad_messages": 0, "advisories_published": 0, "loop_errors": 0,
                                         "adopted_advisories": 0}
        self.bad_reasons: dict[str, int] = {}
        self.rlog = RateLimitedLog(log)
        self.adopted_clock: int | None = None  # newest last_seen (flow time) of the advisories adopted at start
        self.adopted_wall = 0

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._ctx = self._ctx or zmq.Context()
        self.pub = self._ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.setsockopt(zmq.SNDHWM, self.cfg["bus.high_water_mark"])  # advisories and health: small
        self.pub.connect(self.cfg["bus.publish_endpoint"])
        self.sub = self._ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RCVHWM, bus.queue_limit(self.cfg))  # flow batches
        self.sub.setsockopt(zmq.SUBSCRIBE, bus.TOPIC_FLOWS_PREFIX)
        self.sub.setsockopt(zmq.SUBSCRIBE, bus.TOPIC_EXPORTER)
        self.sub.connect(self.cfg["bus.subscribe_endpoint"])
        self.next_health = bus.now_ms() + min(self.health_every_ms, 1000)

    def stop(self) -> None:
        if self.pub is not None and not self.pub.closed:
            try:
                self._publish_health(bus.now_ms())
            except zmq.ZMQError:
                pass
        for sock in (self.sub, self.pub):
            if sock is not None and not sock.closed:
                sock.close(linger=0)
        self.sub = self.pub = None
        if self._own_ctx and self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    # ---------------------------------------------------------------- baseline seed

    def seed_from_store(self, client) -> int:
        """Load per-minute rollups from the store into the anomaly history; returns rows loaded."""
        now = bus.now_ms()
        since = now - int(self.cfg["analysis.anomaly_baseline_window"] * 1000)
        loaded = 0
        for kind in anomaly.KINDS:
            reply = client.rollups(kind, since=since, until=now)
            minutes, keys, values = rollup_rows(reply, self.cfg)
            if len(minutes):
                anomaly.seed(self.engine.states[anomaly.NAME], self.engine.ctx, kind, minutes, keys, values)
            loaded += len(minutes)
        return loaded

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
        self.pub.send_multipart([bus.TOPIC_ADVISORY, bus.encode_event(event, self.sequencer)])
        self.counters["advisories_published"] += 1
        log.info("advisory", extra=fields(key=event["key"], state=event["state"], severity=event["severity"],
                                          description=event["description"]))

    def stats(self) -> dict[str, Any]:
        w = self.engine.window
        return {**self.counters, "bus_gaps": self.gaps.total_gaps, "bad_reasons": dict(self.bad_reasons),
                "window_flows": w.size, "late_flows": w.counters["late"], "future_flows": w.counters["future"],
                "overflow_flows": w.counters["overflow"], "runs": w.counters["runs"],
                "open_advisories": len(self.engine.book.open) + len(self.engine.health_book.open),
                "analyzer_cpu_seconds": {k: round(v, 3) for k, v in self.engine.cpu_seconds.items()},
                "analyzer_errors": dict(self.engine.errors),
                "flow_clock": w.clock}

    def _publish_health(self, now: int) -> None:
        body = {"kind": "analyzer", "collector": self.source, "process": process_stats(self.started_at),
                "counters": self.stats(), "listen": [], "socket": [], "exporters": []}
        self.pub.send_multipart([bus.TOPIC_EXPORTER, bus.encode_event(body, self.sequencer)])
        self.counters["health_events"] += 1


def rollup_rows(reply: dict, cfg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The store's rollups reply as (minute numbers, ADDR keys, bytes). Rows may be a map of columns,
    maps or lists (in the order of reply["columns"], else minute, key, bytes, packets, flows); minutes may be ms,
    s or minute numbers; keys an address, a prefix text of our prefix length, or 16 raw bytes."""
    rows = reply.get("rows") or []
    columns = reply.get("columns") or ["minute", "key", "bytes", "packets", "flows"]
    if isinstance(rows, dict):  # columns of equal length: {"minute": [...], "key": [...], ...}
        names = list(rows)
        rows = [dict(zip(names, values)) for values in zip(*(rows[n] for n in names))]
    minutes, keys, values = [], [], []
    for row in rows:
        r = row if isinstance(row, dict) else dict(zip(columns, row))
        try:
            m = int(r["minute"])
            m = m // 60_000 if m > 10**11 else (m // 60 if m > 10**8 else m)
            k = r["key"]
            if isinstance(k, (bytes, bytearray)) and len(k) == 16:
                kb = bytes(k)
            else:
                kb = addr.parse_network(str(k).split("/")[0])[0] if "/" not in str(k) else _prefix_key(str(k), cfg)
            if kb is None:
                continue
            minutes.append(m)
            keys.append(kb)
            values.append(float(r["bytes"]))
        except (KeyError, TypeError, ValueError):
            continue
    if not minutes:
        return np.zeros(0, np.int64), np.zeros(0, "V16"), np.zeros(0)
    return (np.array(minutes, np.int64), np.frombuffer(b"".join(keys), dtype="V16").copy(), np.array(values))


def _prefix_key(text: str, cfg) -> bytes | None:
    lo, _hi, plen = addr.parse_network(text)
    want = cfg["analysis.anomaly_prefix_v4"] if lo[:12] == addr.V4_MAPPED_PREFIX else cfg["analysis.anomaly_prefix_v6"]
    return lo if plen == want else None
