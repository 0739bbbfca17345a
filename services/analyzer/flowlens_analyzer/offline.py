"""`python -m flowlens_analyzer analyze`: run the flow analyzers over a stored time range (flows read
through the store's query protocol, oldest slice first) and print the advisories they raise."""
from __future__ import annotations

import json
from typing import Iterator

import numpy as np

from flowmodel.events import SEVERITY_RANK
from flowmodel.schema import FlowBatch

from .common import fmt_time
from .engine import Engine

PAGE_ROWS = 10_000


def read_range(client, since_ms: int, until_ms: int, page_rows: int = PAGE_ROWS) -> FlowBatch:
    """All stored flows of [since, until], following the flows op's cursors, sorted by time_end."""
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


def slices(since_ms: int, until_ms: int, step_ms: int) -> Iterator[tuple[int, int]]:
    t = since_ms
    while t < until_ms:
        yield t, min(t + step_ms, until_ms)
        t += step_ms


def analyze_range(cfg, client, since_ms: int, until_ms: int) -> list[dict]:
    """Advisory events the flow analyzers raise over the range, in order (health is live-only)."""
    engine = Engine(cfg)
    step = max(int(cfg["analysis.window"] * 1000), 600_000)
    events = []
    for lo, hi in slices(since_ms, until_ms, step):
        batch = read_range(client, lo, hi - 1 if hi < until_ms else hi)
        engine.add(batch)
        engine.window.advance_to(hi - engine.window.watermark_ms)
        events += engine.poll()
    events += engine.finish(until_ms + engine.window.interval_ms)
    return events


def latest_per_key(events: list[dict]) -> list[dict]:
    latest: dict[str, dict] = {}
    for e in events:
        latest[e["key"]] = e
    return sorted(latest.values(), key=lambda e: (SEVERITY_RANK.get(e["severity"], 9), e["first_seen"], e["key"]))


def format_table(advisories: list[dict]) -> str:
    if not advisories:
        return "no advisories"
    lines = [f"{'SEVERITY':<9} {'STATE':<8} {'FIRST':<5} {'LAST':<5} DESCRIPTION"]
    for a in advisories:
        lines.append(f"{a['severity']:<9} {a['state']:<8} {fmt_time(a['first_seen']):<5} {fmt_time(a['last_seen']):<5} "
                     f"{a['description']}")
        lines.append(f"{'':<31}-> {a['action']}  [{a['key']}]")
    return "\n".join(lines)


def format_json(advisories: list[dict]) -> str:
    return "\n".join(json.dumps(a, sort_keys=True) for a in advisories)
