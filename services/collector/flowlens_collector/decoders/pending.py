"""Data sets waiting for their template: a v9/IPFIX data set whose template has not arrived yet is
held (its bytes, export time and uptime) until the template comes, it ages out, or a bound drops it.

Keys are template keys (exporter, UDP port, version, domain, template id). Each held set is charged
its length plus PENDING_SET_OVERHEAD (a new queue PENDING_QUEUE_OVERHEAD) against a per-exporter and
a global byte budget; when the global one is full the oldest queue goes first. Every set not held
or dropped is counted on its exporter's ``pending_dropped`` by reason, every expired one on its
``pending_expired``.
"""
from __future__ import annotations

from collections import deque

# what one held data set costs beyond its bytes (bytes object, tuple, ints, deque slot: 92 B per
# 1-byte set measured with tracemalloc): charged so floods of tiny sets are bounded too
PENDING_SET_OVERHEAD = 128
PENDING_QUEUE_OVERHEAD = 1024  # a new queue (deque, key tuple, dict slot): ~1 KB measured with tracemalloc


def _bump(counts: dict, reason: str, n: int = 1) -> None:
    counts[reason] = counts.get(reason, 0) + n


class PendingSets:
    """Held data sets per template key, oldest queue first; ``acct`` (collector Accounting) takes
    the counts of sets dropped or expired on exporters other than the one being decoded."""

    def __init__(self, acct, max_bytes: int, total_max_bytes: int, max_age_ms: int):
        self.acct = acct
        self.max_bytes = max_bytes            # per exporter, charged bytes
        self.total_max_bytes = total_max_bytes
        self.max_age_ms = max_age_ms
        self.queues: dict[tuple, deque] = {}  # template key -> (body, export_ms, uptime, received_ms)
        self._bytes: dict[str, int] = {}      # per exporter, charged (length + overhead)
        self.total = 0                        # charged bytes of all queues

    def __len__(self) -> int:
        return len(self.queues)

    def hold(self, key: tuple, body, st, export_ms: int, uptime, now_ms: int) -> bool:
        """Keep a non-empty data set for ``key`` until its template comes. False when a bound
        refused it (counted on ``st``, the stats of its exporter)."""
        host = key[0]
        charge = len(body) + PENDING_SET_OVERHEAD + (0 if key in self.queues else PENDING_QUEUE_OVERHEAD)
        if self._bytes.get(host, 0) + charge > self.max_bytes:
            _bump(st.pending_dropped, "exporter_bound")
            return False
        if charge > self.total_max_bytes:  # would not fit even alone: drop nobody else for it
            _bump(st.pending_dropped, "global_bound")
            return False
        while self.total + charge > self.total_max_bytes and self.queues:
            self.drop_queue(next(iter(self.queues)), "global_bound", now_ms)  # the oldest queue goes first
        if self.total + charge > self.total_max_bytes:
            _bump(st.pending_dropped, "global_bound")
            return False
        q = self.queues.get(key)
        if q is None:
            q = self.queues[key] = deque()
        q.append((bytes(body), export_ms, uptime, now_ms))
        self._bytes[host] = self._bytes.get(host, 0) + charge
        self.total += charge
        return True

    def take(self, key: tuple) -> list:
        """The sets held for ``key`` (its template just came), oldest first, no longer held."""
        q = self.queues.pop(key, None)
        if not q:
            return []
        self._release(key[0], PENDING_QUEUE_OVERHEAD + sum(len(e[0]) + PENDING_SET_OVERHEAD for e in q))
        return list(q)

    def drop_queue(self, key: tuple, reason: str, now_ms: int) -> None:
        q = self.queues.pop(key, None)
        if not q:
            return
        self._release(key[0], sum(len(e[0]) for e in q) + PENDING_SET_OVERHEAD * len(q) + PENDING_QUEUE_OVERHEAD)
        _bump(self.acct.stats(key[0], key[3], now_ms, seen=False).pending_dropped, reason, len(q))

    def drop_session(self, session: tuple, reason: str, now_ms: int) -> None:
        """Every queue of a transport session (exporter, port, version, domain)."""
        for key in [k for k in self.queues if k[:4] == session]:
            self.drop_queue(key, reason, now_ms)

    def expire(self, now_ms: int) -> None:
        """Sets held longer than max_age_ms go, counted on their exporter as pending_expired."""
        cutoff = now_ms - self.max_age_ms
        for key in list(self.queues):
            q = self.queues[key]
            dropped = 0
            while q and q[0][3] <= cutoff:
                body = q.popleft()[0]
                self._release(key[0], len(body) + PENDING_SET_OVERHEAD)
                dropped += 1
            if dropped:
                self.acct.stats(key[0], key[3], now_ms, seen=False).pending_expired += dropped
            if not q:
                del self.queues[key]
                self._release(key[0], PENDING_QUEUE_OVERHEAD)

    def by_stats_key(self) -> dict:
        """(exporter, domain) -> [data sets held, their bytes]."""
        out: dict = {}
        for k, q in self.queues.items():
            sk = (k[0], k[3])
            v = out.get(sk)
            if v is None:
                v = out[sk] = [0, 0]
            v[0] += len(q)
            v[1] += sum(len(e[0]) for e in q)
        return out

    def _release(self, host: str, charged: int) -> None:
        self.total = max(0, self.total - charged)
        left = self._bytes.get(host, 0) - charged
        if left > 0:
            self._bytes[host] = left
        else:
            self._bytes.pop(host, None)
