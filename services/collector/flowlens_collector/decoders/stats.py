"""Per-exporter accounting: counters per (exporter address, observation domain) and sequence tracking."""
from __future__ import annotations

import numpy as np


class ExporterStats:
    """Counters of one (exporter, observation domain), per flowmodel.events.EXPORTER_STATS_FIELDS."""

    __slots__ = ("exporter", "observation_domain", "version", "packets", "flows", "decode_errors",
                 "sequence_lost", "sequence_backward", "sequence_resets", "sampling_unknown", "pending_expired",
                 "enterprise_fields", "nsel_events", "first_seen", "last_seen", "_log")

    def __init__(self, exporter: str, observation_domain: int, now_ms: int, log=None):
        self.exporter = exporter
        self.observation_domain = observation_domain
        self.version = 0
        self.packets = 0
        self.flows = 0
        self.decode_errors: dict[str, int] = {}
        self.sequence_lost = 0
        self.sequence_backward = 0
        self.sequence_resets = 0
        self.sampling_unknown = 0
        self.pending_expired = 0
        # enterprise-specific IPFIX fields seen in decoded data records: name (or "PEN/id") -> records
        self.enterprise_fields: dict[str, int] = {}
        # Cisco ASA NSEL firewall events (IE 233) of decoded records: event name -> records, and
        # "create_dropped" = flow-create records not published (their teardown carries the totals)
        self.nsel_events: dict[str, int] = {}
        self.first_seen = now_ms
        self.last_seen = now_ms
        self._log = log  # a flowmodel.logs.RateLimitedLog, or None

    def error(self, reason: str, n: int = 1) -> None:
        self.decode_errors[reason] = self.decode_errors.get(reason, 0) + n
        if self._log is not None:
            self._log.warning(f"{self.exporter}:{reason}", "bad export datagram", exporter=self.exporter,
                              observation_domain=self.observation_domain, reason=reason,
                              total=self.decode_errors[reason])

    def count_into(self, name: str, counts: dict, n: int) -> None:
        """Add ``counts`` (key -> records) to the map attribute ``name``, bounded to MAX_KEYS keys."""
        m = getattr(self, name)
        for k, v in counts.items():
            if k in m or len(m) < self.MAX_KEYS:
                m[k] = m.get(k, 0) + v * n
            else:
                m["other"] = m.get("other", 0) + v * n

    MAX_KEYS = 64


_MOD = 0xFFFFFFFF


class SequenceTracker:
    """Sequence accounting per stream (exporter, port, version, domain): what was lost, what came late.

    What a unit is depends on the version (v5 flows, v9 export packets, IPFIX data records); the
    caller passes how many units each packet carries. Per stream we keep the expected next number and
    the last MAX_HOLES holes (ranges skipped by a forward jump, counted in ``sequence_lost``):

    - a forward jump of less than MAX_LOSS_GAP units counts the skipped units as lost and remembers
      the hole;
    - a packet behind the expected number that lands in a remembered hole arrived late (reordered):
      its units come back off ``sequence_lost`` and the hole shrinks; the expected number stays;
    - any packet behind the expected number counts one ``sequence_backward``;
    - a reset (exporter restart, counter reset) restarts the accounting at the packet without
      counting a loss: a backward jump of more than REORDER_WINDOW units outside any hole, two
      backward packets in a row that continue each other outside any hole (a restarted exporter
      counting again: one backward jump, one reset), or a forward jump of MAX_LOSS_GAP units or more (e.g. a counter that was
      above 2^31 starting again from 0, which modulo 2^32 looks like a forward jump of up to 2^31).
      Counted in ``sequence_resets``.

    A single stray packet behind the expected number outside any hole (a duplicate, or a late packet
    whose hole was forgotten) is only counted as backward. A "restart" whose next packet carries the
    number expected before it was a duplicated pair after all: the reset is taken back (two backward).
    """

    __slots__ = ("max_streams", "_next", "_holes", "_stray", "_undo")

    MAX_STREAMS = 65536       # default bound of the streams tracked; past it all start again (a flood of sources)
    MAX_HOLES = 32            # per stream: late packets older than the last 32 holes are not matched
    REORDER_WINDOW = 1 << 16  # units; further back than this outside any hole is a reset at once
    MAX_LOSS_GAP = 1 << 24    # units; a forward jump this large is a discontinuity, not a loss

    def __init__(self, max_streams: int = MAX_STREAMS):
        self.max_streams = max_streams
        self._next: dict[tuple, int] = {}
        self._holes: dict[tuple, list] = {}   # stream -> [[start, length], ...] oldest first
        self._stray: dict[tuple, int] = {}    # stream -> the number after the last stray backward packet
        self._undo: dict[tuple, int] = {}     # stream -> the number expected before a stray-confirmed reset

    def _new_stream(self) -> None:
        if len(self._next) >= self.max_streams:
            self._next.clear()  # bound memory under a flood of spoofed sources
            self._holes.clear()
            self._stray.clear()
            self._undo.clear()

    def observe(self, stream: tuple, sequence: int, units: int, stats: ExporterStats) -> None:
        expected = self._next.get(stream)
        nxt = (sequence + units) & _MOD
        if self._undo:
            before = self._undo.pop(stream, None)
            if before is not None and sequence == before:  # the "restart" was a duplicated pair
                stats.sequence_resets -= 1
                stats.sequence_backward += 1
                self._next[stream] = nxt
                return
        if expected is None:
            self._new_stream()
        elif sequence == expected:
            if self._stray:
                self._stray.pop(stream, None)
        else:
            gap = (sequence - expected) & _MOD
            if gap < 0x80000000:  # forward
                if gap >= self.MAX_LOSS_GAP:
                    self._reset(stream, stats)
                else:
                    stats.sequence_lost += gap
                    holes = self._holes.get(stream)
                    if holes is None:
                        holes = self._holes[stream] = []
                    elif len(holes) >= self.MAX_HOLES:
                        del holes[0]
                    holes.append([expected, gap])
                    self._stray.pop(stream, None)
            elif self._stray.get(stream) == sequence and not self._in_hole(stream, sequence):
                self._reset(stream, stats)  # the stray's successor: a restarted counter (one jump, counted)
                self._undo[stream] = expected  # ... unless the next packet is the one expected before
            else:
                stats.sequence_backward += 1
                if self._fill(stream, sequence, units, stats):
                    return  # a late packet: the expected number stays
                if (expected - sequence) & _MOD > self.REORDER_WINDOW:
                    self._reset(stream, stats)
                else:
                    self._stray[stream] = nxt
                    return
        self._next[stream] = nxt

    def _in_hole(self, stream: tuple, sequence: int) -> bool:
        return any((sequence - start) & _MOD < length for start, length in self._holes.get(stream, ()))

    def _fill(self, stream: tuple, sequence: int, units: int, stats: ExporterStats) -> bool:
        """A backward packet inside a remembered hole: take its units back off lost. Whether it was."""
        holes = self._holes.get(stream)
        if not holes:
            return False
        for i, (start, length) in enumerate(holes):
            off = (sequence - start) & _MOD
            if off < length:
                cover = min(units, length - off)
                stats.sequence_lost -= cover
                rest = length - off - cover
                parts = ([[start, off]] if off else []) + ([[(sequence + cover) & _MOD, rest]] if rest else [])
                holes[i:i + 1] = parts
                if not holes:
                    del self._holes[stream]
                return True
        return False

    def _reset(self, stream: tuple, stats: ExporterStats) -> None:
        stats.sequence_resets += 1
        self._holes.pop(stream, None)
        self._stray.pop(stream, None)

    def observe_many(self, stream: tuple, sequences: np.ndarray, units: np.ndarray, stats: ExporterStats) -> None:
        """``observe`` for several packets of one stream, in arrival order, from arrays."""
        if len(sequences) == 1:
            self.observe(stream, int(sequences[0]), int(units[0]), stats)
            return
        seqs = sequences.astype(np.int64)
        nxt = (seqs + units) & _MOD
        expected = self._next.get(stream)
        if expected is not None and stream in self._undo:
            pass  # a pending restart check: packet by packet below
        elif (expected is None or expected == seqs[0]) and (seqs[1:] == nxt[:-1]).all():  # in order: the usual case
            if expected is None:
                self._new_stream()
            elif self._stray:
                self._stray.pop(stream, None)
            self._next[stream] = int(nxt[-1])
            return
        else:
            # only forward jumps short of a discontinuity (packets lost under load): still in arrays
            before = np.empty(len(seqs), np.int64)
            before[0] = seqs[0] if expected is None else expected
            before[1:] = nxt[:-1]
            gaps = (seqs - before) & _MOD
            if (gaps < self.MAX_LOSS_GAP).all():
                if expected is None:
                    self._new_stream()
                stats.sequence_lost += int(gaps.sum())
                hit = np.flatnonzero(gaps)[-self.MAX_HOLES:]
                if len(hit):
                    holes = self._holes.setdefault(stream, [])
                    holes.extend([int(b), int(g)] for b, g in zip(before[hit].tolist(), gaps[hit].tolist()))
                    del holes[:-self.MAX_HOLES]
                self._stray.pop(stream, None)
                self._next[stream] = int(nxt[-1])
                return
        for s, u in zip(seqs.tolist(), np.broadcast_to(units, seqs.shape).tolist()):
            self.observe(stream, s, u, stats)

    def expected(self) -> dict[tuple, int]:
        """stream -> the sequence number expected next (a copy: what a restart should continue from)."""
        return dict(self._next)

    def restore(self, stream: tuple, expected: int) -> None:
        """Continue ``stream`` from a saved expected number: its next packet counts the gap since."""
        if stream not in self._next:
            self._new_stream()
        self._next[stream] = int(expected) & _MOD

    def forget(self, stream: tuple) -> None:
        self._next.pop(stream, None)
        self._holes.pop(stream, None)
        self._stray.pop(stream, None)
        self._undo.pop(stream, None)
