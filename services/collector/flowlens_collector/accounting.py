"""Per-exporter accounting in one place: who sent a datagram, its (exporter, domain) counters and its
sequence numbering. The Decoder makes one and passes it to each protocol's decoder (v5, the
templated v9/IPFIX decoder, sFlow), which books what it decodes here instead of calling back into
the Decoder.

Bounds: the exporter table holds at most max_exporters rows (exporters.py); the source and address
caches and the sequence streams hold STATE_PER_EXPORTER times as many (a source may use several
ports and versions), and past it start again empty.
"""
from __future__ import annotations

import numpy as np

from flowmodel import addr
from flowmodel.schema import ADDR

from .decoders.stats import ExporterStats, SequenceTracker
from .exporters import ExporterTable

STATE_PER_EXPORTER = 4


class Accounting:
    """Counters per (exporter, observation domain), sequence tracking per stream (exporter, UDP
    port, version, domain), and the cached identity of each UDP source."""

    def __init__(self, max_exporters: int, idle_ms: int, log=None):
        self.exporters = ExporterTable(max_exporters, idle_ms, log)
        self.state_max = STATE_PER_EXPORTER * self.exporters.max_exporters
        self.seq = SequenceTracker(self.state_max)
        self._sources: dict[tuple, tuple[str, int, bytes]] = {}
        self._exporter_addrs: dict[str, np.void] = {}
        self._address_texts: dict[bytes, str] = {}

    def stats(self, exporter: str, domain: int, now_ms: int, seen: bool = True) -> ExporterStats:
        """The counters of (exporter, domain); ``seen`` False for bookkeeping that is not a packet
        from it (expiry, eviction): last_seen stays the time of its last packet."""
        return self.exporters.get(exporter, domain, now_ms, seen)

    def sequence(self, stream: tuple, sequence: int, units: int, stats: ExporterStats) -> None:
        self.seq.observe(stream, sequence, units, stats)

    def sequence_many(self, stream: tuple, sequences: np.ndarray, units: np.ndarray, stats: ExporterStats) -> None:
        self.seq.observe_many(stream, sequences, units, stats)

    def forget_sequence(self, stream: tuple) -> None:
        self.seq.forget(stream)

    def source(self, src) -> tuple[str, int, bytes]:
        """(host text, port, 16-byte address) of a recvfrom source, cached."""
        s = self._sources.get(src)
        if s is None:
            host = str(src[0]).split("%", 1)[0]
            try:
                raw = addr.to_bytes(host)
                host = addr.to_text(raw)
            except Exception:
                raw = bytes(16)
            if len(self._sources) >= self.state_max:
                self._sources.clear()
            s = self._sources[src] = (host, int(src[1]) if len(src) > 1 else 0, raw)
        return s

    def address_text(self, raw: bytes) -> str:
        """The text of a 16-byte address (an sFlow agent's), cached: each run of datagrams names
        its agent once, and formatting an address costs as much as booking the run."""
        text = self._address_texts.get(raw)
        if text is None:
            if len(self._address_texts) >= self.state_max:
                self._address_texts.clear()
            text = self._address_texts[raw] = addr.to_text(raw)
        return text

    def exporter_addr(self, host: str):
        """The exporter column value (an ADDR scalar) of an exporter given as text, cached."""
        a = self._exporter_addrs.get(host)
        if a is None:
            if len(self._exporter_addrs) >= self.state_max:
                self._exporter_addrs.clear()
            try:
                raw = addr.to_bytes(host)
            except Exception:
                raw = bytes(16)
            a = self._exporter_addrs[host] = np.frombuffer(raw, dtype=ADDR)[0]
        return a
