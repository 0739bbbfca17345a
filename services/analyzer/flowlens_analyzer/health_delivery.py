"""Confirmed delivery between the collectors and the store, as the collectors' health events tell it
(counters unconfirmed_*, spool_*, lost_flows): ``observe_delivery`` folds one event into the
collector's row of HealthState.delivery, ``delivery_findings`` turns the rows into advisories: flows
the store has not confirmed for a while, and flows the store reported lost.
"""
from __future__ import annotations

from .common import Finding
from .wording import fmt_bytes, fmt_duration, plural

NAME = "health"
UNCONFIRMED_WARN_MS = 30_000  # flows the store has not confirmed for this long: a WARNING


def observe_delivery(delivery: dict[str, dict[str, int]], cid: str, event: dict, prev: dict | None,
                     restarted: bool, received_ms: int) -> None:
    """The flows the store reported lost since the last analysis, and the span of the current or last
    time the store did not confirm. lost_flows counts from 0 after a restart we saw (the counter began
    again), but from the first event of a collector new to us (this analyzer started): no old loss again."""
    c = event.get("counters")
    if not isinstance(c, dict):
        return
    if restarted:
        delivery.pop(cid, None)  # a new process under the same id: its counters began again
    d = delivery.setdefault(cid, {"lost_new": 0, "outage_start": 0, "outage_end": 0, "dropped_base": 0})
    before = (prev or {}).get("counters") or {}
    lost, dropped = int(c.get("lost_flows") or 0), int(c.get("spool_dropped_flows") or 0)
    if "lost_flows" in before or restarted:
        d["lost_new"] += max(0, lost - int(before.get("lost_flows") or 0))
    since = int(c.get("unconfirmed_since") or 0)  # the collector's clock, as is sent_at
    if since and since != d["outage_start"]:  # the store stopped confirming
        d.update(outage_start=since, outage_end=0, dropped_base=int(before.get("spool_dropped_flows") or 0)
                 if prev is not None else dropped)
    elif not since and d["outage_start"] and not d["outage_end"]:  # it confirms again
        d["outage_end"] = int(event.get("sent_at") or received_ms)


def delivery_findings(state, now_ms: int) -> list[Finding]:
    """Per collector: flows the store has not confirmed for UNCONFIRMED_WARN_MS or more (WARNING; CRITICAL
    once the spool dropped some), and flows the store reported lost since the last analysis (CRITICAL)."""
    findings = []
    for cid, ev in sorted(state.collectors.items()):
        d, c, cfg = state.delivery.get(cid), ev.get("counters"), ev.get("config")
        if d is None or not isinstance(c, dict):
            continue
        cfg = cfg if isinstance(cfg, dict) else {}
        spool_max = int(cfg.get("collector.spool_max_bytes") or 0)
        held, since = int(c.get("unconfirmed_flows") or 0), int(c.get("unconfirmed_since") or 0)
        received = int(ev["received_at"])
        held_ms = max(0, int(ev.get("sent_at") or received) - since) + (now_ms - received) if since else 0
        if held and held_ms >= UNCONFIRMED_WARN_MS:
            spool = int(c.get("spool_bytes") or 0)
            dropped = max(0, int(c.get("spool_dropped_flows") or 0) - d["dropped_base"])
            where = (f"they are kept in its spool ({fmt_bytes(spool)}{f' of {fmt_bytes(spool_max)}' if spool_max else ''})"
                     if spool else "they are kept in its memory")
            if dropped:
                where += f", which is full: the oldest {plural(dropped, 'flow')} were dropped"
            findings.append(Finding(
                NAME, f"unconfirmed {cid}", "CRITICAL" if dropped else "WARNING", f"Store not confirming flows from {cid}",
                f"Collector {cid} has {plural(held, 'flow')} the store has not confirmed for "
                f"{fmt_duration(round(held_ms / 1000))}: the store may be down or slow; {where}",
                "Check that the store is running and keeping up (flowlens status, its log); the collector sends "
                "the flows again once it confirms. For a longer outage, raise collector.spool_max_bytes",
                {"collector": cid, "unconfirmed_flows": held, "unconfirmed_batches": int(c.get("unconfirmed_batches") or 0),
                 "spooled_batches": int(c.get("spooled_batches") or 0), "spool_bytes": spool, "spool_max_bytes": spool_max,
                 "spool_dropped_flows": dropped, "unconfirmed_seconds": round(held_ms / 1000),
                 "window_start": now_ms - held_ms, "window_end": now_ms},
                {"since": now_ms - held_ms, "until": now_ms},
                figures={"unconfirmed": float(held), "dropped": float(dropped)}))
        if d["lost_new"] > 0:
            lost, start, end = d["lost_new"], d["outage_start"], d["outage_end"]
            d["lost_new"] = 0
            full = (f"its spool{f' ({fmt_bytes(spool_max)})' if spool_max else ''} was full" if cfg.get("collector.spool_path", "?")
                    else "it has no spool (collector.spool_path is empty) and its memory bound was reached")
            if start and not end:
                span = f" while the store has been unreachable for {fmt_duration(round(held_ms / 1000))}"
            elif start:
                span = f" while the store was unreachable for {fmt_duration(round(max(0, end - start) / 1000))}"
            else:
                span = " while the store was unreachable"
            findings.append(Finding(
                NAME, f"lost {cid}", "CRITICAL", f"Flows lost by collector {cid}",
                f"Collector {cid} dropped {plural(lost, 'flow')}{span}: {full}, so the oldest flows were "
                f"dropped before the store had them (the store's count)",
                "Find out why the store was away (flowlens status, its log); to ride out longer outages raise "
                "collector.spool_max_bytes (the default 512 MiB holds about 90 s of 100,000 flows/s)",
                {"collector": cid, "lost_flows": int(lost), "lost_flows_total": int(c.get("lost_flows") or 0),
                 "unreachable_since": start, "unreachable_until": end, "window_start": now_ms, "window_end": now_ms},
                {"since": now_ms - UNCONFIRMED_WARN_MS, "until": now_ms}, figures={"lost": float(lost)}))
    return findings
