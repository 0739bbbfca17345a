"""The rollups (hists) planner against plain scans: six hours of random flows, five of them sealed
with their rollups built; top, series and rollups answered from the rollups plus raw edges equal the
same ops over raw flows only and a plain numpy sum, for aligned and unaligned windows; after the raw
flows are pruned the rollups still answer whole buckets the same way."""
import numpy as np
import pytest

from flowlens_store.queries import QueryEngine
from flowlens_store.ring import Ring
from flowlens_store.warm import WarmWriter
from flowmodel import addr
from flowmodel.schema import FlowBatch

from store_testdata import T0, make_batch, with_seq

HOUR = 3_600_000
BASE = (T0 // HOUR) * HOUR
HOST = "10.0.1.1"


def site_flows() -> FlowBatch:
    """6 hours; src from a small pool so keys repeat, some src == dst, a sampled exporter."""
    rng = np.random.default_rng(7)
    parts = []
    for h in range(6):
        b = make_batch(1500, t0=BASE + h * HOUR + 1234, spacing_ms=2391, seed=40 + h)
        n = b.count
        b.columns["src_addr"][:] = addr.from_texts([f"10.0.{a}.{c}" for a, c in rng.integers(0, 4, (n, 2))])
        same = rng.random(n) < 0.05
        b.columns["dst_addr"][same] = b.columns["src_addr"][same]
        b.columns["sampling_rate"][:] = np.where(rng.random(n) < 0.3, 100, 1)
        parts.append(b)
    return FlowBatch.concat(parts)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("hists") / "f.db")
    flows = site_flows()
    w = WarmWriter(path, HOUR, 24, 64, seal_chunk_rows=700)
    cols = with_seq(flows, 1)
    for i in range(0, flows.count, 1000):
        w.write_flows({k: v[i:i + 1000] for k, v in cols.items()})
    flows.columns["seq"] = cols["seq"]
    assert w.seal_due(BASE + 5 * HOUR + 200_000) == 5  # the sixth hour stays rows
    ring = Ring(10)
    ring.evicted_max_time_end = int(flows["time_end"].max())  # SQLite answers
    eng = QueryEngine(ring, path, 600_000, 10_000, 10.0, clock=lambda: BASE + 7 * HOUR)
    yield eng, w, flows
    eng.close()
    w.close()


WINDOWS = [(BASE, BASE + 6 * HOUR), (BASE + 1234, BASE + 5 * HOUR + 777), (BASE + HOUR + 300_000, BASE + 3 * HOUR),
           (BASE + 2 * HOUR + 59_999, BASE + 2 * HOUR + 2_000_001), (BASE + 4 * HOUR + 1, BASE + 6 * HOUR - 1)]


def both(eng, op, args):
    eng.use_rollups = False
    try:
        raw = getattr(eng, op)(dict(args))
    finally:
        eng.use_rollups = True
    return getattr(eng, op)(dict(args)), raw


def plain_top(flows, m, by, metric, scaled):
    rate = np.maximum(flows["sampling_rate"], 1).astype(np.uint64) if scaled else np.ones(flows.count, np.uint64)
    keys = {"src": flows["src_addr"], "dst": flows["dst_addr"], "exporter": flows["exporter"],
            "port": np.minimum(flows["src_port"], flows["dst_port"])}.get(by, flows[by] if by in flows.columns else None)
    acc: dict = {}
    for k, b, p in zip(keys[m].tolist(), (flows["bytes"] * rate)[m].tolist(), (flows["packets"] * rate)[m].tolist()):
        v = acc.setdefault(k, [0, 0, 0])
        v[0] += b
        v[1] += p
        v[2] += 1
    idx = ("bytes", "packets", "flows").index(metric)
    return sorted(acc.items(), key=lambda kv: (-kv[1][idx], kv[0]))


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("by", ["src", "dst", "port", "src_port", "dst_port", "protocol", "exporter"])
def test_top_from_rollups_equals_raw_and_plain(store, window, by):
    eng, _w, flows = store
    since, until = window
    m = (flows["time_end"] >= since) & (flows["time_end"] < until)
    for metric, scaled in (("bytes", False), ("flows", True)):
        rolled, raw = both(eng, "top", {"since": since, "until": until, "by": by, "metric": metric, "limit": 10,
                                        "scaled": scaled})
        assert rolled["source"].startswith("rollups") and raw["source"] == "sqlite"
        assert rolled["rows"] == raw["rows"] and rolled["totals"] == raw["totals"]
        plain = plain_top(flows, m, by, metric, scaled)
        assert [(r["bytes"], r["packets"], r["flows"]) for r in rolled["rows"]] == [tuple(v) for _k, v in plain[:10]]
        assert rolled["totals"]["flows"] == int(m.sum())
        assert not rolled["approximate"]


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("by", ["src", "dst", "protocol"])
def test_top_from_the_shared_totals_cache_equals_raw(store, window, by):
    """The dashboard's tops asked again (a refresh): the merged rollup totals come from the workers'
    shared cache (histread.SealedTotals) and the answer is still the raw scan's."""
    from flowlens_store.histread import SealedTotals

    eng, _w, flows = store
    since, until = window
    args = {"since": since, "until": until, "by": by, "limit": 10, "scaled": True}
    _rolled, raw = both(eng, "top", args)
    eng.sealed_totals = SealedTotals(8 << 20)
    try:
        first, again = eng.top(dict(args)), eng.top(dict(args))
        assert eng.sealed_totals.hits >= 1 and eng.sealed_totals.hits == eng.sealed_totals.misses
    finally:
        eng.sealed_totals = None
    for got in (first, again):
        assert got["source"].startswith("rollups")
        assert got["rows"] == raw["rows"] and got["totals"] == raw["totals"]


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("filt", [{}, {"addr": HOST}, {"src": HOST}, {"dst": HOST}, {"exporter": "127.0.0.2"}])
@pytest.mark.parametrize("step", [60, 300, 3600])
def test_series_from_rollups_equals_raw_and_plain(store, window, filt, step):
    eng, _w, flows = store
    since, until = window
    rolled, raw = both(eng, "series", {"since": since, "until": until, "step": step, **filt})
    if not filt.keys() - {"exporter"} or step % 300 == 0:
        assert rolled["source"].startswith("rollups"), rolled["source"]
    assert rolled["points"] == raw["points"]
    scaled, scaled_raw = both(eng, "series", {"since": since, "until": until, "step": step, "scaled": True, **filt})
    assert scaled["points"] == scaled_raw["points"]
    host = addr.from_texts([HOST])[0]
    m = (flows["time_end"] >= since) & (flows["time_end"] < until)
    if "addr" in filt:
        m &= (flows["src_addr"] == host) | (flows["dst_addr"] == host)
    elif "src" in filt:
        m &= flows["src_addr"] == host
    elif "dst" in filt:
        m &= flows["dst_addr"] == host
    elif "exporter" in filt:
        m &= flows["exporter"] == addr.from_texts(["127.0.0.2"])[0]
    assert m.sum() > 0
    assert sum(p[3] for p in rolled["points"]) == int(m.sum())
    assert sum(p[1] for p in rolled["points"]) == int(flows["bytes"][m].sum())


@pytest.mark.parametrize("kind", ["dst_prefix", "exporter"])
@pytest.mark.parametrize("step", [60, 3600])
def test_rollups_op_equals_a_plain_per_row_sum(store, kind, step):
    eng, _w, flows = store
    since, until = BASE + 1234, BASE + 5 * HOUR + 120_000
    got = eng.rollups({"kind": kind, "since": since, "until": until, "step": step})
    rows = got["rows"]
    have = {(t, k): (b, n) for t, k, b, n in zip(rows["minute"], rows["key"], rows["bytes"], rows["flows"])}
    m = (flows["time_end"] >= since) & (flows["time_end"] < until)
    keys = [addr.prefix_text(bytes(a), 24, 64) for a in addr.mask_column(flows["dst_addr"], 24, 64)] \
        if kind == "dst_prefix" else [addr.to_text(bytes(a)) for a in flows["exporter"]]
    want: dict = {}
    for i in np.flatnonzero(m).tolist():
        t = int(flows["time_end"][i]) // (step * 1000) * step * 1000
        v = want.setdefault((t, keys[i]), [0, 0])
        v[0] += int(flows["bytes"][i])
        v[1] += 1
    assert have == {k: tuple(v) for k, v in want.items()}
    assert rows["minute"] == sorted(rows["minute"])
    top = eng.rollups({"kind": kind, "since": since, "until": until, "step": step, "top": 2})
    assert len(set(top["rows"]["key"])) == min(2, len({k for _t, k in want}))


def test_rollups_outlive_the_raw_flows(store, tmp_path):
    """A copy whose raw flows are pruned (rollups kept): whole buckets answer as before."""
    import sqlite3

    eng, _w, flows = store
    args_top = {"since": BASE, "until": BASE + 5 * HOUR, "by": "src", "limit": 10}
    args_ser = {"since": BASE, "until": BASE + 5 * HOUR, "step": 300, "addr": HOST}
    before_top, before_ser = eng.top(dict(args_top)), eng.series(dict(args_ser))
    copy = str(tmp_path / "copy.db")
    src, dst = sqlite3.connect(eng.sqlite_path), sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    dst.close()
    w = WarmWriter(copy, HOUR, 24, 64)
    dropped = w.prune(BASE + 5 * HOUR + 2, 1, 1000 * HOUR, 1000 * HOUR, 1000 * HOUR,
                      hist_retention_ms={60_000: 1, 300_000: 1000 * HOUR, 3_600_000: 1000 * HOUR})
    assert len(dropped) == 5
    marks = ",".join("?" * len(dropped))
    assert w.db.execute(f"SELECT count(*) FROM blocks WHERE part IN ({marks})", dropped).fetchone() == (0,)
    assert w.db.execute("SELECT count(*) FROM hists WHERE step_ms = 60000").fetchone() == (0,)
    w.close()
    ring = Ring(10)
    ring.evicted_max_time_end = int(flows["time_end"].max())
    old = QueryEngine(ring, copy, 600_000, 10_000, 10.0, clock=eng.clock)
    try:
        after_top, after_ser = old.top(dict(args_top)), old.series(dict(args_ser))
    finally:
        old.close()
    assert after_top["source"] == "rollups" and after_top["rows"] == before_top["rows"]
    assert after_ser["source"] == "rollups" and after_ser["points"] == before_ser["points"]


def test_host_series_reads_one_key_range_chunk_per_hour(tmp_path, monkeypatch):
    """With small key-range chunks the host dimensions are cut into many pieces; a host's series reads
    only the piece that holds it and still equals the raw answer, for every host."""
    from flowlens_store import hists

    monkeypatch.setattr(hists, "CHUNK_ROWS", 20)
    path = str(tmp_path / "f.db")
    flows = site_flows()
    w = WarmWriter(path, HOUR, 24, 64, seal_chunk_rows=2000)
    w.write_flows(with_seq(flows, 1))
    assert w.seal_due(BASE + 5 * HOUR + 200_000) == 5
    chunks = w.db.execute("SELECT count(*) FROM hists WHERE dim = 'src' AND step_ms = 300000").fetchone()[0]
    assert chunks >= 4 * 5  # several pieces per hour
    w.close()
    ring = Ring(10)
    ring.evicted_max_time_end = int(flows["time_end"].max())
    eng = QueryEngine(ring, path, 600_000, 10_000, 10.0, clock=lambda: BASE + 7 * HOUR)
    try:
        for host in sorted({addr.to_text(bytes(a)) for a in flows["src_addr"][:400]}):
            for filt in ({"addr": host}, {"src": host}, {"dst": host}):
                rolled, raw = both(eng, "series", {"since": BASE, "until": BASE + 5 * HOUR, "step": 300, **filt})
                assert rolled["source"] == "rollups" and rolled["points"] == raw["points"], filt
    finally:
        eng.close()


@pytest.mark.parametrize("kind,step", [("dst_prefix", 3600), ("exporter", 60)])
def test_rollups_of_a_window_with_no_flows_is_an_empty_answer(tmp_path, kind, step):
    """A new install: the analyzer asks for rollups before any flow arrived (the raw ranges are empty)."""
    path = str(tmp_path / "f.db")
    w = WarmWriter(path, HOUR, 24, 64)
    w.write_flows({k: v[:0] for k, v in with_seq(site_flows(), 1).items()})
    ring = Ring(10)
    eng = QueryEngine(ring, path, 600_000, 10_000, 10.0, clock=lambda: BASE + 7 * HOUR)
    got = eng.rollups({"kind": kind, "since": BASE, "until": BASE + 7 * HOUR, "step": step})
    assert got["rows"]["minute"] == [] and got["rows"]["key"] == []
    eng.close()
    w.close()


def test_an_error_about_many_unknown_arguments_stays_short():
    from flowlens_store.planner import check_args
    from flowmodel.protocol import QueryError
    with pytest.raises(QueryError) as err:
        check_args("top", {f"k{i:05d}" * 20: 1 for i in range(5000)}, ("by", "limit"))
    text = str(err.value)
    assert len(text) < 400 and "and 4995 more" in text and "it takes by, limit" in text
