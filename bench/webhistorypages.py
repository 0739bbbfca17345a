"""The pages bench.webhistory asks (dashboard, Explore, Explore's Sankeys of the pairs the store keeps
rollups of, the flow explorer, the exporter pages, at 1 h, 24 h and 72 h, anchored at the newest
flow and as the presets ending now) and, for each, its store requests alone, built with the web's
own modules so they are the page's own arguments. FLOWLENS_BENCH_WEBHISTORY_PAGES (comma-separated
words, e.g. "sankey") keeps only the pages whose name holds one of them: a short rerun of a few.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlencode

from . import history

HOURS = (1, 24, 72)
EXPLORE_BY = ("src", "dst_port", "exporter", "in_if")
EXPORTER = "127.0.0.1"                  # bench.history's exporter: its datagrams come from loopback
# Explore with a Sankey of a pair the store keeps rollups of (by the table's dimension src), over days
SANKEY_PAIRS = (("in_if", "out_if"), ("src_as", "dst_as"))
SANKEY_HOURS = (24, 72)
ONLY = [w.strip() for w in os.environ.get("FLOWLENS_BENCH_WEBHISTORY_PAGES", "").split(",") if w.strip()]


@dataclass
class Page:
    name: str                                   # "explore by src"
    window: str                                 # "24 h, to the newest flow" / "range=24h"
    path: str
    params: dict                                # the URL's query (the range included)
    store_ops: Callable[[OpClock, int], None]   # (ask, now_ms): the page's store requests alone

    @property
    def url(self) -> str:
        return self.path + ("?" + urlencode(self.params) if self.params else "")


def op_label(op: str, args: dict) -> str:
    """A store request in words: 'explore by=dst_port metric=bytes ... over 24 h' (since/until as the span)."""
    words = [f"{k}={v}" for k, v in args.items() if k not in ("since", "until")]
    if "since" in args and "until" in args:
        words.append(f"over {(args['until'] - args['since']) / history.HOUR_MS:g} h")
    return " ".join([op, *words])


class OpClock:
    """Asks the store one request (``clock(op, **args)``) and keeps its milliseconds by label."""

    def __init__(self, client):
        self.client = client
        self.ms: dict[str, list[float]] = {}

    def __call__(self, op: str, **args) -> dict:
        t = time.perf_counter()
        reply = self.client.request(op, **args)
        self.ms.setdefault(op_label(op, args), []).append((time.perf_counter() - t) * 1000)
        return reply

    def slowest(self) -> tuple[str, float]:
        """(label, p50 ms) of the request with the highest median."""
        label, took = max(self.ms.items(), key=lambda kv: percentile(sorted(kv[1]), 50))
        return label, percentile(sorted(took), 50)


def _dashboard_ops(params: dict) -> Callable:
    from flowlens_web.flowroutes import DASHBOARD_TOP
    from flowlens_web.timerange import TimeRange

    def ops(ask: OpClock, now_ms: int) -> None:
        tr = TimeRange.from_query(params, now_ms)
        since, until = tr.since_ms, tr.until_ms
        ask("series", step=tr.step_s(), scaled=True, since=since, until=until)
        for by in DASHBOARD_TOP:
            ask("top", by=by, metric="bytes", limit=10, scaled=True, since=since, until=until)
    return ops


def _explore_ops(params: dict) -> Callable:
    from flowlens_web import explore as ex

    def ops(ask: OpClock, now_ms: int) -> None:
        ask("explore", **ex.parse_query(params, now_ms).store_args())
    return ops


def _sankey_ops(params: dict) -> Callable:
    from flowlens_web import explore as ex
    from flowlens_web import sankeyview as sv

    def ops(ask: OpClock, now_ms: int) -> None:
        q = ex.parse_query(params, now_ms)
        ask("explore", **q.store_args())
        ask("top", **sv.store_args(q))
    return ops


def _flows_ops(params: dict) -> Callable:
    from flowlens_web import flowtable

    def ops(ask: OpClock, now_ms: int) -> None:
        _form, args, _tr = flowtable.flow_query(params, now_ms)
        ask("flows", limit=50, **args)
    return ops


def _exporters_ops(_params: dict) -> Callable:
    def ops(ask: OpClock, now_ms: int) -> None:
        ask("exporters")
        ask("names")
        window = {"by": "exporter", "metric": "packets", "limit": 50, "since": now_ms - 3_600_000, "until": now_ms}
        ask("top", scaled=True, **window)
        ask("top", scaled=False, **window)
    return ops


def _exporter_ops(params: dict) -> Callable:
    from flowlens_web import explore as ex
    from flowlens_web.explorepages import EXPORTER_TOP
    from flowlens_web.timerange import TimeRange

    def ops(ask: OpClock, now_ms: int) -> None:
        tr = TimeRange.from_query(params, now_ms)
        base = {"exporter": EXPORTER}
        q_in = ex.ExploreQuery({"by": "in_if"}, base, "in_if", "bps", EXPORTER_TOP, tr)
        q_out = ex.ExploreQuery({"by": "out_if"}, base, "out_if", "bps", EXPORTER_TOP, tr)
        ask("exporters")
        ask("explore", **q_in.store_args())
        ask("explore", **q_out.store_args())
        ask("flows", limit=1, exporter=EXPORTER, since=tr.since_ms, until=tr.until_ms)
    return ops


def pages(end_ms: int, host: str) -> list[Page]:
    """Every page the bench asks, anchored windows first, then the presets."""
    from flowlens_web.timerange import url_time

    def anchored(hours: int) -> tuple[str, dict]:
        return f"{hours} h to the newest flow", {"from": url_time(end_ms - hours * history.HOUR_MS), "to": url_time(end_ms)}

    def preset(hours: int) -> tuple[str, dict]:
        return f"range={hours}h (to now)", {"range": f"{hours}h"}

    out = []
    for window_of in (anchored, preset):
        for hours in HOURS:
            window, rq = window_of(hours)
            out.append(Page("dashboard", window, "/", rq, _dashboard_ops(rq)))
        for by in EXPLORE_BY:
            for hours in HOURS:
                window, rq = window_of(hours)
                q = {"by": by, **rq}
                out.append(Page(f"explore by {by}", window, "/explore", q, _explore_ops(q)))
        for a, b in SANKEY_PAIRS:
            for hours in SANKEY_HOURS:
                window, rq = window_of(hours)
                q = {"by": "src", "sankey_from": a, "sankey_to": b, **rq}
                out.append(Page(f"explore sankey {a}->{b}", window, "/explore", q, _sankey_ops(q)))
    window, rq = anchored(24)
    q = {"addr": host, **rq}
    out.append(Page(f"flows of one host ({host})", window, "/flows", q, _flows_ops(q)))
    out.append(Page("exporters", "last hour (fixed)", "/exporters", {}, _exporters_ops({})))
    out.append(Page(f"exporter {EXPORTER}", window, f"/exporters/{EXPORTER}", rq, _exporter_ops(rq)))
    return [p for p in out if not ONLY or any(w in p.name for w in ONLY)]


def percentile(sorted_ms: list[float], pct: int) -> float:
    """Nearest rank."""
    return sorted_ms[max(0, -(-pct * len(sorted_ms) // 100) - 1)]
