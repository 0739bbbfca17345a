"""Per-exporter accounting: counters per (exporter address, observation domain) and sequence tracking."""
from __future__ import annotations

import numpy as np


class ExporterStats:
    """Counters of one (exporter, observation domain), per flowmodel.events.EXPORTER_STATS_FIELDS."""

    __slots__ = ("exporter", "observation_domain", "version", "packets", "flows", "decode_errors",
                 "sequence_lost", "sequence_backward", "sampling_unknown", "pending_expired",
                 "first_seen", "last_seen", "_log")

    def __init__(self, exporter: str, observation_domain: int, now_ms: int, log=None):
        self.exporter = exporter
        self.observation_domain = observation_domain
        self.version = 0
        self.packets = 0
        self.flows = 0
        self.decode_errors: dict[str, int] = {}
        self.sequence_lost = 0
        self.sequence_backward = 0
        self.sampling_unknown = 0
        self.pending_expired = 0
        self.first_seen = now_ms
        self.last_seen = now_ms
        self._log = log  # a flowmodel.logs.RateLimitedLog, or None

    def error(self, reason: str, n: int = 1) -> None:
        self.decode_errors[reason] = self.decode_errors.get(reason, 0) + n
        if self._log is not None:
            self._log.warning(f"{self.exporter}:{reason}", "bad export datagram", exporter=self.exporter,
                              observation_domain=self.observation_domain, reason=reason,
                              total=self.decode_errors[reason])


class SequenceTracker:
    """Expected next sequence number per stream; forward jumps counted as lost, backward apart.

    What a unit is depends on the version (v5 flows, v9 export packets, IPFIX data records); the
    caller passes how many units this packet carries.
    """

    __slots__ = ("_next",)

    MAX_STREAMS = 65536

    def __init__(self):
        self._next: dict[tuple, int] = {}

    def observe(self, stream: tuple, sequence: int, units: int, stats: ExporterStats) -> None:
        expected = self._next.get(stream)
        if expected is not None and sequence != expected:
            gap = (sequence - expected) & 0xFFFFFFFF
            if gap < 0x80000000:
                stats.sequence_lost += gap
            else:
                stats.sequence_backward += 1
        elif expected is None and len(self._next) >= self.MAX_STREAMS:
            self._next.clear()  # bound memory under a flood of spoofed sources
        self._next[stream] = (sequence + units) & 0xFFFFFFFF

    def observe_many(self, stream: tuple, sequences: np.ndarray, units: np.ndarray, stats: ExporterStats) -> None:
        """``observe`` for several packets of one stream, in arrival order, from arrays."""
        if len(sequences) == 1:
            self.observe(stream, int(sequences[0]), int(units[0]), stats)
            return
        seqs = sequences.astype(np.int64)
        nxt = (seqs + units) & 0xFFFFFFFF
        expected = self._next.get(stream)
        if (expected is None or expected == seqs[0]) and (seqs[1:] == nxt[:-1]).all():  # in order: the usual case
            if expected is None and len(self._next) >= self.MAX_STREAMS:
                self._next.clear()
            self._next[stream] = int(nxt[-1])
            return
        if expected is None:
            if len(self._next) >= self.MAX_STREAMS:
                self._next.clear()
            gaps = (seqs[1:] - nxt[:-1]) & 0xFFFFFFFF
        else:
            gaps = (seqs - np.concatenate(([expected], nxt[:-1]))) & 0xFFFFFFFF
        forward = gaps < 0x80000000  # 0 = in order
        stats.sequence_lost += int(gaps[forward].sum())
        stats.sequence_backward += len(gaps) - int(np.count_nonzero(forward))
        self._next[stream] = int(nxt[-1])

    def forget(self, stream: tuple) -> None:
        self._next.pop(stream, None)
