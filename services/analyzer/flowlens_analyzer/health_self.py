"""Findings about the analyzer itself: flows its window shed or refused (their exporter's clock is
ahead), and advisories its outbox dropped before the store confirmed them (flowmodel.eventbox)."""
from __future__ import annotations

from .common import Context, Finding, addr_text
from .wording import fmt_duration, fmt_int, plural

NAME = "health"
SHED_SPAN_MS = 60_000  # shed flows are reported over the last minute


def window_findings(state, ctx: Context, now_ms: int) -> list[Finding]:
    """The analyzer's own window: flows shed at max_window_flows in the last minute, and flows refused
    because their exporter's clock is ahead (FlowWindow.future_by_exporter / ahead_ms_by_exporter)."""
    w = state.window
    if w is None:
        return []
    findings = []
    flows, shed = int(w.counters.get("flows", 0)), int(w.counters.get("overflow", 0))
    state.window_samples.append((now_ms, flows, shed))
    while len(state.window_samples) > 1 and state.window_samples[1][0] <= now_ms - SHED_SPAN_MS:
        state.window_samples.pop(0)  # keep the newest sample at least SHED_SPAN_MS old as the base
    t0, flows0, shed0 = state.window_samples[0]
    received, dropped = flows - flows0, shed - shed0
    if dropped > 0 and received > 0:
        span = fmt_duration(round((now_ms - t0) / 1000)) if now_ms - t0 < SHED_SPAN_MS - 1000 else "the last minute"
        span = span if span == "the last minute" else f"the last {span}"
        cap = int(ctx["analysis.max_window_flows"])
        findings.append(Finding(
            NAME, "analysis shed", "WARNING", "Analysis saw only part of the traffic",
            f"Analysis saw only {fmt_int(max(received - dropped, 0))} of {fmt_int(received)} flows in {span}: "
            f"{plural(dropped, 'flow')} beyond analysis.max_window_flows ({fmt_int(cap)}) "
            f"were dropped, so advisories may miss traffic",
            "Raise analysis.max_window_flows (about 120 bytes of memory per flow at the analyzer's peak) "
            "or shorten analysis.window; "
            "with sampling on the exporters, fewer flows arrive",
            {"received_flows": received, "analysed_flows": max(received - dropped, 0), "shed_flows": dropped,
             "max_window_flows": cap, "window_start": t0, "window_end": now_ms},
            {"since": t0, "until": now_ms}, figures={"shed": float(dropped)}))
    ahead_ms = getattr(w, "ahead_ms_by_exporter", {}) or {}
    for exporter, total in sorted((getattr(w, "future_by_exporter", {}) or {}).items()):
        new = int(total) - state.future_seen.get(exporter, 0)
        state.future_seen[exporter] = int(total)
        if new > 0:
            ex = addr_text(exporter)
            ahead = ahead_ms.get(exporter)
            by = f" (its flows end up to {fmt_duration(round(ahead / 1000))} in the future)" if ahead else ""
            findings.append(Finding(
                NAME, f"clock {ex}", "WARNING", f"Clock of {ex} is ahead",
                f"{plural(new, 'flow')} from exporter {ex} ended after the analyzer's clock by more "
                f"than {fmt_duration(ctx.get('analysis.clock_tolerance', 60.0))}{by} and were left out of the analysis",
                f"Check the clock of {ex} (NTP)",
                {"exporter": ex, "future_flows": new, "ahead_ms": int(ahead or 0), "window_start": now_ms,
                 "window_end": now_ms},
                {"exporter": ex, "since": now_ms - SHED_SPAN_MS, "until": now_ms}, figures={"future": float(new)}))
    return findings


def advisory_loss_findings(state, now_ms: int) -> list[Finding]:
    """A WARNING while the analyzer's advisory outbox has dropped advisories since the last analysis
    (the store was away longer than bus.events_unconfirmed_max advisories last)."""
    ob = state.outbox
    if ob is None:
        return []
    lost = int(ob.lost)
    new, state.advisories_lost_seen = lost - state.advisories_lost_seen, lost
    if new <= 0:
        return []
    return [Finding(
        NAME, "advisories lost", "WARNING", "Advisories lost before the store confirmed them",
        f"The analyzer dropped {plural(new, 'advisory', 'advisories')} ({fmt_int(lost)} since it started): the "
        f"store had not confirmed them when bus.events_unconfirmed_max ({fmt_int(ob.max_events)}) newer ones "
        f"were waiting, so the advisories page misses them",
        "Check that the store is running and reachable on bus.events_endpoint; raise bus.events_unconfirmed_max "
        "to hold more through an outage",
        {"lost_advisories": new, "lost_total": lost, "window_start": now_ms, "window_end": now_ms},
        {"since": now_ms - SHED_SPAN_MS, "until": now_ms}, figures={"lost": float(new)})]
