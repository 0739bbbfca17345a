"""`python -m flowlens_analyzer analyze`: run the flow analyzers over a stored time range (flows read
through the store's query protocol, oldest slice first) and print the advisories they raise."""
from __future__ import annotations

import json
import time

import numpy as np

from flowmodel import timefmt
from flowmodel.events import SEVERITY_RANK
from flowmodel.schema import FlowBatch

from .engine import Engine
from .wording import fmt_time

PAGE_ROWS = 10_000


def read_range(client, since_ms: int, until_ms: int, page_rows: int = PAGE_ROWS) -> FlowBatch:
    """All stored flows with time_end in [since, until), following the flows op's cursors, sorted by
    time_end."""
    batches = []
    cursor = None
    while True:
        page = client.flows(limit=page_rows, cursor=cursor, since=since_ms, until=until_ms)
        if page.batch.count:
            batches.append(page.batch)
        cursor = page.next_cursor
        if not cursor or not page.batch.count:
            break
    batch = FlowBatch.concat(batches)
    if batch.count > 1:
        order = np.lexsort((batch["src_port"], batch["time_start"], batch["time_end"]))
        batch = batch.select(order)
    return batch


def _any(client, since_ms: int, until_ms: int) -> int | None:
    """time_end of the newest stored flow in [since, until), None when there is none."""
    page = client.flows(limit=1, since=since_ms, until=until_ms)
    return int(page.batch["time_end"].max()) if page.batch.count else None


def next_data(client, since_ms: int, until_ms: int, step_ms: int) -> int | None:
    """The start of the first step (a multiple of step_ms) at or after since that holds stored
    flows before until; None when [since, until) is empty. A few one-row queries (growing spans,
    then halving), so years of empty time cost tens of queries, not one per step."""
    span = step_ms
    while True:
        hi = min(since_ms + span, until_ms)
        newest = _any(client, since_ms, hi)
        if newest is not None:
            break
        if hi >= until_ms:
            return None
        span *= 8
    lo, hi = since_ms, newest + 1  # empty before lo; a flow just before hi
    while hi - lo > step_ms:
        mid = lo + (hi - lo) // 2
        if _any(client, lo, mid) is not None:
            hi = mid
        else:
            lo = mid
    return max(since_ms, (lo // step_ms) * step_ms)


def analyze_range(cfg, client, since_ms: int, until_ms: int, now_ms: int | None = None) -> list[dict]:
    """Advisory events the flow analyzers raise over [since, until), in order (health is live-only).

    Flows are read one analysis interval at a time (epoch-aligned, as live windows), so the engine
    never holds more than a window plus an interval of flows and analysis.max_window_flows does not
    cut a slice; empty stretches are skipped with a few one-row queries. No window ends after until
    (the last may end at until itself), nor after now minus the watermark, where flows may still be
    arriving (an empty or half-filled window there would read as traffic stopping)."""
    engine = Engine(cfg)
    step = engine.window.interval_ms
    now = int(time.time() * 1000) if now_ms is None else now_ms
    stop = min(until_ms, now - engine.window.watermark_ms)
    events: list[dict] = []
    lo = since_ms
    while lo < stop:
        hi = min((lo // step + 1) * step, stop)
        batch = read_range(client, lo, hi)
        if batch.count:
            engine.add(batch)
        engine.window.advance_to(hi)
        events += engine.poll()
        if batch.count or hi >= stop:
            lo = hi
            continue
        found = next_data(client, hi, stop, step)
        if found is None:
            break
        lo = max(hi, found)
    if stop > since_ms:
        events += engine.finish(stop)
    return events


def latest_per_key(events: list[dict]) -> list[dict]:
    latest: dict[str, dict] = {}
    for e in events:
        latest[e["key"]] = e
    return sorted(latest.values(), key=lambda e: (SEVERITY_RANK.get(e["severity"], 9), e["first_seen"], e["key"]))


def _when(ms: int) -> str:
    """'2023-05-09 11:48' (UTC): a stored range spans days, so the time alone does not place it."""
    return timefmt.iso(ms, sep=" ", zone="", millis=False)[:16] if timefmt.plausible(ms) else fmt_time(ms)


def format_table(advisories: list[dict]) -> str:
    if not advisories:
        return "no advisories"
    lines = [f"{'SEVERITY':<9} {'STATE':<8} {'FIRST (UTC)':<16} {'LAST':<16} DESCRIPTION"]
    for a in advisories:
        lines.append(f"{a['severity']:<9} {a['state']:<8} {_when(a['first_seen']):<16} {_when(a['last_seen']):<16} "
                     f"{a['description']}")
        lines.append(f"{'':<53}-> {a['action']}  [{a['key']}]")
    return "\n".join(lines)


def format_json(advisories: list[dict]) -> str:
    return "\n".join(json.dumps(a, sort_keys=True) for a in advisories)
