"""``flowlens up``: the services of one host as child processes.

Started in order (store, analyzer, web, collectors), each waited for until it logs ``ready``; their
log lines are forwarded with the service name in front; a crashed one is restarted with backoff,
at most ``max_restarts`` times a minute (then everything stops, since a crash loop needs a person).
On SIGTERM/SIGINT the collectors stop first, then analyzer and web, the store last, each given
``stop_timeout_s`` to drain and commit, so every flow received is in the store when ``up`` exits.
Children run in their own process group, so a Ctrl-C reaches only the supervisor.
"""
from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from .config import ConfigError, config_from_env_or_path, load_config
from .logs import fields, setup_logging

log = logging.getLogger("flowmodel.supervisor")

START_ORDER = ("store", "analyzer", "web", "collector")
STOP_RANK = {"collector": 0, "analyzer": 1, "web": 1, "store": 2}


def _is_ready(line: str) -> bool:
    return "msg=ready" in line or '"msg": "ready"' in line


@dataclass
class Child:
    """One supervised service process."""

    name: str            # label in front of its lines: store, collector, collector-2
    service: str         # the flowlens_<service> module
    config: str | None
    popen: subprocess.Popen | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    restarts: deque = field(default_factory=deque)  # monotonic times of recent restarts
    restart_at: float | None = None                 # a restart waits for its backoff
    reader: threading.Thread | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", f"flowlens_{self.service}"] + (["--config", self.config] if self.config else [])


class Supervisor:
    def __init__(self, children: list[Child], stop_timeout_s: float = 30.0, ready_timeout_s: float = 60.0,
                 max_restarts: int = 5, out=None):
        self.children = children
        self.stop_timeout_s = stop_timeout_s
        self.ready_timeout_s = ready_timeout_s
        self.max_restarts = max_restarts
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
        if unknown:
            print(f"flowlens up: unknown service(s) {', '.join(sorted(unknown))}", file=sys.stderr)
            raise SystemExit(2)
        children = [Child(name, name, args.config) for name in START_ORDER if name in wanted]
        children += [Child(f"collector-{i}", "collector", path) for i, path in enumerate(args.collector_config, 2)]
        return cls(children, stop_timeout_s=args.stop_timeout)

    # ------------------------------------------------------------ child processes

    def _spawn(self, child: Child) -> None:
        child.ready.clear()
        child.popen = subprocess.Popen(child.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True)
        child.reader = threading.Thread(target=self._forward, args=(child, child.popen), daemon=True)
        child.reader.start()
        log.info("started", extra=fields(child=child.name, pid=child.popen.pid))

    def _forward(self, child: Child, popen: subprocess.Popen) -> None:
        prefix = child.name.ljust(self._width) + " | "
        for line in popen.stdout:
            if _is_ready(line):
                child.ready.set()
            with self._out_lock:
                self.out.write(prefix + line if line.endswith("\n") else prefix + line + "\n")
                self.out.flush()

    def _wait_ready(self, child: Child) -> bool:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline and not self._stop.is_set():
            if child.ready.wait(0.1):
                return True
            if child.popen.poll() is not None:
                return False
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
        rc = 0
        try:
            for child in self.children:
                self._spawn(child)
                if not self._wait_ready(child):
                    if not self._stop.is_set():
                        log.error("service did not become ready", extra=fields(child=child.name,
                                  rc=child.popen.poll(), timeout_s=self.ready_timeout_s))
                        rc = 1
                    return rc
            log.info("ready", extra=fields(services=",".join(c.name for c in self.children)))
            rc = self._watch()
            return rc
        finally:
            self.stop_all()

    def _watch(self) -> int:
        while not self._stop.wait(0.2):
            now = time.monotonic()
            for child in self.children:
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        child.restart_at = None
                        self._spawn(child)
                    continue
                rc = child.popen.poll()
                if rc is None:
                    continue
                while child.restarts and now - child.restarts[0] > 60:
                    child.restarts.popleft()
                if len(child.restarts) >= self.max_restarts:
                    log.error("crashing too often, stopping everything", extra=fields(
                        child=child.name, rc=rc, restarts_last_minute=len(child.restarts)))
                    return 1
                delay = min(30.0, 0.5 * 2 ** len(child.restarts))
                child.restarts.append(now)
                child.restart_at = now + delay
                log.warning("service exited, restarting", extra=fields(
                    child=child.name, rc=rc, backoff_s=delay, restarts_last_minute=len(child.restarts)))
        return 0

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
