"""Pro-rated (spread) and sampling-scaled series and top: the spread against a brute-force overlap
reference, and ring and SQLite giving the same answers."""
import numpy as np
import pytest

from flowmodel.protocol import QueryError
from flowmodel.schema import FlowBatch
from flowlens_store import planner as P
from flowlens_store.queries import QueryEngine
from flowlens_store.ring import Ring
from flowlens_store.warm import WarmWriter

from store_testdata import T0, make_batch, with_seq

HOUR = 3_600_000


def overlap_reference(ts, te, values, origin, step, steps):
    """Each flow's value split by the share of its lifetime inside each step; instant flows whole at
    their end (the rule SpreadSeries implements)."""
    out = np.zeros(steps)
    for s, e, v in zip(ts.tolist(), te.tolist(), values.tolist()):
        if s <= 0 or s >= e:
            k = (e - origin) // step
            if 0 <= k < steps:
                out[k] += v
            continue
        for k in range(steps):
            lo, hi = origin + k * step, origin + (k + 1) * step
            ov = min(hi, e) - max(lo, s)
            if ov > 0:
                out[k] += v * ov / (e - s)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_spread_matches_the_overlap_reference(seed):
    rng = np.random.default_rng(seed)
    n, origin, step, steps = 400, 1_790_000_000_000, 10_000, 30
    te = origin + rng.integers(-60_000, steps * step + 60_000, n)
    dur = rng.choice([0, 1, 999, 10_000, 65_000, 400_000], n)
    ts = te - dur
    ts[rng.random(n) < 0.05] = 0  # no start time exported
    b = rng.integers(40, 10**9, n).astype(np.uint64)
    acc = P.SpreadSeries(origin, step, steps)
    acc.add_flows(ts, te, [b, b // 7])
    got = acc.totals()
    ref = overlap_reference(ts, te, b, origin, step, steps)
    assert np.abs(got[0] - ref).max() <= 1.0  # rounding only
    ref_p = overlap_reference(ts, te, b // 7, origin, step, steps)
    assert np.abs(got[1] - ref_p).max() <= 1.0


def test_a_long_flow_is_spread_evenly_not_a_spike_at_its_end():
    acc = P.SpreadSeries(0, 10_000, 8)
    acc.add_flows(np.array([10_000]), np.array([70_000]), [np.array([6_000_000]), np.array([6000])])
    assert acc.totals()[0].tolist() == [0, 1_000_000, 1_000_000, 1_000_000, 1_000_000, 1_000_000, 1_000_000, 0]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """Flows with mixed lifetimes and sampling rates (1, 100, unknown 0) in a ring and in SQLite."""
    path = str(tmp_path_factory.mktemp("spread") / "f.db")
    w = WarmWriter(path, HOUR, 24, 64)
    ring = Ring(10_000, segment_rows=512)  # several segments: the overview folds them one at a time
    batches = []
    for i in range(3):
        b = make_batch(1000, t0=T0 + i * 10_000, spacing_ms=10, seed=i)
        rng = np.random.default_rng(100 + i)
        b.columns["time_start"][:] = b["time_end"] - rng.choice([0, 500, 20_000, 90_000], b.count)
        b.columns["sampling_rate"][:] = rng.choice([1, 100, 0], b.count)
        batches.append(b)
    seq = 1
    for b in batches:
        ring.append(b, seq)
        w.write_flows(with_seq(b, seq))
        seq += b.count
    eng = QueryEngine(ring, path, 600_000, 10_000, 5.0, clock=lambda: T0 + 60_000)
    yield eng, FlowBatch.concat(batches)
    eng.close()
    w.close()


RING = {"since": T0 - 1}
SQL = {"since": T0 - 20 * 60_000}


def test_spread_and_scaled_series_agree_between_ring_and_sqlite(engine):
    eng, flows = engine
    until = T0 + 60_000
    for extra in ({"spread": True}, {"scaled": True}, {"spread": True, "scaled": True}):
        a = eng.series({"since": T0 - 100_000, "until": until, "step": 5, **extra})
        # the same window, forced to SQLite by an engine whose ring says everything was evicted
        ring = Ring(10)
        ring.evicted_max_time_end = int(flows["time_end"].max())
        sql_eng = QueryEngine(ring, eng.sqlite_path, 600_000, 10_000, 5.0, clock=eng.clock)
        try:
            b = sql_eng.series({"since": T0 - 100_000, "until": until, "step": 5, **extra})
        finally:
            sql_eng.close()
        assert a["source"] == "ring" and b["source"] == "sqlite"
        assert a["points"] == b["points"], extra


def test_scaled_series_and_top_multiply_by_the_sampling_rate(engine):
    eng, flows = engine
    rate = np.maximum(flows["sampling_rate"], 1).astype(np.uint64)
    want = int((flows["bytes"] * rate).sum())
    for window in (RING, SQL):
        s = eng.series({**window, "until": T0 + 60_000, "step": 10, "scaled": True})
        assert sum(p[1] for p in s["points"]) == want
        t = eng.top({**window, "by": "exporter", "scaled": True, "limit": 10})
        assert t["totals"]["bytes"] == want and t["scaled"] is True
        assert t["totals"]["packets"] == int((flows["packets"] * rate).sum())
        raw = eng.top({**window, "by": "exporter", "limit": 10})
        assert raw["totals"]["bytes"] == int(flows["bytes"].sum()) < want


def test_spread_keeps_what_falls_in_the_window_and_counts_flows_where_they_end(engine):
    eng, flows = engine
    s = eng.series({"since": T0 - 200_000, "until": T0 + 60_000, "step": 10, "spread": True})
    # every flow starts after T0 - 100 s and ends before T0 + 30 s: the whole volume is inside
    assert abs(sum(p[1] for p in s["points"]) - int(flows["bytes"].sum())) <= len(s["points"])
    assert sum(p[3] for p in s["points"]) == flows.count
    early = [p for p in s["points"] if p[0] < T0 - 1000]
    assert sum(p[1] for p in early) > 0 and sum(p[3] for p in early) == 0  # long flows' bytes before T0


@pytest.mark.parametrize("args,words", [
    ({"spread": "maybe", "since": T0}, "spread must be true or false"),
    ({"spread": True}, "needs a since"),
    ({"scaled": [1], "since": T0}, "scaled must be true or false"),
])
def test_bad_spread_and_scaled_arguments(engine, args, words):
    eng, _ = engine
    with pytest.raises(QueryError, match=words):
        eng.series({"step": 10, **args})


def test_rollups_keep_exported_and_scaled_sums(engine):
    eng, flows = engine
    rate = np.maximum(flows["sampling_rate"], 1).astype(np.uint64)
    for scaled, want_b, want_p in ((False, flows["bytes"].sum(), flows["packets"].sum()),
                                   (True, (flows["bytes"] * rate).sum(), (flows["packets"] * rate).sum())):
        r = eng.rollups({"kind": "exporter", "since": 0, "scaled": scaled})
        assert r["scaled"] is scaled
        assert sum(r["rows"]["bytes"]) == int(want_b) and sum(r["rows"]["packets"]) == int(want_p)
        assert sum(r["rows"]["flows"]) == flows.count


@pytest.mark.parametrize("window", [{"since": T0 - 100_000, "until": T0 + 60_000},
                                    {"since": T0 - 20 * 60_000, "until": T0 + 60_000}], ids=["ring", "sqlite"])
def test_overview_equals_its_parts(engine, window):
    """One read of the ring gives exactly what series (spread, scaled) and three scaled tops give."""
    eng, _ = engine
    ov = eng.overview({**window, "step": 5, "limit": 7})
    s = eng.series({**window, "step": 5, "spread": True, "scaled": True})
    assert ov["series"]["points"] == s["points"] and ov["series"]["scaled"] is True
    for by in ("src", "dst", "protocol"):
        t = eng.top({**window, "by": by, "limit": 7, "scaled": True})
        assert ov["top"][by]["rows"] == t["rows"] and ov["top"][by]["totals"] == t["totals"]
    with pytest.raises(QueryError, match="since"):
        eng.overview({"step": 5})


def test_rollups_by_hour_and_top_keys(engine):
    eng, flows = engine
    per_min = eng.rollups({"kind": "dst_prefix", "since": 0})
    hourly = eng.rollups({"kind": "dst_prefix", "since": 0, "step": 3600})
    assert hourly["step_ms"] == 3_600_000 and all(m % 3_600_000 == 0 for m in hourly["rows"]["minute"])
    assert sum(hourly["rows"]["bytes"]) == sum(per_min["rows"]["bytes"]) == int(flows["bytes"].sum())
    totals: dict = {}
    for k, b in zip(per_min["rows"]["key"], per_min["rows"]["bytes"]):
        totals[k] = totals.get(k, 0) + b
    best = sorted(totals, key=lambda k: (-totals[k], k))[:2]
    top = eng.rollups({"kind": "dst_prefix", "since": 0, "step": 3600, "top": 2})
    assert sorted(set(top["rows"]["key"])) == sorted(best)
    assert sum(top["rows"]["bytes"]) == sum(totals[k] for k in best)
    for bad, words in (({"step": 90}, "whole minutes"), ({"top": 0}, "at least")):
        with pytest.raises(QueryError, match=words):
            eng.rollups({"kind": "exporter", "since": 0, **bad})


def test_overview_of_a_recent_window_the_ring_holds_in_part_is_cut_to_that_part(tmp_path):
    """More flows/s than the ring covers for 10 minutes: the overview answers from memory for the part
    the ring holds (since = just after the newest evicted flow), says so, and agrees with series/top
    over that part; a window the ring holds whole is not cut."""
    ring = Ring(1000)
    now = T0 + 600_000
    b = make_batch(3000, t0=now - 300_000, spacing_ms=100, seed=5)  # 3,000 flows over the last 5 minutes
    ring.append(b, 1)
    eng = QueryEngine(ring, str(tmp_path / "none.db"), 600_000, 10_000, 5.0, clock=lambda: now)
    try:
        ov = eng.overview({"since": now - 600_000, "until": now, "step": 10, "limit": 5})
        assert ov["clamped"] is True and ov["since"] == ring.evicted_max_time_end + 1
        part = {"since": ov["since"], "until": now}
        assert ov["series"]["points"] == eng.series({**part, "step": 10, "spread": True, "scaled": True})["points"]
        kept = (b["time_end"] >= ov["since"]).sum()
        assert ov["top"]["src"]["totals"]["flows"] == kept == 1000
        whole = eng.overview({"since": ov["since"], "until": now, "step": 10, "limit": 5})
        assert whole["clamped"] is False and whole["since"] == ov["since"]
    finally:
        eng.close()
