"""Advisory lifecycle: folds each run's findings into advisory events keyed '<analyzer>:<subject>'.

A key is raised the first time it is found, updated when its severity or figures change
materially (or every analysis.update_every while it persists, so last_seen stays current), and
resolved once it has been absent for analysis.resolve_after. Times are the clock the caller passes
(flow time for the flow analyzers, wall time for health), so a replay folds the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowmodel.events import ADVISORY_FIELDS

from .common import Finding


@dataclass
class _Entry:
    finding: Finding
    first_seen: int
    last_seen: int
    published_at: int
    published_figures: dict[str, float]
    published_severity: str


def material_change(old: dict[str, float], new: dict[str, float], fraction: float) -> bool:
    """True when any figure moved by more than ``fraction`` of its old value (or appeared/vanished)."""
    if old.keys() != new.keys():
        return True
    for name, before in old.items():
        after = new[name]
        if abs(after - before) > fraction * max(abs(before), 1e-9):
            return True
    return False


class AdvisoryBook:
    """The advisories currently open, and the events each fold produces."""

    def __init__(self, resolve_after_ms: int, update_every_ms: int, update_change: float):
        self.resolve_after_ms = int(resolve_after_ms)
        self.update_every_ms = int(update_every_ms)
        self.update_change = float(update_change)
        self.open: dict[str, _Entry] = {}
        self.counters = {"raised": 0, "updated": 0, "resolved": 0}

    @classmethod
    def from_config(cls, cfg) -> "AdvisoryBook":
        return cls(int(cfg["analysis.resolve_after"] * 1000), int(cfg["analysis.update_every"] * 1000),
                   cfg["analysis.update_change"])

    def fold(self, findings: list[Finding], now_ms: int, analyzers: set[str] | None = None) -> list[dict[str, Any]]:
        """Events for this run. ``analyzers`` limits resolution to the analyzers that ran (None = all)."""
        now_ms = int(now_ms)
        events = []
        seen = set()
        for f in sorted(findings, key=lambda f: f.key):  # sorted: deterministic event order
            if f.key in seen:
                continue  # an analyzer returned the same key twice: the first (most severe) wins
            seen.add(f.key)
            entry = self.open.get(f.key)
            if entry is None:
                entry = _Entry(f, now_ms, now_ms, now_ms, dict(f.figures), f.severity)
                self.open[f.key] = entry
                events.append(self._event(entry, "raised"))
                continue
            entry.finding = f
            entry.last_seen = now_ms
            if (f.severity != entry.published_severity
                    or material_change(entry.published_figures, f.figures, self.update_change)
                    or now_ms - entry.published_at >= self.update_every_ms):
                entry.published_at = now_ms
                entry.published_figures = dict(f.figures)
                entry.published_severity = f.severity
                events.append(self._event(entry, "updated"))
        for key in sorted(self.open):
            entry = self.open[key]
            if key in seen or (analyzers is not None and entry.finding.analyzer not in analyzers):
                continue
            if now_ms - entry.last_seen >= self.resolve_after_ms:
                del self.open[key]
                events.append(self._event(entry, "resolved"))
        for e in events:
            self.counters[e["state"]] += 1
        return events

    def adopt(self, stored: list[dict[str, Any]]) -> int:
        """Take over advisories still open in the store (an earlier run of the analyzer raised them), so
        that they update or resolve instead of staying open for good. The next finding of a key publishes
        an update (its figures are not stored); an absent one resolves after resolve_after as usual.
        Returns how many were adopted (keys already open here are kept as they are)."""
        adopted = 0
        for a in stored:
            try:
                key, state = str(a["key"]), str(a["state"])
                if state == "resolved" or key in self.open:
                    continue
                f = Finding(str(a["analyzer"]), str(a["subject"]), str(a["severity"]), str(a.get("title") or ""),
                            str(a.get("description") or ""), str(a.get("action") or ""), dict(a.get("evidence") or {}),
                            dict(a.get("filter") or {}), figures={})
                if f.key != key:
                    continue  # not a key this analyzer would make: leave it to whoever raised it
                first, last = int(a["first_seen"]), int(a["last_seen"])
            except (KeyError, TypeError, ValueError):
                continue
            self.open[key] = _Entry(f, first, last, last, {}, f.severity)
            adopted += 1
        return adopted

    def newest_last_seen(self) -> int | None:
        return max((e.last_seen for e in self.open.values()), default=None)

    @staticmethod
    def _event(entry: _Entry, state: str) -> dict[str, Any]:
        f = entry.finding
        event = {
            "key": f.key, "analyzer": f.analyzer, "subject": f.subject, "severity": f.severity, "state": state,
            "first_seen": entry.first_seen, "last_seen": entry.last_seen, "title": f.title,
            "description": f.description, "action": f.action, "evidence": dict(f.evidence), "filter": dict(f.filter),
        }
        assert event.keys() == ADVISORY_FIELDS.keys()
        return event
