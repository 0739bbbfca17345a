"""The analysis engine without sockets: a flow-time window, the analyzers run on each closed
window, and the advisory books that turn findings into events. Used by the service (live) and by
the ``analyze`` command (a stored range), so both fold the same way.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

from flowmodel.schema import FlowBatch

from . import anomaly, asymmetry, dns, health, protocol_mix, scan, top_talkers
from .common import Context, Finding, WindowView
from .lifecycle import AdvisoryBook
from .window import FlowWindow

log = logging.getLogger(__name__)

# The flow analyzers, in the order they run: name -> analyze(view, ctx, state) -> findings.
ANALYZERS: dict[str, Callable[[WindowView, Context, dict], list[Finding]]] = {
    top_talkers.NAME: top_talkers.analyze,
    anomaly.NAME: anomaly.analyze,
    protocol_mix.NAME: protocol_mix.analyze,
    scan.NAME: scan.analyze,
    dns.NAME: dns.analyze,
    asymmetry.NAME: asymmetry.analyze,
}


class Engine:
    def __init__(self, cfg):
        self.ctx = Context(cfg)
        self.window = FlowWindow.from_config(cfg)
        self.book = AdvisoryBook.from_config(cfg)
        self.health_book = AdvisoryBook.from_config(cfg)
        self.health = health.HealthState()
        self.states: dict[str, dict[str, Any]] = {name: {} for name in ANALYZERS}
        self.cpu_seconds: dict[str, float] = {name: 0.0 for name in ANALYZERS}
        self.errors: dict[str, int] = {name: 0 for name in ANALYZERS}
        self.pending: list[dict] = []  # events of windows run inside add()

    def add(self, batch: FlowBatch, wall_ms: int | None = None) -> int:
        """Take a batch in arrival order: windows its flows make due run at once (their advisory
        events wait for the next ``poll``), so how flows are batched does not change the analysis."""
        return self.window.add(batch, wall_ms, run_due=self._run_due)

    def _run_due(self) -> None:
        for end in self.window.due():
            self.pending += self.run(end)

    def poll(self, wall_ms: int | None = None) -> list[dict]:
        """Run every window that has closed (advancing flow time when idle); return advisory events,
        those of windows ``add`` ran first."""
        if wall_ms is not None:
            self.window.tick(wall_ms)
        self._run_due()
        events, self.pending = self.pending, []
        return events

    def run(self, end_ms: int) -> list[dict]:
        view = self.window.view(end_ms)  # not kept after the run: it and its caches are as big as the window
        findings = []
        for name, fn in ANALYZERS.items():
            t0 = time.process_time()
            try:
                findings += fn(view, self.ctx, self.states[name])
            except Exception:  # one analyzer's bug must not stop the others or the loop
                self.errors[name] += 1
                log.exception("analyzer failed", extra={"fields": {"analyzer": name, "window_end": end_ms}})
            self.cpu_seconds[name] += time.process_time() - t0
        del view
        self.window.release(end_ms)
        return self.book.fold(findings, end_ms)

    def health_check(self, wall_ms: int, bus_gaps: dict[str, int]) -> list[dict]:
        findings = health.analyze(self.health, self.ctx, wall_ms, bus_gaps, self.window.late_by_exporter)
        return self.health_book.fold(findings, wall_ms)

    def finish(self, until_ms: int) -> list[dict]:
        """Offline: everything before until_ms has arrived; run every window that ends by until_ms,
        then, when flows after the last of them are still unseen, one last window ending at until_ms.
        No window reaches past until_ms (an empty one there would read as traffic stopping)."""
        self.window.advance_to(until_ms)
        events = self.poll()
        last = self.window.closed_until
        if (last is None or last < until_ms) and self.window.pending_before(until_ms):
            self.window.closed_until = until_ms
            self.window.counters["runs"] += 1
            events += self.run(until_ms)
        return events
