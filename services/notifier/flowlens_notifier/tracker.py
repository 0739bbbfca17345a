"""Which changes of the store's advisories are worth telling people: pure, state passed in and out.

The store keeps one row per advisory key, its latest state (an episode: raised, updated..., resolved;
raised again after that is a new episode with its own first_seen). The notifier reads the rows the
store received after its cursor (the advisories op's ``after``) and the ``Tracker`` turns each row
version it has not seen into at most one notification: ``raised`` (an episode it has not told),
``escalated`` (more severe than what it told) or ``resolved`` (an episode it told, or one that
opened and closed between two looks). A row version is (first_seen, updates): the store counts
updates per episode, so a version read twice (the cursor re-reads a few seconds back, see
``OVERLAP_MS``) is told once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flowmodel.events import ADVISORY_FIELDS, SEVERITY_RANK

# The cursor re-reads this far back: the store stamps received_at when an event is queued for its
# writer, so a row stamped a moment before the newest one seen may commit just after it (two receive
# threads, a wall clock stepped back). Re-read rows are recognised by their version.
OVERLAP_MS = 5000

TRANSITIONS = ("raised", "escalated", "resolved")


@dataclass
class Told:
    """What the notifier knows of one key: the version last read and what it told."""

    episode: int          # first_seen of the episode
    updates: int          # the store's update count of the version last read
    state: str            # raised, updated or resolved (as read)
    severity: str | None  # severity last told (None: nothing told this episode)
    received_at: int

    def to_list(self) -> list:
        return [self.episode, self.updates, self.state, self.severity, self.received_at]

    @classmethod
    def from_list(cls, v: list) -> "Told":
        return cls(int(v[0]), int(v[1]), str(v[2]), None if v[3] is None else str(v[3]), int(v[4]))


@dataclass
class Tracker:
    tracked_max: int = 100_000
    cursor_ms: int | None = None      # received_at of the newest row read (None: never read)
    keys: dict[str, Told] = field(default_factory=dict)
    baseline: bool = True             # the first reading (no state yet): open ones are told, resolved ones only noted
    forgotten: int = 0                # keys dropped by tracked_max
    rows_read: int = 0

    def query_after(self) -> int:
        """The ``after`` argument of the next reading (0: from the beginning)."""
        return 0 if self.cursor_ms is None else max(0, self.cursor_ms - OVERLAP_MS)

    def take(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows of one reading (oldest received first) -> notifications (advisory fields + transition)."""
        out = []
        for row in rows:
            self.rows_read += 1
            note = self._one(row)
            if note is not None:
                out.append(note)
        return out

    def untold(self, key: str) -> None:
        """The notification just made for ``key`` was not sent (acknowledged, silenced): its next
        version is told as raised, so a lifted silence lets the advisory be heard again."""
        told = self.keys.get(key)
        if told is not None and told.state != "resolved":
            told.severity = None

    def caught_up(self) -> None:
        """The reading reached the newest row: the baseline is over; forget what the cursor can no
        longer bring back (resolved keys received before the overlap) and keep the bound."""
        self.baseline = False
        if self.cursor_ms is not None:
            horizon = self.cursor_ms - 2 * OVERLAP_MS
            for key in [k for k, t in self.keys.items() if t.state == "resolved" and t.received_at < horizon]:
                del self.keys[key]
        if len(self.keys) > self.tracked_max:
            extra = len(self.keys) - self.tracked_max
            for key, _t in sorted(self.keys.items(), key=lambda kv: kv[1].received_at)[:extra]:
                del self.keys[key]
            self.forgotten += extra

    def _one(self, row: dict[str, Any]) -> dict[str, Any] | None:
        try:
            key, state, severity = str(row["key"]), str(row["state"]), str(row["severity"])
            episode, updates = int(row.get("first_seen") or 0), int(row.get("updates") or 1)
            received = int(row["received_at"])
        except (KeyError, TypeError, ValueError):
            return None
        if self.cursor_ms is None or received > self.cursor_ms:
            self.cursor_ms = received
        told = self.keys.get(key)
        same = told is not None and told.episode == episode
        if same and told.updates >= updates:
            return None  # a version already read (the cursor's overlap)
        transition = None
        if state == "resolved":
            if same:
                if told.severity is not None and told.state != "resolved":
                    transition = "resolved"
            elif not self.baseline:
                transition = "resolved"  # raised and resolved between two looks: told once, as resolved
            new = Told(episode, updates, state, told.severity if same else None, received)
        elif not same or told.severity is None or told.state == "resolved":
            transition = "raised"
            new = Told(episode, updates, state, severity, received)
        else:
            if SEVERITY_RANK.get(severity, 9) < SEVERITY_RANK.get(told.severity, 9):
                transition = "escalated"
            new = Told(episode, updates, state, severity if transition else told.severity, received)
        self.keys[key] = new
        if transition is None:
            return None
        note = {k: row.get(k) for k in ADVISORY_FIELDS}
        note["transition"] = transition
        note["received_at"] = received
        return note

    # ------------------------------------------------------------ state file form

    def to_state(self) -> dict:
        return {"cursor_ms": self.cursor_ms, "baseline": self.baseline,
                "keys": {k: t.to_list() for k, t in self.keys.items()}}

    @classmethod
    def from_state(cls, state: dict, tracked_max: int) -> "Tracker":
        t = cls(tracked_max=tracked_max)
        t.cursor_ms = state.get("cursor_ms")
        t.baseline = bool(state.get("baseline", True))
        t.keys = {str(k): Told.from_list(v) for k, v in (state.get("keys") or {}).items()}
        return t
