"""What keeps slow or half-open connections from exhausting the web or flooding its log.

- ``ConnectionGuard`` + ``guarded_protocol``: uvicorn's h11 protocol with a deadline on the request
  head (``web.header_timeout``, from the connection's start or its last answer) and on the body
  (``web.body_timeout``), and a bound on open connections (``web.max_connections``): past it the
  oldest connection still waiting for a request head (idle keep-alive or half-sent) is closed to
  make room; if every connection is being answered, the new one gets a bare 503.
- ``LogRateLimit``: a logging filter that lets each kind of message (logger + message template)
  through ``per_minute`` times a minute and counts the rest into the next line of that kind.
- ``raise_open_files``: the soft open-file limit up to the hard one, and the connection bound kept
  under it, so accept() never fails for want of descriptors.
"""
from __future__ import annotations

import collections
import logging
import resource
import time
from typing import Callable

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from flowmodel.logs import RateLimitedLog

log = logging.getLogger(__name__)

RESERVED_FILES = 64  # descriptors kept for the store sockets, log, static files, TLS
REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\n"
           b"Content-Length: 41\r\nConnection: close\r\n\r\nFlowLens is answering too many requests.\n")


class ConnectionGuard:
    """Counts and the connections waiting for a request head (oldest first), shared by every
    connection of one server."""

    def __init__(self, max_connections: int, header_timeout_s: float, body_timeout_s: float):
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self.open = 0
        self.waiting: collections.OrderedDict = collections.OrderedDict()  # protocol -> None
        self.counts = {"header_timeouts": 0, "body_timeouts": 0, "evicted": 0, "refused": 0}
        self._log = RateLimitedLog(log, 10.0)

    def note(self, what: str, **kv) -> None:
        self.counts[what] += 1
        self._log.warning(what, f"connection closed: {what.replace('_', ' ')}", total=self.counts[what],
                          open=self.open, **kv)

    def admit(self, proto) -> bool:
        """Called for each new connection; False: refuse it (everything else is being answered)."""
        self.open += 1
        if self.open <= self.max_connections:
            return True
        victim = next((c for c in self.waiting if c is not proto), None)
        if victim is not None:
            self.note("evicted", client=_client(victim))
            victim.close_now()
            return True
        self.note("refused", client=_client(proto))
        return False

    def stats(self) -> dict:
        return {"open": self.open, "waiting_for_request": len(self.waiting), **self.counts}


def _client(proto) -> str:
    return proto.client[0] if getattr(proto, "client", None) else "?"


def guarded_protocol(guard: ConnectionGuard) -> type:
    """An H11Protocol subclass bound to ``guard`` (uvicorn builds one per connection)."""

    class GuardedH11Protocol(H11Protocol):
        _timer = None
        _phase = ""
        _counted = False

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._counted = True
            if not guard.admit(self):
                transport.write(REFUSED)
                transport.close()
                return
            self._expect_head()

        def connection_lost(self, exc) -> None:
            self._cancel()
            guard.waiting.pop(self, None)
            if self._counted:
                self._counted = False
                guard.open -= 1
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._follow()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._follow()

        def close_now(self) -> None:
            self._cancel()
            guard.waiting.pop(self, None)
            if not self.transport.is_closing():
                self.transport.close()

        # -------------------------------------------------------------- phases

        def _follow(self) -> None:
            if self.transport is None or self.transport.is_closing():
                return
            state = self.conn.their_state
            if state is h11.IDLE:
                self._expect_head()
            elif state is h11.SEND_BODY:
                if self._phase != "body":
                    guard.waiting.pop(self, None)
                    self._arm("body", guard.body_timeout_s)
            elif self._phase != "serving":
                guard.waiting.pop(self, None)
                self._cancel()
                self._phase = "serving"

        def _expect_head(self) -> None:
            if self._phase == "head":
                return
            guard.waiting[self] = None
            self._arm("head", guard.header_timeout_s)

        def _arm(self, phase: str, seconds: float) -> None:
            self._cancel()
            self._phase = phase
            self._timer = self.loop.call_later(seconds, self._expired, phase)

        def _cancel(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expired(self, phase: str) -> None:
            self._timer = None
            if self.transport.is_closing() or self._phase != phase:
                return
            guard.note("header_timeouts" if phase == "head" else "body_timeouts", client=_client(self))
            self.close_now()

    return GuardedH11Protocol


class LogRateLimit(logging.Filter):
    """At most ``per_minute`` records of one kind (logger, message template) per minute; the next
    record of that kind that passes carries ``suppressed=N``. Kinds are bounded (oldest forgotten)."""

    MAX_KINDS = 1000

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.per_minute = per_minute
        self.clock = clock
        self._kinds: collections.OrderedDict = collections.OrderedDict()  # kind -> [window start, passed, held back]
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        kind = (record.name, record.msg if isinstance(record.msg, str) else type(record.msg).__name__)
        now = self.clock()
        entry = self._kinds.get(kind)
        if entry is None:
            entry = self._kinds[kind] = [now, 0, 0]
            while len(self._kinds) > self.MAX_KINDS:
                self._kinds.popitem(last=False)
        elif now - entry[0] >= 60.0:
            entry[0], entry[1] = now, 0
        if entry[1] >= self.per_minute:
            entry[2] += 1
            self.suppressed += 1
            return False
        entry[1] += 1
        if entry[2]:
            record.fields = {**(getattr(record, "fields", None) or {}), "suppressed": entry[2]}
            entry[2] = 0
        return True


def raise_open_files(max_connections: int) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns (connections allowed, soft limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, max_connections + RESERVED_FILES)
    if want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return max(1, min(max_connections, soft - RESERVED_FILES)), soft
