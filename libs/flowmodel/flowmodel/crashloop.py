"""The crash-loop advisory of ``flowlens up``: what the supervisor knows about one crash-looping
child (``Crashloop``), the advisory event it makes of it, and the publisher that delivers the
supervisor's own advisories to the store (held until confirmed) and to bus subscribers.
supervisor.py decides when a child is crash-looping and when each event is due.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from .logs import fields

log = logging.getLogger(__name__)


@dataclass
class Crashloop:
    """The advisory about one crash-looping child, while it is open and a few sends after it resolves."""

    child: str
    first_seen_ms: int
    last_seen_ms: int
    max_backoff_s: float         # the supervisor's cap on its restart backoff, quoted in the advisory
    crashes: int = 0
    exit_code: int | None = None
    backoff_s: float = 0.0
    error: str = ""
    state: str = "raised"        # raised, updated, resolved
    next_send: float = 0.0       # monotonic
    resolved_sends: int = 0


def crashloop_event(loop: Crashloop, state: str, note: str = "") -> dict:
    """An advisory event (fields per flowmodel.events.ADVISORY_FIELDS) about a crash-looping child.
    The key is not '<analyzer>:<subject>' on purpose: the analyzer takes over open advisories whose
    key it would make itself, and this one is the supervisor's to resolve."""
    if state == "resolved":
        description = (f"The {loop.child} service crashed {loop.crashes} times in a row; "
                       + (note or f"it has now stayed up and runs normally. Its last error was: {loop.error}"))
    else:
        retry = (f"every {loop.max_backoff_s:g} s" if loop.backoff_s >= loop.max_backoff_s else
                 f"after {loop.backoff_s:g} s, then after longer waits up to {loop.max_backoff_s:g} s")
        description = (f"The {loop.child} service crashed {loop.crashes} times in a row (last exit code "
                       f"{loop.exit_code}); flowlens up restarts it {retry}, and the other services keep running. "
                       f"Its last error: {loop.error}")
    return {"key": f"supervisor:crashloop:{loop.child}", "analyzer": "supervisor", "subject": loop.child,
            "severity": "CRITICAL", "state": state, "first_seen": loop.first_seen_ms, "last_seen": loop.last_seen_ms,
            "title": f"{loop.child} keeps crashing" if state != "resolved" else f"{loop.child} crash loop over",
            "description": description,
            "action": (f"Read the lines marked '{loop.child} |' in the output of flowlens up and fix their cause "
                       "(often the config, a file or port it cannot open, or a full disk); it is restarted by "
                       "itself and this clears once it stays up." if state != "resolved" else "None needed."),
            "evidence": {"service": loop.child, "crashes": loop.crashes, "exit_code": loop.exit_code,
                         "backoff_s": loop.backoff_s, "last_error": loop.error,
                         "window_start": loop.first_seen_ms, "window_end": loop.last_seen_ms},
            "filter": {}}


class AdvisoryPublisher:
    """The supervisor's own advisories: sent to the store on the events socket and held until it
    confirms them (flowmodel.eventbox; a store that is down gets them once it is back), and
    published on the bus for subscribers. zmq and the envelope code are imported on the first send,
    so a stack that never crash-loops pays nothing for them."""

    def __init__(self, endpoint: str | None, events: dict | None = None, security: dict | None = None):
        self.endpoint = endpoint
        self.events = events  # EventSender's endpoint, max_events, resend_after_s, high_water_mark; None: bus only
        self.security = security or {}  # security.client_key and security.store_public_key (flowmodel.curve)
        self._sock = None
        self._sender = None
        self._sequencer = None

    def send(self, event: dict) -> None:
        if not self.endpoint and not self.events:
            return
        import zmq

        from . import bus, curve

        if self._sequencer is None:
            self._ctx = zmq.Context.instance()
            self._sequencer = bus.Sequencer(bus.default_source_id("supervisor"))
            keys = curve.client_keys({"security.client_key": "", "security.store_public_key": "", **self.security})
            if self.endpoint:
                self._sock = self._ctx.socket(zmq.PUB)
                self._sock.setsockopt(zmq.LINGER, 0)
                curve.connect_securely(self._sock, self.endpoint, keys)
            if self.events:
                from .eventbox import EventSender

                self._sender = EventSender(source=self._sequencer.source, context=self._ctx, keys=keys,
                                           **self.events).start()
        if self._sender is not None:
            body = self._sender.send(bus.TOPIC_ADVISORY, event, lambda b: bus.encode_event(b, self._sequencer))
        else:
            body = bus.encode_event(event, self._sequencer)
        if self._sock is not None:
            try:
                self._sock.send_multipart([bus.TOPIC_ADVISORY, body], zmq.NOBLOCK)
            except zmq.Again:  # PUB drops rather than blocks; the store has its copy from the events socket
                pass

    def pump(self) -> None:
        """Confirmations in, what is due out (each turn of the supervisor's loop)."""
        if self._sender is not None:
            self._sender.pump()

    def flush(self, timeout_s: float) -> bool:
        """Wait (at most timeout_s) until the store confirmed every advisory sent; True when it did."""
        return self._sender.flush(timeout_s) if self._sender is not None else True

    def close(self) -> None:
        if self._sender is not None:
            left = len(self._sender.outbox.pending)
            if left:
                log.warning("advisories not confirmed by the store, lost with flowlens up", extra=fields(advisories=left))
            self._sender.close()
            self._sender = None
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
