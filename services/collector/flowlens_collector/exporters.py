"""The collector's table of exporters: counters per (exporter address, observation domain), bounded.

At most ``max_exporters`` (exporter, domain) pairs get a row of their own, in the order they are
first heard; a pair beyond the bound is still decoded, but its counters go to one overflow row
(exporter ``other``) that also counts how many distinct pairs and addresses were folded into it.
So a flood of spoofed sources or observation domains costs one row, not one per source. When the
table is full, rows silent for ``idle_ms`` make room (counted as retired), so a flood that passed
does not keep new exporters folded for ever.

The table also remembers which rows changed since it was last read, so a health event can carry
only those (``rows(changed_only=True)``).
"""
from __future__ import annotations

from .decoders.stats import ExporterStats

OVERFLOW = "other"          # the overflow row's exporter text (never an address)
# distinct folded pairs and addresses are counted exactly up to this many each (a set of hashes,
# ~100 bytes per entry, 3 MiB for both at most); past it the counts say "at least" (folded_capped)
FOLDED_EXACT_MAX = 16384


class Stats(ExporterStats):
    """ExporterStats plus the template-state counters the decoder reports (see Decoder.exporter_stats)."""

    __slots__ = ("pending_dropped", "templates_dropped", "time_unknown", "time_ahead_max_s", "reverse_flows")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pending_dropped: dict[str, int] = {}    # reason -> data sets dropped by a bound
        self.templates_dropped: dict[str, int] = {}  # reason -> templates expired or evicted
        self.time_unknown = 0                        # flows whose times had no base (anchored at export)
        self.time_ahead_max_s = 0                    # furthest ahead a flow dropped as time_in_future ended
        self.reverse_flows = 0                       # reverse halves of RFC 5103 biflow records published


class ExporterTable:
    """Rows of (exporter, domain) counters, at most ``max_exporters`` plus the overflow row."""

    def __init__(self, max_exporters: int, idle_ms: int, log=None):
        self.max_exporters = max(1, int(max_exporters))
        self.idle_ms = idle_ms      # a row silent this long may make room for a new one when full
        self._log = log
        self.rows_by_key: dict[tuple[str, int], Stats] = {}
        self.overflow: Stats | None = None
        self._folded_pairs: set[int] = set()
        self._folded_addrs: set[int] = set()
        self.folded_capped = False
        self.retired = 0            # rows dropped to make room (silent for idle_ms while the table was full)
        self._changed: set[tuple[str, int]] = set()
        self._overflow_changed = False

    def __len__(self) -> int:
        return len(self.rows_by_key)

    def get(self, exporter: str, domain: int, now_ms: int, seen: bool = True) -> Stats:
        """The counters of (exporter, domain), or the overflow row's when the table is full.
        ``seen`` False for bookkeeping that is not a packet from it (expiry, eviction)."""
        key = (exporter, domain)
        s = self.rows_by_key.get(key)
        if s is None:
            if len(self.rows_by_key) >= self.max_exporters:
                return self._fold(key, now_ms, seen)
            s = self.rows_by_key[key] = Stats(exporter, domain, now_ms, self._log)
        if seen:
            s.last_seen = now_ms
        self._changed.add(key)
        return s

    def get_tracked(self, exporter: str, domain: int) -> Stats | None:
        return self.rows_by_key.get((exporter, domain))

    def _fold(self, key: tuple[str, int], now_ms: int, seen: bool) -> Stats:
        s = self.overflow
        if s is None:
            s = self.overflow = Stats(OVERFLOW, 0, now_ms, None)  # not logged per datagram: a flood
        self._overflow_changed = True
        if seen:
            s.last_seen = now_ms
            if not self.folded_capped:
                self._folded_pairs.add(hash(key))
                self._folded_addrs.add(hash(key[0]))
                if len(self._folded_pairs) >= FOLDED_EXACT_MAX or len(self._folded_addrs) >= FOLDED_EXACT_MAX:
                    self.folded_capped = True
        return s

    @property
    def folded_pairs(self) -> int:
        return len(self._folded_pairs)

    @property
    def folded_exporters(self) -> int:
        return len(self._folded_addrs)

    def retire_idle(self, now_ms: int) -> int:
        """When the table is full, drop the rows silent for idle_ms (their exporters get a new row
        when they come back). Returns how many went."""
        if len(self.rows_by_key) < self.max_exporters or self.idle_ms <= 0:
            return 0
        cutoff = now_ms - self.idle_ms
        gone = [k for k, s in self.rows_by_key.items() if s.last_seen < cutoff]
        for k in gone:
            del self.rows_by_key[k]
            self._changed.discard(k)
        if gone:
            self.retired += len(gone)
            self._overflow_changed = True
        return len(gone)

    def rows(self, pending: dict, templates: dict, changed_only: bool = False) -> list[dict]:
        """Rows as maps (flowmodel.events.EXPORTER_STATS_FIELDS): every row, or only those changed
        since the last call with ``changed_only`` (which starts the next change set either way).
        ``pending`` (exporter, domain) -> [sets, bytes] and ``templates`` (exporter, domain) ->
        count: what a folded pair holds counts on the overflow row."""
        if changed_only:
            keys = [k for k in self._changed if k in self.rows_by_key]
        else:
            keys = list(self.rows_by_key)
        with_overflow = self.overflow is not None and (self._overflow_changed or not changed_only)
        self._changed = set()
        self._overflow_changed = False
        out = [_row(self.rows_by_key[k], pending.get(k, (0, 0)), templates.get(k, 0)) for k in keys]
        if with_overflow:
            tracked = self.rows_by_key
            held = [0, 0]
            for k, (n, b) in pending.items():
                if k not in tracked:
                    held[0] += n
                    held[1] += b
            row = _row(self.overflow, held, sum(n for k, n in templates.items() if k not in tracked))
            row.update(overflow=True, folded_domains=self.folded_pairs, folded_exporters=self.folded_exporters,
                       folded_capped=self.folded_capped, retired=self.retired, max_exporters=self.max_exporters)
            out.append(row)
        return out


def _row(s: Stats, held, templates: int) -> dict:
    return {
        "exporter": s.exporter, "observation_domain": s.observation_domain, "version": s.version,
        "packets": s.packets, "flows": s.flows, "decode_errors": dict(s.decode_errors),
        "sequence_lost": s.sequence_lost, "sequence_backward": s.sequence_backward,
        "sequence_resets": s.sequence_resets, "enterprise_fields": dict(s.enterprise_fields),
        "nsel_events": dict(s.nsel_events),
        "templates": templates, "templates_dropped": dict(s.templates_dropped),
        "pending_sets": held[0], "pending_bytes": held[1], "pending_expired": s.pending_expired,
        "pending_dropped": dict(s.pending_dropped), "sampling_unknown": s.sampling_unknown,
        "time_unknown": s.time_unknown, "time_ahead_max_s": s.time_ahead_max_s,
        "reverse_flows": s.reverse_flows, "first_seen": s.first_seen,
        "last_seen": s.last_seen,
    }
