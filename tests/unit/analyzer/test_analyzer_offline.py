"""`flowlens analyze` over a stored range (offline.analyze_range), against an in-memory stand-in for the
store's flows op (newest first, keyset pages, since <= time_end < until: the store's rules); the real
store is used in tests/integration/test_analyzer_offline_store.py."""
import numpy as np

from flowlens_analyzer.offline import analyze_range
from flowmodel.client import FlowPage
from flowmodel.schema import FlowBatch

from flows import T0, batch, config

S = 1000
MIN = 60 * S
NOW = T0 + 400 * 86_400 * S  # the wall clock: long after every flow here


class Store:
    """The flows op over one FlowBatch: newest first, pages of `limit`, a cursor to the next page."""

    def __init__(self, flows: FlowBatch):
        order = np.argsort(-flows["time_end"], kind="stable")
        self.data = flows.select(order)
        self.queries = 0

    def flows(self, limit=100, cursor=None, since=None, until=None, **_):
        self.queries += 1
        end = self.data["time_end"]
        sel = np.flatnonzero((end >= since) & (end < until))
        start = int(cursor or 0)
        page = sel[start:start + limit]
        nxt = str(start + limit) if start + limit < len(sel) else None
        return FlowPage(self.data.select(page), nxt, None, {})


def steady(t0, minutes, per_s=20, dst="10.1.1.", seed=1):
    """Steady traffic to ten /24s (enough bytes per minute to be judged by the anomaly baseline)."""
    rng = np.random.default_rng(seed)
    n = minutes * 60 * per_s
    ends = t0 + np.sort(rng.integers(0, minutes * MIN, n))
    dsts = [f"{dst[:-2]}{i}.{int(h)}" for i, h in zip(rng.integers(0, 10, n), rng.integers(1, 250, n))]
    return batch("203.0.113.7", dsts, 443, src_port=rng.integers(1024, 60000, n), bytes=20_000, time_end=ends)


def scan_at(t):
    return batch("10.0.0.66", "10.0.0.5", np.arange(1, 301), packets=1, tcp_flags=2,
                 time_end=t + np.arange(300) * 100, exporter="192.0.2.1")


def test_no_window_past_until_so_no_false_link_failure():
    cfg = config()
    store = Store(steady(T0, 20))
    for until in (T0 + 20 * MIN, T0 + 19 * MIN + 30 * S):
        events = analyze_range(cfg, store, T0, until, now_ms=NOW)
        drops = [e for e in events if e["key"].startswith("anomaly:")]
        assert drops == [], (until, [e["description"] for e in drops])
        assert max(e["last_seen"] for e in events) <= until
    # The same data with a real gap before until: the silence inside the range is reported.
    events = analyze_range(cfg, store, T0, T0 + 25 * MIN, now_ms=NOW)
    assert any("dropped 100%" in e["description"] for e in events)


def test_slices_fit_the_window_bound_so_a_busy_range_keeps_its_scan():
    # 200 flows/s: a 10-minute slice is 120,000 flows; a window plus an interval is 24,000.
    cfg = config(max_window_flows=30_000)
    flows = FlowBatch.concat([steady(T0, 10, per_s=200), scan_at(T0 + 3 * MIN + 5 * S)])
    store = Store(flows)
    events = analyze_range(cfg, store, T0, T0 + 10 * MIN, now_ms=NOW)
    assert any(e["key"] == "scan:10.0.0.66" for e in events)


def test_years_of_empty_time_cost_few_queries_and_the_data_after_them_is_analysed():
    cfg = config()
    later = T0 + 30 * 86_400 * S
    store = Store(FlowBatch.concat([steady(T0, 3), scan_at(later + 10 * S)]))
    events = analyze_range(cfg, store, T0 - 365 * 86_400 * S, later + 5 * MIN, now_ms=NOW)
    assert store.queries < 400
    assert any(e["key"] == "scan:10.0.0.66" and e["first_seen"] >= later for e in events)


def test_nothing_after_now_minus_the_watermark_is_analysed():
    cfg = config(watermark="30s")
    store = Store(steady(T0, 5))
    events = analyze_range(cfg, store, T0, T0 + 10 * MIN, now_ms=T0 + 5 * MIN)
    assert events and max(e["last_seen"] for e in events) <= T0 + 5 * MIN - 30 * S


def test_the_table_dates_each_advisory():
    """`flowlens analyze --since 2023-05-09 ...` printed FIRST/LAST as 11:48: over a stored range of
    days the time alone does not say which day."""
    from flowlens_analyzer.offline import format_table

    adv = {"severity": "INFO", "state": "resolved", "first_seen": 1683632880000, "last_seen": 1683719340000,
           "description": "d", "action": "a", "key": "top_talkers:x"}
    first, second = format_table([adv]).splitlines()[1:]
    assert "2023-05-09 11:48" in first and "2023-05-10 11:49" in first
    assert second.index("->") == first.index(" d") + 1  # the action lines up under the description
