"""One target's notifications on their way out: grouped, rate-limited, retried, counted. Pure: the
caller passes the clock (ms) and the result of each delivery.

Notifications wait in ``pending`` (at most queue_max; past it the oldest is dropped and counted).
A message is cut from everything pending once the oldest has waited ``group_wait_ms`` (a burst
gathers) and ``group_interval_ms`` has passed since the previous message was cut: one message per
target per interval at most, however many advisories arrive. One message is out at a time; a
failed one is tried again after 1 s, 2 s, 4 s, ... up to ``max_backoff_ms``, and dropped (its
notifications counted as dropped) once ``retry_for_ms`` passed since its first try.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

FIRST_BACKOFF_MS = 1000


@dataclass
class Message:
    id: str                  # '<target>-<n>': the same on every try, so a receiver can drop a repeat
    items: list[dict]        # notifications (advisory fields + transition)
    created_ms: int
    attempts: int = 0
    next_try_ms: int = 0
    last_error: str = ""

    def to_dict(self) -> dict:
        return {"id": self.id, "items": self.items, "created_ms": self.created_ms, "attempts": self.attempts,
                "next_try_ms": self.next_try_ms, "last_error": self.last_error}

    @classmethod
    def from_dict(cls, d: dict) -> "Message":
        return cls(str(d["id"]), list(d["items"]), int(d["created_ms"]), int(d.get("attempts", 0)),
                   int(d.get("next_try_ms", 0)), str(d.get("last_error", "")))


COUNTERS = ("queued", "sent", "notifications_sent", "failed", "retried", "dropped", "suppressed")


@dataclass
class TargetOutbox:
    name: str
    group_wait_ms: int
    group_interval_ms: int
    queue_max: int
    max_backoff_ms: int
    retry_for_ms: int
    pending: collections.deque = field(default_factory=collections.deque)  # (arrived_ms, notification)
    current: Message | None = None
    last_cut_ms: int | None = None
    next_number: int = 1
    failures_in_a_row: int = 0
    # per process: queued (notifications routed here), sent (messages delivered), notifications_sent,
    # failed (tries that failed), retried (tries after a failure), dropped (notifications: bound or retry_for),
    # suppressed (waiting ones an acknowledgement or silence took back)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    last_error: str = ""

    def add(self, note: dict[str, Any], now_ms: int) -> None:
        self.pending.append((now_ms, note))
        self.counters["queued"] += 1
        while len(self.pending) > self.queue_max:
            self.pending.popleft()
            self.counters["dropped"] += 1

    def discard(self, unwanted) -> int:
        """Take back the waiting notifications for which ``unwanted(note)`` holds (acknowledged or
        silenced meanwhile); the message under way is left as it is. Returns how many."""
        keep = collections.deque((t, n) for t, n in self.pending if not unwanted(n))
        n = len(self.pending) - len(keep)
        self.pending = keep
        self.counters["suppressed"] += n
        return n

    def due(self, now_ms: int) -> Message | None:
        """The message to try now, if any (the caller delivers it and calls ``result``)."""
        if self.current is not None:
            return self.current if now_ms >= self.current.next_try_ms else None
        if not self.pending:
            return None
        if now_ms < self.pending[0][0] + self.group_wait_ms:
            return None
        if self.last_cut_ms is not None and now_ms < self.last_cut_ms + self.group_interval_ms:
            return None
        items = [note for _t, note in self.pending]
        self.pending.clear()
        self.current = Message(f"{self.name}-{self.next_number}", items, now_ms)
        self.next_number += 1
        self.last_cut_ms = now_ms
        return self.current

    def next_event_ms(self) -> int | None:
        """When ``due`` may next have something (for the caller's wait)."""
        if self.current is not None:
            return self.current.next_try_ms
        if not self.pending:
            return None
        t = self.pending[0][0] + self.group_wait_ms
        return max(t, self.last_cut_ms + self.group_interval_ms) if self.last_cut_ms is not None else t

    def result(self, message: Message, ok: bool, now_ms: int, error: str = "") -> None:
        if message is not self.current:
            return
        if message.attempts:
            self.counters["retried"] += 1
        message.attempts += 1
        if ok:
            self.counters["sent"] += 1
            self.counters["notifications_sent"] += len(message.items)
            self.current = None
            self.failures_in_a_row = 0
            return
        self.counters["failed"] += 1
        self.failures_in_a_row += 1
        message.last_error = self.last_error = error[:300]
        if now_ms - message.created_ms >= self.retry_for_ms:
            self.counters["dropped"] += len(message.items)
            self.current = None
            return
        message.next_try_ms = now_ms + min(self.max_backoff_ms, FIRST_BACKOFF_MS * 2 ** (message.attempts - 1))

    def stats(self) -> dict[str, Any]:
        return {**self.counters, "pending": len(self.pending) + (len(self.current.items) if self.current else 0),
                "failures_in_a_row": self.failures_in_a_row, "last_error": self.last_error}

    # ------------------------------------------------------------ state file form

    def to_state(self) -> dict:
        return {"pending": [[t, n] for t, n in self.pending], "current": self.current.to_dict() if self.current else None,
                "last_cut_ms": self.last_cut_ms, "next_number": self.next_number}

    def load_state(self, state: dict) -> None:
        self.pending = collections.deque((int(t), n) for t, n in state.get("pending") or [])
        cur = state.get("current")
        self.current = Message.from_dict(cur) if cur else None
        self.last_cut_ms = state.get("last_cut_ms")
        self.next_number = int(state.get("next_number", 1))
