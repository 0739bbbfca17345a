"""The notifier service: reads the advisories the store received (the advisories op's cursor), turns
each change worth telling into a notification (tracker.py), routes it to targets (routing.py),
groups, rate-limits and retries per target (outbox.py) and delivers on one thread per target
(workers.py, transports.py), so a slow target holds up neither the others nor the reading. Its
place, what it told and what is undelivered live in notify.state_path, written before anything
leaves, so a restart loses and repeats none. Delivery counters travel in a health event (kind
"notifier") on the store's events socket; a target failing notify.failing_after times in a row
raises a WARNING advisory of its own there, resolved by its next delivery.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from flowmodel import bus, curve
from flowmodel.client import StoreClient, StoreError, StoreUnavailable
from flowmodel.eventbox import EventSender
from flowmodel.events import process_stats
from flowmodel.logs import RateLimitedLog, fields
from flowmodel.notes import acknowledged, silence_matches

from . import routing, statefile
from .dailyreport import DailyReport, report_target
from .outbox import TargetOutbox
from .tracker import Tracker
from .workers import DeliveryWorkers

log = logging.getLogger(__name__)

PAGE_ROWS = 1000           # advisories per read of the store
PAGES_PER_POLL = 50        # reads per poll at most; the rest at the next poll
HEALTH_INTERVAL_S = 5.0    # a health event at least this often (and one second after any change)
STATE_IDLE_SAVE_S = 5.0    # the cursor alone (nothing to tell) is saved at most this often
FLUSH_AT_STOP_S = 3.0      # at stop, how long our own advisories wait for the store's confirmation


def target_failing_event(target: dict, outbox: TargetOutbox, state: str, first_seen: int, now: int) -> dict:
    """The notifier's advisory about a target it cannot deliver to (fields per ADVISORY_FIELDS). The
    key is not '<analyzer>:<subject>', so the analyzer never adopts (and resolves) it."""
    name = target["name"]
    resolved = state == "resolved"
    return {"key": f"notifier:target:{name}", "analyzer": "notifier", "subject": name, "severity": "WARNING",
            "state": state, "first_seen": first_seen, "last_seen": now,
            "title": f"Notifications to {name} get through again" if resolved else f"Notifications to {name} fail",
            "description": (f"The {target['type']} target {name} took a message again after failing."
                            if resolved else
                            f"The notifier failed {outbox.failures_in_a_row} times in a row to deliver to the "
                            f"{target['type']} target {name}; it keeps trying with growing waits, and "
                            f"{outbox.stats()['pending']} notifications wait. Last error: {outbox.last_error}"),
            "action": "None needed." if resolved else
            f"Check that {name} is reachable and takes the notifier's messages (address, credentials, TLS).",
            "evidence": {"target": name, "type": target["type"], "failures_in_a_row": outbox.failures_in_a_row,
                         "last_error": outbox.last_error, "window_start": first_seen, "window_end": now},
            "filter": {}}


def _site(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/..."


class NotifierService:
    def __init__(self, cfg, clock=lambda: time.time_ns() // 1_000_000):
        self.cfg = cfg
        self.clock = clock
        self.targets = {t["name"]: t for t in cfg["notify.targets"]}
        self.rules = cfg["notify.rules"]
        self.state_path = cfg["notify.state_path"]
        self.source = bus.default_source_id("notifier")
        self.sequencer = bus.Sequencer(self.source)
        self.tracker = Tracker(tracked_max=cfg["notify.tracked_max"])
        self.outboxes = {name: TargetOutbox(name, int(cfg["notify.group_wait"] * 1000),
                                            int(cfg["notify.group_interval"] * 1000), cfg["notify.queue_max"],
                                            int(cfg["notify.retry_max_backoff"] * 1000),
                                            int(cfg["notify.retry_for"] * 1000)) for name in self.targets}
        self.failing: dict[str, int] = {}   # target -> first_seen of its open "failing" advisory
        options = {"public_url": cfg["web.public_url"], "max_items": cfg["notify.max_items"],
                   "timeout_s": cfg["notify.send_timeout"]}
        self.workers = DeliveryWorkers(self.targets, options)  # a delivery thread per target (workers.py)
        self.client: StoreClient | None = None
        self.events: EventSender | None = None
        self.daily: DailyReport | None = None  # the daily report by email (report.email_to), made at start
        self.started_at = clock()
        self.counters = {"polls": 0, "store_errors": 0, "notifications": 0, "unrouted": 0, "acknowledged": 0,
                         "silenced": 0, "state_saves": 0, "state_errors": 0, "loop_errors": 0}
        self.acks: dict[str, dict] = {}      # advisory key -> its acknowledgement (flowmodel.notes)
        self.silences: list[dict] = []       # silences in force
        self._notes_seen: set = set()        # (kind, id, created_at, expires_at) of the notes last read
        self._stop = threading.Event()
        self._dirty = False
        self._last_save = 0.0
        self._next_health = 0.0
        self._health_due = False
        self._rl = RateLimitedLog(log)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if not self.targets:
            raise ValueError("notify.targets is empty: there is nowhere to send notifications")
        target = report_target(self.cfg)
        if target is not None:
            self.daily = DailyReport(self.cfg, target, self.clock)
        state = statefile.load(self.state_path)
        if state is not None:
            self.tracker = Tracker.from_state(state.get("tracker") or {}, self.cfg["notify.tracked_max"])
            for name, ob_state in (state.get("targets") or {}).items():
                if name in self.outboxes:
                    self.outboxes[name].load_state(ob_state)
                else:
                    log.warning("a target in the state file is no longer configured; its notifications are dropped",
                                extra=fields(target=name, notifications=len(ob_state.get("pending") or [])))
            self.failing = {k: int(v) for k, v in (state.get("failing") or {}).items() if k in self.targets}
            if self.daily is not None:
                self.daily.load_state(state.get("report") or {})
        statefile.save(self.state_path, self._state())  # the file is writable, or the start fails here
        # retries=0: a store that does not answer costs one query.timeout per poll, then the next poll tries
        self.client = StoreClient.from_config(self.cfg, retries=0)
        self.events = EventSender(self.cfg["bus.events_endpoint"], self.source, self.cfg["bus.events_unconfirmed_max"],
                                  self.cfg["bus.events_resend_timeout"], self.cfg["bus.events_high_water_mark"],
                                  keys=curve.client_keys(self.cfg)).start()  # CURVE when security.* names keys
        self.workers.start()

    def request_stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        next_poll = 0.0
        poll_s = self.cfg["notify.poll_interval"]
        while not self._stop.is_set():
            try:
                mono = time.monotonic()
                if mono >= next_poll:
                    next_poll = mono + poll_s
                    self.poll()
                self.turn()
                wait = max(0.0, min(next_poll - time.monotonic(), self._next_due_s(), 0.2))
                self._collect(wait)
            except Exception:
                self.counters["loop_errors"] += 1
                log.exception("notifier loop error")
                self._stop.wait(0.5)

    def stop(self) -> None:
        """Let deliveries under way end (each within notify.send_timeout), save the state, send the
        last health event and our advisories; safe twice."""
        deadline = time.monotonic() + self.cfg["notify.send_timeout"] + 1
        while self.workers.any_busy() and time.monotonic() < deadline:
            self._collect(0.1)
        while self.daily is not None and self.daily.busy and time.monotonic() < deadline:
            if not self.daily.collect():
                time.sleep(0.05)
        self.workers.stop()
        if self.client is not None:
            self._save(force=True)
        if self.events is not None and self.events.sock is not None:
            self._send_health()
            if self.events.outbox.pending and not self.events.flush(FLUSH_AT_STOP_S):
                log.warning("notifier advisories not confirmed by the store at stop",
                            extra=fields(advisories=len(self.events.outbox.pending)))
            self.events.close()
        if self.client is not None:
            self.client.close()
            self.client = None

    # ------------------------------------------------------------ the work

    def poll(self) -> int:
        """Read what the store received since the cursor; route what is worth telling. Returns the
        number of notifications routed."""
        self.counters["polls"] += 1
        after, after_key, routed = self.tracker.query_after(), None, 0
        for _page in range(PAGES_PER_POLL):
            try:
                rows = self.client.advisories(after=after, after_key=after_key, limit=PAGE_ROWS)
            except (StoreError, StoreUnavailable) as e:
                self.counters["store_errors"] += 1
                self._rl.warning("store", "cannot read advisories from the store", error=str(e)[:300],
                                 store_errors=self.counters["store_errors"])
                break
            if rows or _page == 0:
                # read after the rows: a note the store took before an advisory row read here is seen
                self._refresh_notes()
            notes = self.tracker.take(rows)
            now = self.clock()
            for note in notes:
                reason = self._suppressed(note, now)
                if reason:
                    self.counters[reason] += 1
                    self.tracker.untold(note["key"])
                    continue
                names = routing.route(note, self.rules, self.targets)
                if not names:
                    self.counters["unrouted"] += 1
                for name in names:
                    self.outboxes[name].add(note, now)
                    routed += 1
            self.counters["notifications"] += len(notes)
            if notes:
                self._dirty = self._health_due = True
            if len(rows) < PAGE_ROWS:
                self.tracker.caught_up()
                break
            after, after_key = rows[-1]["received_at"], rows[-1]["key"]
        self._save()
        return routed

    def _refresh_notes(self) -> None:
        """Read the acknowledgements and silences in force; a new one takes back the notifications it
        covers that still wait (counted as suppressed per target)."""
        try:
            rows = self.client.notes(active=True)
        except (StoreError, StoreUnavailable) as e:
            self.counters["store_errors"] += 1
            self._rl.warning("notes", "cannot read acknowledgements and silences; using the last ones read",
                             error=str(e)[:300])
            return
        self.acks = {n["id"]: n for n in rows if n.get("kind") == "ack"}
        self.silences = [n for n in rows if n.get("kind") == "silence"]
        seen = {(n.get("kind"), n.get("id"), n.get("created_at"), n.get("expires_at")) for n in rows}
        if seen - self._notes_seen:
            now = self.clock()
            taken = sum(ob.discard(lambda n: self._suppressed(n, now) is not None) for ob in self.outboxes.values())
            if taken:
                self._dirty = self._health_due = True
                log.info("waiting notifications taken back by an acknowledgement or silence", extra=fields(notifications=taken))
        self._notes_seen = seen

    def _suppressed(self, note: dict, now: int) -> str | None:
        """'acknowledged' or 'silenced' when an operator's note covers ``note``, else None."""
        if acknowledged(self.acks.get(note.get("key")), note):
            return "acknowledged"
        if any(silence_matches(s, note, now) for s in self.silences):
            return "silenced"
        return None

    def turn(self) -> None:
        """Hand due messages to idle workers; raise or resolve our own advisories; health; events."""
        now = self.clock()
        for name, ob in self.outboxes.items():
            if self.workers.busy(name):
                continue
            message = ob.due(now)
            if message is None:
                continue
            if message.attempts == 0 and message.next_try_ms == 0:
                message.next_try_ms = now  # a cut message: saved before it leaves, so a crash keeps it
                self._dirty = True
                self._save(force=True)
            self.workers.hand(name, message)
        self._own_advisories(now)
        self._daily_report(now)
        mono = time.monotonic()
        if mono >= self._next_health or (self._health_due and mono >= self._next_health - HEALTH_INTERVAL_S + 1):
            self._send_health()  # every HEALTH_INTERVAL_S, and a second after a change
        if self.events is not None:
            self.events.pump()

    def _collect(self, wait_s: float) -> int:
        """Take the workers' results (waiting up to ``wait_s`` for the first)."""
        n = 0
        for name, message, ok, error in self.workers.finished(wait_s):
            self.outboxes[name].result(message, ok, self.clock(), error)
            if ok:
                log.info("delivered", extra=fields(target=name, message=message.id, notifications=len(message.items),
                                                   attempts=message.attempts))
            else:
                self._rl.warning(f"fail-{name}", "delivery failed", target=name, message=message.id,
                                 attempts=message.attempts, error=error[:300])
            n += 1
        if n:
            self._dirty = self._health_due = True
            self._save(force=True)
        return n

    def _next_due_s(self) -> float:
        now = self.clock()
        times = [t for ob in self.outboxes.values() if (t := ob.next_event_ms()) is not None]
        return max(0.0, (min(times) - now) / 1000) if times else 1.0

    def _own_advisories(self, now: int) -> None:
        for name, ob in self.outboxes.items():
            if ob.failures_in_a_row >= self.cfg["notify.failing_after"] and name not in self.failing:
                self.failing[name] = now
                self._send_advisory(target_failing_event(self.targets[name], ob, "raised", now, now))
                log.warning("target failing, advisory raised", extra=fields(target=name, error=ob.last_error[:300]))
            elif ob.failures_in_a_row == 0 and name in self.failing:
                first = self.failing.pop(name)
                self._send_advisory(target_failing_event(self.targets[name], ob, "resolved", first, now))
                log.info("target delivers again, advisory resolved", extra=fields(target=name))
            else:
                continue
            self._dirty = True
            self._save(force=True)

    def _daily_report(self, now: int) -> None:
        """Take the report thread's result (saved at once: a restart must not send it again), or
        start the report of the day before when it is due."""
        if self.daily is None:
            return
        if self.daily.collect():
            self._dirty = self._health_due = True
            self._save(force=True)
        if not self.daily.busy:
            day = self.daily.due_day(now)
            if day is not None:
                self.daily.start(day, now)

    def _send_advisory(self, event: dict) -> None:
        if self.events is not None:
            self.events.send(bus.TOPIC_ADVISORY, event, lambda b: bus.encode_event(b, self.sequencer))

    # ------------------------------------------------------------ state and health

    def _state(self) -> dict:
        return {"tracker": self.tracker.to_state(), "targets": {n: ob.to_state() for n, ob in self.outboxes.items()},
                "failing": self.failing, "report": self.daily.to_state() if self.daily is not None else {}}

    def _save(self, force: bool = False) -> None:
        mono = time.monotonic()
        if not (self._dirty or force or mono - self._last_save >= STATE_IDLE_SAVE_S):
            return
        try:
            statefile.save(self.state_path, self._state())
            self.counters["state_saves"] += 1
            self._dirty = False
            self._last_save = mono
        except OSError as e:
            self.counters["state_errors"] += 1
            self._rl.warning("state", "cannot save the notifier state", path=self.state_path, error=str(e))

    def stats(self) -> dict[str, Any]:
        return {**self.counters, "cursor_ms": self.tracker.cursor_ms, "tracked": len(self.tracker.keys),
                "forgotten": self.tracker.forgotten, "rows_read": self.tracker.rows_read,
                "targets": {**{name: ob.stats() for name, ob in self.outboxes.items()},
                            **({self.daily.name: self.daily.stats()} if self.daily is not None else {})},
                **{f"advisories_{k}": v for k, v in (self.events.stats() if self.events else {}).items()}}

    def config_report(self) -> dict:
        """The effective notify keys for the About page, passwords and headers left out."""
        out = {}
        for key, value in self.cfg.items():
            if key.startswith(("notify.", "report.", "query.", "bus.events")):
                if key == "notify.targets":  # a webhook's path is often its secret (Slack, Teams)
                    value = [{k: ("(set)" if k in ("password", "headers") and v else
                                  _site(v) if k == "url" else v) for k, v in t.items()} for t in value]
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        return out

    def _send_health(self) -> None:
        self._next_health = time.monotonic() + HEALTH_INTERVAL_S
        self._health_due = False
        if self.events is None:
            return
        body = {"kind": "notifier", "collector": self.source, "process": process_stats(self.started_at),
                "counters": self.stats(), "listen": [], "socket": [], "exporters": [], "config": self.config_report()}
        self.events.send_snapshot(bus.TOPIC_EXPORTER, bus.encode_event(body, self.sequencer))
