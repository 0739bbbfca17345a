"""What the store behind the web can do, learnt by asking and remembered a minute: its exporter and
interface names (the ``names`` op) and whether its flows op sorts (``order``). A store that does
not know one yet (an older store, or one mid-upgrade) answers with an error: the pages then go
without it and ask again a minute later.

Each method runs on a store client the caller already holds (inside ``StoreGate.call``), so a page
asks in the same turn as its own query and never waits for a second connection. One instance serves
every page (app.py makes it), so the names are asked once a minute whichever page needs them.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from flowmodel.client import StoreClient, StoreError

from .namebook import NameBook

log = logging.getLogger(__name__)

RECHECK_S = 60.0  # how long an answer (or a refusal) is kept; names change rarely (SNMP polls hourly)


class StoreFeatures:
    def __init__(self, clock: Callable[[], float] = time.monotonic, recheck_s: float = RECHECK_S):
        self.clock = clock
        self.recheck_s = recheck_s
        self._lock = threading.Lock()
        self._names: tuple[float, NameBook] | None = None
        self._order: tuple[float, bool] | None = None

    def _fresh(self, entry) -> bool:
        return entry is not None and self.clock() - entry[0] < self.recheck_s

    def fresh_names(self) -> NameBook | None:
        """The names while they are fresh, else None (then ask with ``names``)."""
        with self._lock:
            return self._names[1] if self._fresh(self._names) else None

    def names(self, client: StoreClient) -> NameBook:
        """The store's names (an empty book while it has no ``names`` op)."""
        book = self.fresh_names()
        if book is not None:
            return book
        try:
            book = NameBook.from_reply(client.request("names"))
        except StoreError as e:
            log.debug("store gives no names", extra={"fields": {"error": str(e)}})
            book = NameBook()
        with self._lock:
            self._names = (self.clock(), book)
        return book

    def sorts_flows(self, client: StoreClient, now_ms: int) -> bool:
        """True when the store's flows op takes ``order=bytes`` (asked with a one-row page of the last
        minute, so the question is cheap)."""
        with self._lock:
            if self._fresh(self._order):
                return self._order[1]
        try:
            client.request("flows", limit=1, order="bytes", since=now_ms - 60_000, until=now_ms)
            ok = True
        except StoreError:
            ok = False
        with self._lock:
            self._order = (self.clock(), ok)
        return ok
