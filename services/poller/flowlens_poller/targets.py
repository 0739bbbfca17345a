"""Per-target bookkeeping, pure (the caller passes the clock): when each agent is due to be walked
again (snmp.interval after a good walk, snmp.retry_interval after a failed one), its counters, the
last table it gave (sent again to a store that subscribes later), and the WARNING advisory a target
raises after snmp.failing_after failed walks in a row and resolves with its next good walk. Advisories
an earlier run left open (it was killed, so it could not resolve them) are taken over at start.
"""
from __future__ import annotations

from dataclasses import dataclass, field

HEALTH_TARGETS_MAX = 200   # targets listed one by one in a health event (failing first); the rest are summed


@dataclass
class TargetState:
    exporter: str
    next_due_s: float = 0.0          # monotonic; 0: at once (the walk at start)
    walking: bool = False
    walks: int = 0
    failures: int = 0                # failed walks (cumulative)
    failures_in_a_row: int = 0
    last_error: str = ""
    last_ok_ms: int = 0
    interfaces: int = 0              # in its last good walk
    left_out: int = 0                # interfaces past snmp.max_interfaces in its last good walk
    event: dict | None = None        # its last interfaces event (to send again to a new subscriber)
    failing_since_ms: int | None = None   # first_seen of its open "failing" advisory

    def stats(self) -> dict:
        return {"exporter": self.exporter, "walks": self.walks, "failures": self.failures,
                "failures_in_a_row": self.failures_in_a_row, "last_error": self.last_error[:300],
                "last_ok": self.last_ok_ms, "interfaces": self.interfaces, "left_out": self.left_out}


@dataclass
class Schedule:
    exporters: list[str]
    interval_s: float
    retry_interval_s: float
    failing_after: int
    states: dict[str, TargetState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.states = {e: TargetState(e) for e in self.exporters}

    def adopt(self, open_rows: list[dict]) -> list[dict]:
        """Take over the poller's target advisories an earlier run left open in the store: a target still
        configured keeps its advisory open until its next good walk resolves it; returns the rows of
        targets no longer configured (nobody will walk them: the caller resolves them now)."""
        gone = []
        for row in open_rows:
            exporter = str(row.get("subject") or "")
            if row.get("analyzer") != "poller" or row.get("key") != f"poller:target:{exporter}":
                continue
            s = self.states.get(exporter)
            if s is None:
                gone.append(row)
            elif s.failing_since_ms is None:
                s.failing_since_ms = int(row.get("first_seen") or 0)
        return gone

    def due(self, now_s: float) -> list[str]:
        """Targets to walk now (not already being walked), most overdue first."""
        ready = [s for s in self.states.values() if not s.walking and s.next_due_s <= now_s]
        return [s.exporter for s in sorted(ready, key=lambda s: s.next_due_s)]

    def next_due_in(self, now_s: float) -> float:
        waiting = [s.next_due_s for s in self.states.values() if not s.walking]
        return max(0.0, min(waiting) - now_s) if waiting else self.interval_s

    def started(self, exporter: str) -> None:
        self.states[exporter].walking = True

    def walked(self, exporter: str, now_s: float, now_ms: int, event: dict, left_out: int) -> str | None:
        """A good walk; returns "resolved" when it ends the target's open advisory."""
        s = self.states[exporter]
        s.walking, s.walks, s.failures_in_a_row, s.last_error = False, s.walks + 1, 0, ""
        s.next_due_s = now_s + self.interval_s
        s.last_ok_ms, s.event, s.interfaces, s.left_out = now_ms, event, len(event["interfaces"]), left_out
        if s.failing_since_ms is not None:
            return "resolved"
        return None

    def failed(self, exporter: str, now_s: float, error: str) -> str | None:
        """A failed walk; returns "raised" when it makes the target failing (snmp.failing_after in a row)."""
        s = self.states[exporter]
        s.walking, s.walks, s.failures, s.failures_in_a_row = False, s.walks + 1, s.failures + 1, s.failures_in_a_row + 1
        s.last_error = error
        s.next_due_s = now_s + self.retry_interval_s
        if s.failures_in_a_row >= self.failing_after and s.failing_since_ms is None:
            return "raised"
        return None

    def health(self) -> dict:
        """Totals, and the targets one by one (failing first, at most HEALTH_TARGETS_MAX)."""
        states = sorted(self.states.values(), key=lambda s: (-s.failures_in_a_row, s.exporter))
        return {"targets": len(states), "targets_failing": sum(1 for s in states if s.failures_in_a_row),
                "walks": sum(s.walks for s in states), "walk_failures": sum(s.failures for s in states),
                "interfaces": sum(s.interfaces for s in states),
                "interfaces_left_out": sum(s.left_out for s in states),
                "per_target": [s.stats() for s in states[:HEALTH_TARGETS_MAX]]}


def target_failing_event(s: TargetState, state: str, host: str, failing_after: int, now_ms: int,
                         note: str = "") -> dict:
    """The poller's advisory about an agent it cannot walk (fields per ADVISORY_FIELDS). The key is not
    '<analyzer>:<subject>', so the analyzer never adopts (and resolves) it."""
    resolved = state == "resolved"
    first = s.failing_since_ms if s.failing_since_ms is not None else now_ms
    return {"key": f"poller:target:{s.exporter}", "analyzer": "poller", "subject": s.exporter, "severity": "WARNING",
            "state": state, "first_seen": first, "last_seen": now_ms,
            "title": (f"SNMP walks of {s.exporter} work again" if resolved else
                      f"SNMP walks of {s.exporter} fail"),
            "description": (note or f"The poller walked the SNMP agent of exporter {s.exporter} ({host}) again.")
            if resolved else
            (f"The poller failed {s.failures_in_a_row} times in a row to walk the SNMP agent of exporter "
             f"{s.exporter} ({host}), so its interface names and speeds are not refreshed. Last error: {s.last_error}"),
            "action": "None needed." if resolved else
            (f"Check that {host} answers SNMP from the poller's address and that snmp.targets has its community "
             "or v3 user and keys right (a wrong community goes unanswered: it looks like a timeout)."),
            "evidence": {"exporter": s.exporter, "host": host, "failures_in_a_row": s.failures_in_a_row,
                         "failing_after": failing_after, "last_error": s.last_error[:300],
                         "window_start": first, "window_end": now_ms},
            "filter": {"exporter": s.exporter}}
