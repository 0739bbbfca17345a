"""Silences (flowmodel.notes) in the analyzer: a finding a silence in force matches is not published,
so an authorised scanner does not raise the same CRITICAL every minute. ``Silencer`` is pure (the
caller passes the clock); ``SilenceReader`` is the thread that reads the silences from the store
(the ``notes`` op) every few seconds, so a store that is slow or away never holds up analysis.

An advisory the store already has when a silence starts is left to resolve as usual (its resolution
is published); one that was silenced from its start never reaches the store, and neither does its
resolution. When the silence ends while the finding persists, its next update is published and the
store opens it then.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from flowmodel.logs import RateLimitedLog
from flowmodel.notes import silence_matches

log = logging.getLogger(__name__)

NEVER_SHOWN_MAX = 100_000  # keys silenced from their start remembered at most (the oldest forgotten)


class Silencer:
    def __init__(self):
        self.silences: list[dict] = []
        self.never_shown: dict[str, None] = {}   # keys whose raise was silenced (insertion ordered)
        self.silenced = 0                        # events not published

    def set_silences(self, rows: list[dict]) -> None:
        self.silences = [r for r in rows if isinstance(r, dict) and r.get("kind") == "silence"]

    def admit(self, event: dict[str, Any], now_ms: int) -> bool:
        """True: publish ``event``; False: a silence holds it (counted)."""
        key = event.get("key")
        if event.get("state") == "resolved":
            if key in self.never_shown:
                del self.never_shown[key]
                self.silenced += 1
                return False
            return True
        if any(silence_matches(s, event, now_ms) for s in self.silences):
            if event.get("state") == "raised":
                self.never_shown[key] = None
                while len(self.never_shown) > NEVER_SHOWN_MAX:
                    del self.never_shown[next(iter(self.never_shown))]
            self.silenced += 1
            return False
        self.never_shown.pop(key, None)
        return True


class SilenceReader:
    """Reads the silences in force from the store every ``interval_s`` into ``silencer``."""

    def __init__(self, cfg, silencer: Silencer, interval_s: float):
        self.cfg = cfg
        self.silencer = silencer
        self.interval_s = interval_s
        self.reads = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="silences", daemon=True)
        self._rl = RateLimitedLog(log, 60.0)

    def start(self) -> "SilenceReader":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # a read under way ends at its query.timeout; the thread is a daemon
        if self._thread.is_alive():
            self._thread.join(0.5)

    def _run(self) -> None:
        from flowmodel.client import StoreClient, StoreError, StoreUnavailable

        client = StoreClient.from_config(self.cfg, retries=0)
        try:
            while not self._stop.is_set():
                try:
                    self.silencer.set_silences(client.notes(kind="silence", active=True))
                    self.reads += 1
                except (StoreError, StoreUnavailable) as e:  # keep the last silences read
                    self.failed += 1
                    self._rl.warning("read", "cannot read silences from the store; using the last ones read",
                                     error=str(e)[:300], failed=self.failed)
                self._stop.wait(self.interval_s)
        finally:
            client.close()
