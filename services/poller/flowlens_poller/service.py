"""The poller service: walks the IF-MIB of every agent in snmp.targets at start and every
snmp.interval (snmp.concurrency at once, one pysnmp engine per walk so targets never share USM
state), and publishes each exporter's whole table on the bus (topic ``interfaces``,
flowmodel.events.INTERFACE_EVENT_FIELDS, origin "snmp"). It publishes through an XPUB, so it sees
the subscriptions reaching it: a table walked before any subscriber is held, and every table is
sent again when a subscriber appears (a store that starts or restarts later). Failed walks are
counted per target in a health event (kind "poller") on the store's events socket, logged at a
limited rate, retried after snmp.retry_interval, and after snmp.failing_after in a row raise a
WARNING advisory there, resolved by the target's next good walk. At start it takes over the ones an
earlier run left open (asked of the store's query socket), so a poller that was killed leaves none
open for good.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import zmq

from flowmodel import bus, curve
from flowmodel.client import StoreClient, StoreError, StoreUnavailable
from flowmodel.eventbox import EventSender
from flowmodel.events import process_stats
from flowmodel.logs import RateLimitedLog, fields
from flowmodel.snmpconf import redacted

from . import ifmib, snmp
from .targets import Schedule, TargetState, target_failing_event

log = logging.getLogger(__name__)

TICK_S = 0.2               # the loop looks at subscriptions, confirmations and due walks this often
HEALTH_INTERVAL_S = 10.0   # a health event this often (and after each walk)
WALK_DEADLINE_S = 300.0    # one agent's whole walk, however it answers; past it the walk has failed
FLUSH_AT_STOP_S = 3.0      # at stop, how long our advisories wait for the store's confirmation
ADOPT_LIMIT = 10_000       # open poller advisories taken over from the store at start


class PollerService:
    def __init__(self, cfg, context: zmq.Context | None = None):
        self.cfg = cfg
        self.targets = {t["exporter"]: t for t in cfg["snmp.targets"]}
        self.schedule = Schedule(list(self.targets), cfg["snmp.interval"], cfg["snmp.retry_interval"],
                                 cfg["snmp.failing_after"])
        self.source = bus.default_source_id("poller")
        self.sequencer = bus.Sequencer(self.source)
        self.counters = {"events_published": 0, "events_unsent": 0, "events_held": 0, "subscriptions": 0,
                         "loop_errors": 0, "adopted_advisories": 0}
        self.subscriptions: set[bytes] = set()   # topic prefixes subscribed to that take interfaces events
        self.pub: zmq.Socket | None = None
        self.events: EventSender | None = None
        self._ctx = context
        self._own_ctx = context is None
        self._stop = threading.Event()
        self._health_due = False
        self.started_at = bus.now_ms()
        self._rl = RateLimitedLog(log)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if not self.targets:
            raise ValueError("snmp.targets is empty: there is no SNMP agent to walk")
        keys = curve.client_keys(self.cfg)  # CURVE to the store's sockets when security.* names keys
        self._ctx = self._ctx or zmq.Context()
        self.pub = self._ctx.socket(zmq.XPUB)  # sends like PUB, and tells us who subscribes
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.setsockopt(zmq.SNDHWM, self.cfg["bus.high_water_mark"])
        self.pub.setsockopt(zmq.MAXMSGSIZE, bus.SUBSCRIPTION_MAX_BYTES)  # it reads subscriptions only
        curve.connect_securely(self.pub, self.cfg["bus.publish_endpoint"], keys)
        self.events = EventSender(self.cfg["bus.events_endpoint"], self.source, self.cfg["bus.events_unconfirmed_max"],
                                  self.cfg["bus.events_resend_timeout"], self.cfg["bus.events_high_water_mark"],
                                  context=self._ctx, keys=keys).start()
        self._adopt_open_advisories()

    def request_stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        asyncio.run(self._main())

    def stop(self) -> None:
        """Resolve our open advisories (nobody watches those targets once we are gone), send the last
        health event, wait a little for the store's confirmations, close; safe twice."""
        if self.events is not None and self.events.sock is not None:
            now = bus.now_ms()
            for s in self.schedule.states.values():
                if s.failing_since_ms is not None:
                    self._advise(s.exporter, "resolved", now, note=(
                        f"The poller stopped while the SNMP agent of exporter {s.exporter} still failed; "
                        "nobody watches it until the poller runs again."))
            self._send_health()
            if self.events.outbox.pending and not self.events.flush(FLUSH_AT_STOP_S):
                log.warning("poller advisories not confirmed by the store at stop",
                            extra=fields(advisories=len(self.events.outbox.pending)))
            self.events.close()
        self.events = None
        if self.pub is not None:
            self.pub.close(linger=0)
            self.pub = None
        if self._own_ctx and self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    # ------------------------------------------------------------ the loop

    async def _main(self) -> None:
        walks: set[asyncio.Task] = set()
        concurrency = self.cfg["snmp.concurrency"]
        next_health = 0.0
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                for exporter in self.schedule.due(now)[:max(0, concurrency - len(walks))]:
                    self.schedule.started(exporter)
                    task = asyncio.create_task(self._walk(exporter), name=f"walk-{exporter}")
                    walks.add(task)
                    task.add_done_callback(walks.discard)
                self._read_subscriptions()
                self.events.pump()
                if now >= next_health or self._health_due:
                    self._send_health()
                    next_health = now + HEALTH_INTERVAL_S
            except Exception:
                self.counters["loop_errors"] += 1
                log.exception("poller loop error")
            await asyncio.sleep(TICK_S)
        for task in walks:
            task.cancel()
        await asyncio.gather(*walks, return_exceptions=True)

    async def _walk(self, exporter: str) -> None:
        """Walk one agent; publish its table or count the failure."""
        target = self.targets[exporter]
        t0 = time.monotonic()
        engine = snmp.SnmpEngine()
        try:
            walk = await asyncio.wait_for(
                snmp.walk_ifmib(engine, target, self.cfg["snmp.timeout"], self.cfg["snmp.retries"],
                                self.cfg["snmp.max_interfaces"]), WALK_DEADLINE_S)
            interfaces, left_out = ifmib.interfaces_from_columns(walk.rows, self.cfg["snmp.max_interfaces"])
            if not interfaces:
                raise snmp.PollError(f"{target['host']}:{target['port']}: the agent answered but gave no IF-MIB "
                                     "rows (is IF-MIB in the view its community or user may read?)")
        except asyncio.CancelledError:
            raise
        except (snmp.PollError, asyncio.TimeoutError) as e:
            self._failed(exporter, str(e) or f"the walk took longer than {WALK_DEADLINE_S:g} s")
            return
        except Exception as e:  # a pysnmp surprise or a bug: a failed walk, with its traceback
            log.exception("walk raised", extra=fields(exporter=exporter))
            self._failed(exporter, f"internal error: {e!r}")
            return
        finally:
            engine.close_dispatcher()
        cut = left_out + (1 if walk.cut and not left_out else 0)
        event = ifmib.interface_event(exporter, interfaces, bus.now_ms())
        if self.schedule.walked(exporter, time.monotonic(), event["learnt_at"], event, cut) == "resolved":
            self._advise(exporter, "resolved", event["learnt_at"])
        self._publish(event)
        self._health_due = True
        log.info("walked", extra=fields(exporter=exporter, host=target["host"], interfaces=len(interfaces),
                                        cut=bool(cut), ms=round((time.monotonic() - t0) * 1000)))

    def _failed(self, exporter: str, error: str) -> None:
        s = self.schedule.states[exporter]
        if self.schedule.failed(exporter, time.monotonic(), error) == "raised":
            self._advise(exporter, "raised", bus.now_ms())
            log.warning("target failing, advisory raised", extra=fields(exporter=exporter, error=error[:300]))
        self._health_due = True
        self._rl.warning(f"walk-{exporter}", "walk failed", exporter=exporter, error=error[:300],
                         failures_in_a_row=s.failures_in_a_row, retry_in_s=self.cfg["snmp.retry_interval"])

    def _advise(self, exporter: str, state: str, now_ms: int, note: str = "") -> None:
        s = self.schedule.states[exporter]
        if state == "raised":
            s.failing_since_ms = now_ms
        event = target_failing_event(s, state, self.targets[exporter]["host"], self.cfg["snmp.failing_after"],
                                     now_ms, note)
        if state == "resolved":
            s.failing_since_ms = None
        if self.events is not None:
            self.events.send(bus.TOPIC_ADVISORY, event, lambda b: bus.encode_event(b, self.sequencer))

    def _adopt_open_advisories(self) -> None:
        """Advisories an earlier run raised and could not resolve (it was killed): targets still
        configured keep theirs until a good walk; the others are resolved now."""
        client = StoreClient.from_config(self.cfg, retries=0)
        try:
            rows = client.request("advisories", analyzer="poller", state="raised,updated",
                                  limit=ADOPT_LIMIT).get("advisories") or []
        except (StoreError, StoreUnavailable) as e:
            log.warning("open advisories not read from the store; ones an earlier run raised stay open there",
                        extra=fields(reason=str(e)))
            return
        finally:
            client.close()
        gone = self.schedule.adopt(rows)
        now = bus.now_ms()
        for row in gone:
            s = TargetState(str(row["subject"]), failing_since_ms=int(row.get("first_seen") or now))
            host = str((row.get("evidence") or {}).get("host") or s.exporter)
            event = target_failing_event(s, "resolved", host, self.cfg["snmp.failing_after"], now, note=(
                f"Exporter {s.exporter} is no longer in snmp.targets, so the poller does not walk it any more."))
            self.events.send(bus.TOPIC_ADVISORY, event, lambda b: bus.encode_event(b, self.sequencer))
        self.counters["adopted_advisories"] = len(rows)
        if rows:
            log.info("open advisories taken over from the store",
                     extra=fields(advisories=len(rows), resolved_unconfigured=len(gone)))

    # ------------------------------------------------------------ the bus

    def _publish(self, event: dict) -> None:
        if not self.subscriptions:  # nobody would get it: held (the schedule keeps it) until someone subscribes
            self.counters["events_held"] += 1
            return
        try:
            self.pub.send_multipart([bus.TOPIC_INTERFACES, bus.encode_event(event, self.sequencer)], zmq.NOBLOCK)
            self.counters["events_published"] += 1
        except zmq.Again:  # the bus is away or full: the next walk, or the next subscription, sends it again
            self.counters["events_unsent"] += 1

    def _read_subscriptions(self) -> None:
        """Drain the XPUB's (un)subscription messages; a new subscriber to interfaces events gets
        every table we hold."""
        appeared = False
        while True:
            try:
                msg = self.pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if not msg or not bus.TOPIC_INTERFACES.startswith(msg[1:]):
                continue
            if msg[0] == 1:
                self.counters["subscriptions"] += 1
                self.subscriptions.add(msg[1:])
                appeared = True
            elif msg[0] == 0:  # the last subscriber to that prefix went (a store stopping)
                self.subscriptions.discard(msg[1:])
        if appeared:
            held = [s.event for s in self.schedule.states.values() if s.event is not None]
            for event in held:
                self._publish(event)
            if held:
                log.info("tables sent to a new subscriber", extra=fields(exporters=len(held)))

    # ------------------------------------------------------------ health

    def config_report(self) -> dict:
        """The effective snmp, bus and log keys, communities and keys shown as '(set)'."""
        out = {}
        for key, value in self.cfg.items():
            if key.startswith(("snmp.", "bus.", "log.")):
                if key == "snmp.targets":
                    value = [redacted(t) for t in value[:100]]
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        return out

    def stats(self) -> dict[str, Any]:
        return {**self.counters, **self.schedule.health(),
                **{f"advisories_{k}": v for k, v in (self.events.stats() if self.events else {}).items()}}

    def _send_health(self) -> None:
        self._health_due = False
        if self.events is None:
            return
        body = {"kind": "poller", "collector": self.source, "process": process_stats(self.started_at),
                "counters": self.stats(), "listen": [], "socket": [], "exporters": [], "config": self.config_report()}
        self.events.send_snapshot(bus.TOPIC_EXPORTER, bus.encode_event(body, self.sequencer))
