"""``flowlens up``: the services of one host as child processes.

Started in order (store, analyzer, web, the notifier when notify.targets is set, the SNMP poller
when snmp.targets is set, collectors), each
waited for until it logs ``ready``; their log lines are forwarded with the service name in front.
A child that exits (at start or later) is restarted after 0.5 s, 1 s, 2 s, ... up to
``max_backoff_s``; the others keep running, so the collectors keep receiving while the store is
away. A child that crashes ``CRASHLOOP_AFTER`` times in a row is crash-looping: a CRITICAL
advisory (topic ``advisory``) names it and quotes its last
error line; it is published again every ``ADVISORY_REPEAT_S`` and when the store comes back (the
store may be the one crash-looping, and a PUB message with no store behind it is lost), and
resolved once the child has stayed up ``stable_after_s``, which also resets its backoff (the
advisory event and its publisher: crashloop.py).
On SIGTERM/SIGINT the collectors stop first, then analyzer and web, the store last, each given
``stop_timeout_s`` to drain and commit, so every flow received is in the store when ``up`` exits.
Children run in their own process group, so a Ctrl-C reaches only the supervisor.
"""
from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from .config import ConfigError, config_from_env_or_path, load_config
from .crashloop import AdvisoryPublisher, Crashloop, crashloop_event
from .logs import fields, setup_logging

log = logging.getLogger("flowmodel.supervisor")

START_ORDER = ("store", "analyzer", "web", "notifier", "poller", "collector")
STOP_RANK = {"collector": 0, "analyzer": 1, "web": 1, "notifier": 1, "poller": 1, "store": 2}

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 300.0     # a crash-looping child is retried at least this often, for as long as up runs
STABLE_AFTER_S = 60.0     # up this long: the backoff starts again from FIRST_BACKOFF_S, the advisory resolves
CRASHLOOP_AFTER = 3       # exits in a row (none stable in between) that make a crash loop
ADVISORY_REPEAT_S = 5.0   # an open advisory is sent again this often (its last_seen moves on; each is held until confirmed)
RESOLVED_REPEATS = 3      # a resolved event is sent this many times, ADVISORY_REPEAT_S apart
STORE_SETTLE_S = 1.0      # after the store logs ready, its bus subscription reaches our PUB within this
STOP_FLUSH_S = 5.0        # at stop, how long the advisories still unconfirmed wait for the store (it stops last)
TAIL_LINES = 40           # output lines kept per child, to quote its last error

# a line that says what went wrong: an error/critical log line, a traceback's last line, "cannot start"
_ERROR_LINE = re.compile(r"level=(error|critical)|\"level\": ?\"(error|critical)\"|^\w*(Error|Exception)\b|"
                         r"cannot|failed|fatal", re.IGNORECASE)


def _is_ready(line: str) -> bool:
    return "msg=ready" in line or '"msg": "ready"' in line


_KV_FIELD = re.compile(r'\b(msg|error)=("(?:[^"\\]|\\.)*"|\S+)')


def _plain(line: str) -> str:
    """A log line as the words in it: ``msg: error`` of a key=value or JSON line, else the line."""
    if line.startswith("{"):
        try:
            record = json.loads(line)
            words = [str(record[k]) for k in ("msg", "error") if record.get(k)]
            return ": ".join(words) or line
        except (ValueError, AttributeError):
            return line
    found = dict((k, v[1:-1].replace('\\"', '"') if v.startswith('"') else v) for k, v in _KV_FIELD.findall(line))
    return ": ".join(found[k] for k in ("msg", "error") if k in found) or line


def last_error(lines) -> str:
    """The last line of a child's output that reads like the reason it stopped (else its last line),
    in plain words."""
    lines = [line.strip() for line in lines if line.strip()]
    for line in reversed(lines):
        if _ERROR_LINE.search(line):
            return _plain(line)[:500]
    return f"no error line; its last line was: {_plain(lines[-1])[:500]}" if lines else "no output"


@dataclass
class Child:
    """One supervised service process."""

    name: str            # label in front of its lines: store, collector, collector-2
    service: str         # the flowlens_<service> module
    config: str | None
    popen: subprocess.Popen | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    tail: deque = field(default_factory=lambda: deque(maxlen=TAIL_LINES))  # its last output lines
    started_at: float = 0.0                         # monotonic time of the last spawn
    crashes: int = 0                                # exits in a row, none of them after a stable run
    restarts: deque = field(default_factory=deque)  # monotonic times of the restarts in the last minute
    restart_at: float | None = None                 # a restart waits for its backoff
    reader: threading.Thread | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", f"flowlens_{self.service}"] + (["--config", self.config] if self.config else [])


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _now_ms() -> int:
    """bus.now_ms, without importing bus (and numpy) into the supervisor."""
    return time.time_ns() // 1_000_000


class Supervisor:
    def __init__(self, children: list[Child], stop_timeout_s: float = 30.0, ready_timeout_s: float = 60.0,
                 max_backoff_s: float = MAX_BACKOFF_S, stable_after_s: float = STABLE_AFTER_S,
                 publish_endpoint: str | None = None, events: dict | None = None, out=None,
                 security: dict | None = None):
        self.children = children
        self.stop_timeout_s = stop_timeout_s
        self.ready_timeout_s = ready_timeout_s
        self.max_backoff_s = max_backoff_s
        self.stable_after_s = stable_after_s
        self.publisher = AdvisoryPublisher(publish_endpoint, events, security)
        self.crashloops: dict[str, Crashloop] = {}
        self._store_was_ready = False
        self.out = out or sys.stderr
        self._out_lock = threading.Lock()
        self._stop = threading.Event()
        self._width = max(len(c.name) for c in children)

    @classmethod
    def from_args(cls, args) -> "Supervisor":
        try:
            cfg = config_from_env_or_path(args.config)
            for extra in args.collector_config:
                load_config(extra)
        except ConfigError as e:
            print(f"flowlens up: {e}", file=sys.stderr)
            raise SystemExit(2) from e
        setup_logging("flowlens", cfg["log.level"], cfg["log.format"])
        wanted = [s.strip() for s in args.services.split(",") if s.strip()]
        unknown = set(wanted) - set(START_ORDER)
        if not wanted:  # an empty list reached max() of no children: a ValueError traceback
            print(f"flowlens up: --services names no service (choose from {', '.join(START_ORDER)})", file=sys.stderr)
            raise SystemExit(2)
        if unknown:
            print(f"flowlens up: unknown service(s) {', '.join(sorted(unknown))}", file=sys.stderr)
            raise SystemExit(2)
        if cfg["notify.targets"] and "store" in wanted and "notifier" not in wanted:
            wanted.append("notifier")  # the fifth service runs where the store does, once it has targets
        elif "notifier" in wanted and not cfg["notify.targets"]:
            print("flowlens up: the notifier needs notify.targets in the config", file=sys.stderr)
            raise SystemExit(2)
        if cfg["report.email_to"] and "store" in wanted and not any(t["type"] == "email" for t in cfg["notify.targets"]):
            # without one nothing would send it (no targets: no notifier), and nothing would say so
            print("flowlens up: report.email_to is set but notify.targets has no email target to send the daily "
                  "report through", file=sys.stderr)
            raise SystemExit(2)
        if cfg["snmp.targets"] and "store" in wanted and "poller" not in wanted:
            wanted.append("poller")  # interface names over SNMP, where the store runs, once it has agents to walk
        elif "poller" in wanted and not cfg["snmp.targets"]:
            print("flowlens up: the poller needs snmp.targets in the config", file=sys.stderr)
            raise SystemExit(2)
        children = [Child(name, name, args.config) for name in START_ORDER if name in wanted]
        children += [Child(f"collector-{i}", "collector", path) for i, path in enumerate(args.collector_config, 2)]
        return cls(children, stop_timeout_s=args.stop_timeout, max_backoff_s=args.max_backoff,
                   stable_after_s=args.stable_after, publish_endpoint=cfg["bus.publish_endpoint"],
                   events={"endpoint": cfg["bus.events_endpoint"], "max_events": cfg["bus.events_unconfirmed_max"],
                           "resend_after_s": cfg["bus.events_resend_timeout"],
                           "high_water_mark": cfg["bus.events_high_water_mark"]},
                   security={k: cfg[k] for k in ("security.client_key", "security.store_public_key")})

    # ------------------------------------------------------------ child processes

    def _spawn(self, child: Child) -> None:
        child.ready.clear()
        child.tail.clear()
        child.started_at = time.monotonic()
        child.popen = subprocess.Popen(child.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True)
        child.reader = threading.Thread(target=self._forward, args=(child, child.popen), daemon=True)
        child.reader.start()
        log.info("started", extra=fields(child=child.name, pid=child.popen.pid))

    def _forward(self, child: Child, popen: subprocess.Popen) -> None:
        prefix = child.name.ljust(self._width) + " | "
        for line in popen.stdout:
            child.tail.append(line)
            if _is_ready(line):
                child.ready.set()
            with self._out_lock:
                self.out.write(prefix + line if line.endswith("\n") else prefix + line + "\n")
                self.out.flush()

    def _wait_ready(self, child: Child, started: list[Child]) -> bool:
        """Wait for ``child``'s ready line, meanwhile minding the ``started`` ones (a slow start must
        not hold up the restart of a crashed one)."""
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline and not self._stop.is_set():
            if child.ready.wait(0.1):
                return True
            if child.popen.poll() is not None:
                return False
            self._tick(started)
        return False

    def _stop_child(self, child: Child) -> None:
        p = child.popen
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(self.stop_timeout_s)
            log.info("stopped", extra=fields(child=child.name, rc=rc))
        except subprocess.TimeoutExpired:
            log.error("did not stop in time, killing", extra=fields(child=child.name, timeout_s=self.stop_timeout_s))
            p.kill()
            p.wait()
        if child.reader:
            child.reader.join(5)

    # ------------------------------------------------------------ lifecycle

    def request_stop(self, *_sig) -> None:
        self._stop.set()

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.request_stop)
        try:
            started: list[Child] = []
            for child in self.children:
                self._spawn(child)
                if self._wait_ready(child, started):
                    started.append(child)
                    continue
                if self._stop.is_set():
                    return 0
                rc = child.popen.poll()
                if rc is None:  # neither ready nor gone: hung at start, which a restart would not cure
                    log.error("service did not become ready", extra=fields(child=child.name,
                              timeout_s=self.ready_timeout_s))
                    return 1
                self._exited(child, rc, time.monotonic())  # failed at start: retried like any crash
                started.append(child)
            failing = [c.name for c in self.children if c.restart_at is not None]
            if failing:
                log.warning("running without the failing services, retrying them", extra=fields(
                    services=",".join(c.name for c in self.children), failing=",".join(failing)))
            else:
                log.info("ready", extra=fields(services=",".join(c.name for c in self.children)))
            return self._watch()
        finally:
            self._resolve_all_at_stop()
            self.stop_all()
            self.publisher.close()

    def _watch(self) -> int:
        while not self._stop.wait(0.2):
            self._tick(self.children)
        return 0

    def _tick(self, children: list[Child]) -> None:
        """Restart what is due, note what exited or has stayed up, send the advisories that are due."""
        now = time.monotonic()
        for child in children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restart_at = None
                    self._spawn(child)
                continue
            rc = child.popen.poll()
            if rc is not None:
                self._exited(child, rc, now)
            elif child.crashes and now - child.started_at >= self.stable_after_s:
                self._stable(child)
        store = next((c for c in children if c.service == "store"), None)
        store_ready = store is not None and store.restart_at is None and store.ready.is_set()
        if store_ready and not self._store_was_ready:  # the store is back: what it missed, soon
            for loop in self.crashloops.values():
                loop.next_send = min(loop.next_send, now + STORE_SETTLE_S)
        self._store_was_ready = store_ready
        self._send_due(now)
        self.publisher.pump()

    # ------------------------------------------------------------ crashes and their advisory

    def _exited(self, child: Child, rc: int, now: float) -> None:
        if child.reader:
            child.reader.join(2)  # its last lines, to quote them
        child.crashes += 1
        delay = min(self.max_backoff_s, FIRST_BACKOFF_S * 2 ** (child.crashes - 1))
        child.restart_at = now + delay
        child.restarts.append(now)
        while now - child.restarts[0] > 60:
            child.restarts.popleft()
        error = f"killed by {_signal_name(-rc)}" if rc < 0 else last_error(child.tail)
        log.warning("service exited, restarting", extra=fields(
            child=child.name, rc=rc, backoff_s=delay, crashes=child.crashes,
            restarts_last_minute=len(child.restarts), error=error))
        if child.crashes < CRASHLOOP_AFTER:
            return
        loop = self.crashloops.get(child.name)
        if loop is None or loop.state == "resolved":
            loop = self.crashloops[child.name] = Crashloop(child.name, _now_ms(), _now_ms(),
                                                           max_backoff_s=self.max_backoff_s)
        else:
            loop.state = "updated"
        loop.crashes, loop.exit_code, loop.backoff_s, loop.error = child.crashes, rc, delay, error
        loop.last_seen_ms = _now_ms()
        log.critical("service is crash-looping, the others keep running", extra=fields(
            child=child.name, crashes=child.crashes, rc=rc, backoff_s=delay, error=error))
        loop.next_send = now  # at once (held until the store confirms it, also when the store is the one down)

    def _stable(self, child: Child) -> None:
        child.crashes = 0
        loop = self.crashloops.get(child.name)
        if loop is None or loop.state == "resolved":
            return
        loop.state = "resolved"
        loop.last_seen_ms = _now_ms()
        loop.next_send = time.monotonic()
        log.warning("service recovered from its crash loop", extra=fields(
            child=child.name, crashes=loop.crashes, up_s=self.stable_after_s))

    def _send_due(self, now: float) -> None:
        for name, loop in list(self.crashloops.items()):
            if now < loop.next_send:
                continue
            if loop.state == "resolved":
                self.publisher.send(crashloop_event(loop, "resolved"))
                loop.resolved_sends += 1
                if loop.resolved_sends >= RESOLVED_REPEATS:
                    del self.crashloops[name]
            else:
                loop.last_seen_ms = _now_ms()
                self.publisher.send(crashloop_event(loop, loop.state))
                loop.state = "updated"
            loop.next_send = now + ADVISORY_REPEAT_S

    def _resolve_all_at_stop(self) -> None:
        """Open crash loops end with the stack: said so before the store stops, so none stays open for good."""
        for loop in self.crashloops.values():
            if loop.state != "resolved":
                loop.last_seen_ms = _now_ms()
                self.publisher.send(crashloop_event(loop, "resolved", note="it is no longer watched: flowlens up stopped."))
        store = next((c for c in self.children if c.service == "store"), None)
        if store is not None and store.restart_at is None and store.ready.is_set():
            self.publisher.flush(STOP_FLUSH_S)  # confirmed before the store stops, or counted at close

    def stop_all(self) -> None:
        """Collectors first, then analyzer and web, the store last; each waited for."""
        for rank in sorted(set(STOP_RANK.values())):
            group = [c for c in self.children if STOP_RANK[c.service] == rank]
            threads = [threading.Thread(target=self._stop_child, args=(c,)) for c in group]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        log.info("all services stopped")
