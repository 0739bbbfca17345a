"""Where a page's time went, per request, sent back as a W3C ``Server-Timing`` header
(browsers' developer tools show it; the benchmark reads it).

Parts, in milliseconds, summed over the request's store turns:
- ``lane``: waiting for a turn on a lane (StoreLanes) or for a free store connection (StoreGate);
- ``store``: the store's answers, round trip on the query socket;
- ``resume``: from a query's thread ending to the page's handler running again (a busy event loop);
- ``render``: building the page from its template;
- ``app``: the whole request inside the application (the rest is this process's own work).
The record rides in a context variable: the threads a page's queries run on get a copy of the
context, so they add to the same record.
"""
from __future__ import annotations

import contextvars
import threading
import time

PARTS = ("lane", "store", "resume", "render")


class RequestTimings:
    """Seconds spent per part by one request (added to from the loop and from query threads)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {}

    def add(self, part: str, seconds: float) -> None:
        with self._lock:
            self.seconds[part] = self.seconds.get(part, 0.0) + max(0.0, seconds)

    def header(self, app_s: float) -> bytes:
        """The Server-Timing value: each part seen, then the whole request inside the app."""
        with self._lock:
            parts = [(p, self.seconds[p]) for p in PARTS if p in self.seconds]
        parts.append(("app", app_s))
        return ", ".join(f"{name};dur={s * 1000:.1f}" for name, s in parts).encode("ascii")


current: contextvars.ContextVar[RequestTimings | None] = contextvars.ContextVar("flowlens_request_timings",
                                                                                 default=None)


def add(part: str, seconds: float) -> None:
    """Add to the current request's record (nothing outside a request: tests, /healthz's own threads)."""
    record = current.get()
    if record is not None:
        record.add(part, seconds)


class timed:
    """``with timed("render"): ...`` adds the block's wall time to the current request's part."""

    def __init__(self, part: str):
        self.part = part
        self.t0 = 0.0

    def __enter__(self) -> "timed":
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        add(self.part, time.perf_counter() - self.t0)


def parse(value: str) -> dict[str, float]:
    """A Server-Timing header's ``name;dur=ms`` entries as {name: ms} (what the benchmark reads)."""
    out: dict[str, float] = {}
    for entry in value.split(","):
        name, _, params = entry.strip().partition(";")
        for param in params.split(";"):
            key, _, ms = param.strip().partition("=")
            if key == "dur" and name:
                try:
                    out[name] = float(ms)
                except ValueError:
                    pass
    return out
