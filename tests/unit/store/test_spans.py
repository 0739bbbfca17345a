"""The hot (unsealed) partition has no time index: queries find its rows through ``spans`` (seq range
-> time_end range). Many small spans whose time ranges overlap (late and early rows), read through
every op, must give exactly what the same rows give once the partition is sealed (time index)."""
import numpy as np
import pytest

from flowlens_store.queries import QueryEngine
from flowlens_store.ring import Ring
from flowlens_store.warm import WarmWriter, partition_name
from flowmodel.schema import FlowBatch

from store_testdata import T0, make_batch, with_seq
from test_planner import FILTERS, mask_for, page_keys, walk, walk_back, want_keys

HOUR = 3_600_000
BASE = (T0 // HOUR) * HOUR + 600_000  # 10 minutes into an hour: every row lands in one partition


def shuffled_batches() -> list[FlowBatch]:
    """24 batches of 250 whose time_end runs backwards inside each batch (like the load generator's
    sawtooth), overlaps the neighbours' and, every 5th batch, reaches 40 s into the past (late flows)."""
    out = []
    for i in range(24):
        b = make_batch(250, t0=BASE + i * 2_000, spacing_ms=9, seed=100 + i)
        te = b.columns["time_end"]
        te[:] = te[::-1].copy()
        if i % 5 == 4:
            te[::7] -= 40_000
        out.append(b)
    return out


def open_store(path: str, span_rows: int, per_transaction: int = 1):
    w = WarmWriter(path, HOUR, 24, 64, span_rows=span_rows)
    seq = 1
    batches = shuffled_batches()
    for i in range(0, len(batches), per_transaction):
        b = FlowBatch.concat(batches[i:i + per_transaction])
        w.write_flows(with_seq(b, seq))
        seq += b.count
    ring = Ring(10)
    flows = FlowBatch.concat(batches)
    flows.columns["seq"] = np.arange(1, seq, dtype=np.int64)
    ring.evicted_max_time_end = int(flows["time_end"].max())  # as after a restart: SQLite answers everything
    eng = QueryEngine(ring, path, 600_000, 10_000, 5.0, clock=lambda: BASE + 10 * HOUR)
    return eng, w, flows


@pytest.fixture(scope="module", params=["spans", "split", "sealed"])
def store(request, tmp_path_factory):
    """spans: 24 transactions of 250 rows, two per span; split: 3 transactions of 2000 rows, each cut
    into four spans; sealed: the first, then sealed (time index, no spans)."""
    per = 8 if request.param == "split" else 1
    eng, w, flows = open_store(str(tmp_path_factory.mktemp("spans") / "f.db"), span_rows=500, per_transaction=per)
    name = partition_name((BASE // HOUR) * HOUR)
    idx = {r[0] for r in w.db.execute("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name=?", (name,))}
    assert idx == set()  # no index is kept up to date while rows arrive
    spans = w.db.execute("SELECT seq_lo, seq_hi, time_lo, time_hi, rows FROM spans WHERE part = ? ORDER BY seq_lo",
                         (name,)).fetchall()
    assert len(spans) == 12 and sum(s[4] for s in spans) == flows.count and {s[4] for s in spans} == {500}
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:]))
    if request.param == "sealed":
        assert w.seal_due(BASE + 2 * HOUR) == 1
        assert w.db.execute("SELECT count(*) FROM spans").fetchone()[0] == 0
    yield eng, flows
    eng.close()
    w.close()


WINDOWS = [{}, {"since": BASE + 10_000}, {"since": BASE + 3_000, "until": BASE + 21_000},
           {"until": BASE + 8_000}, {"since": BASE - 39_000, "until": BASE - 20_000}]


@pytest.mark.parametrize("window", WINDOWS, ids=["all", "since", "both", "until", "late-only"])
@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f) or "none")
@pytest.mark.parametrize("limit", [7, 400])
def test_pages_through_spans_equal_the_time_index(store, window, filters, limit):
    eng, flows = store
    m = mask_for(flows, {**window, **filters})
    assert m.any()
    pages = walk(eng, {**window, **filters}, limit)
    assert page_keys(pages) == want_keys(flows, m)
    back = walk_back(eng, {**window, **filters}, pages[-1], limit)
    assert [page_keys([p]) for p in back] == [page_keys([p]) for p in pages]
    assert {p["source"] for p in pages} == {"sqlite"}


@pytest.mark.parametrize("window", WINDOWS, ids=["all", "since", "both", "until", "late-only"])
def test_top_and_series_through_spans_equal_the_input(store, window):
    eng, flows = store
    m = mask_for(flows, window)
    args = {"since": BASE - HOUR, **window}
    top = eng.top({**args, "by": "dst_port", "metric": "flows", "limit": 10})
    assert top["source"] in ("sqlite", "rollups", "rollups+sqlite")
    assert {r["key"]: r["flows"] for r in top["rows"]} == \
        {str(p): int(((flows["dst_port"] == p) & m).sum()) for p in np.unique(flows["dst_port"][m])}
    assert top["totals"]["bytes"] == int(flows["bytes"][m].sum())
    ser = eng.series({**args, "until": window.get("until", BASE + HOUR), "step": 1})
    got = {t: (b, n) for t, b, _p, n in ser["points"] if n}
    sec = flows["time_end"][m] // 1000 * 1000
    want = {int(t): (int(flows["bytes"][m][sec == t].sum()), int((sec == t).sum())) for t in np.unique(sec)}
    assert got == want


def test_seq_ranges_merge_runs_of_spans_that_meet_the_window():
    spans = [(1, 10, 100, 200), (11, 20, 150, 300), (21, 30, 290, 400), (31, 40, 120, 130), (41, 50, 500, 600)]
    assert QueryEngine._seq_ranges(spans, 0, 10_000) is None  # all of it: no seq term at all
    assert QueryEngine._seq_ranges([], 0, 1) is None            # no spans: the time index answers
    assert QueryEngine._seq_ranges(spans, 250, 310) == [(11, 30)]
    assert QueryEngine._seq_ranges(spans, 125, 160) == [(1, 20), (31, 40)]
    assert QueryEngine._seq_ranges(spans, 401, 499) == []


def test_partition_from_before_spans_is_read_whole(tmp_path):
    """An unsealed partition written by the older layout (time index, no spans) gets one span over all it
    may hold when the writer opens the file, so span-based reads still see every row."""
    path = str(tmp_path / "f.db")
    eng, w, flows = open_store(path, span_rows=500)
    w.db.execute("DELETE FROM spans")  # as the older version left it
    w.close()
    w2 = WarmWriter(path, HOUR, 24, 64)
    assert w2.db.execute("SELECT seq_lo, seq_hi, rows FROM spans").fetchall() == [(0, flows.count, flows.count)]
    more = make_batch(100, t0=BASE + 100_000, seed=7)
    w2.write_flows(with_seq(more, flows.count + 1))
    eng.ring.evicted_max_time_end = int(more["time_end"].max())
    assert sum(p["count"] for p in walk(eng, {}, 1000)) == flows.count + 100
    top = eng.top({"since": BASE - HOUR, "by": "protocol", "metric": "flows"})
    assert top["totals"]["flows"] == flows.count + 100
    eng.close()
    w2.close()
