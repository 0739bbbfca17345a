"""The pair rollups (hists if_pair, as_pair): top and explore by in_if,out_if and src_as,dst_as (either
order) answer from them over sealed hours exactly as the raw flows do, on random sites, windows,
metrics and steps; one exporter's interface pairs too; and a store whose partitions were sealed
before the pair rollups existed reads those partitions' flows and gives the same answer."""
import numpy as np
import pytest

from flowmodel import addr
from flowmodel.schema import FlowBatch
from flowlens_store import hists
from flowlens_store import keydims as K
from flowlens_store.queries import QueryEngine
from flowlens_store.ring import Ring
from flowlens_store.warm import WarmWriter

from store_testdata import T0, make_batch, with_seq
from test_explore import raw_too

HOUR = 3_600_000
BASE = (T0 // HOUR) * HOUR
ROLLED_PAIRS = ["in_if,out_if", "out_if,in_if", "src_as,dst_as", "dst_as,src_as"]
ANSWER = ("times", "series", "other", "totals", "step_ms")


def random_site(seed: int) -> FlowBatch:
    """4.5 hours of flows from 1-4 exporters with random interface and AS pools (some pools of one)."""
    rng = np.random.default_rng(seed)
    parts = []
    for h in range(5):
        n = int(rng.integers(300, 900)) if h < 4 else 200
        b = make_batch(n, t0=BASE + h * HOUR + int(rng.integers(0, 2000)), spacing_ms=(HOUR // 2 if h == 4 else HOUR) // n,
                       seed=seed * 10 + h)
        exporters = [f"127.0.{seed % 7}.{e}" for e in range(1, int(rng.integers(2, 6)))]
        b.columns["exporter"][:] = addr.from_texts(list(rng.choice(exporters, n)))
        b.columns["input_if"][:] = rng.integers(0, int(rng.integers(1, 12)), n)
        b.columns["output_if"][:] = rng.integers(0, int(rng.integers(1, 12)), n)
        b.columns["src_as"][:] = rng.choice([0, 64500, 64501, 65010, 4_200_000_000][:int(rng.integers(1, 6))], n)
        b.columns["dst_as"][:] = rng.choice([15169, 13335, 64500, 0][:int(rng.integers(1, 5))], n)
        b.columns["bytes"][:] = rng.integers(1, 1 << int(rng.integers(8, 40)), n)
        b.columns["sampling_rate"][:] = rng.choice([0, 1, 10, 1000], n)
        parts.append(b)
    return FlowBatch.concat(parts)


def open_store(path: str, flows: FlowBatch, sealed_hours: int = 4):
    w = WarmWriter(path, HOUR, 24, 64, seal_chunk_rows=300)
    cols = with_seq(flows, 1)
    for i in range(0, flows.count, 700):
        w.write_flows({k: v[i:i + 700] for k, v in cols.items()})
    assert w.seal_due(BASE + sealed_hours * HOUR + 200_000) == sealed_hours  # the fifth hour stays rows
    ring = Ring(10)
    ring.evicted_max_time_end = int(flows["time_end"].max())  # nothing recent in memory: SQLite answers
    return w, QueryEngine(ring, path, 600_000, 10_000, 10.0, clock=lambda: BASE + 6 * HOUR)


@pytest.fixture(scope="module", params=[3, 17, 29])
def site(request, tmp_path_factory):
    flows = random_site(request.param)
    w, eng = open_store(str(tmp_path_factory.mktemp(f"pairs{request.param}") / "f.db"), flows)
    yield eng, flows, np.random.default_rng(request.param + 100)
    eng.close()
    w.close()


def random_window(rng) -> tuple[int, int]:
    since = BASE + int(rng.integers(-HOUR // 2, 3 * HOUR))
    if rng.random() < 0.4:
        since = since // HOUR * HOUR  # on the hour: whole hourly buckets
    return since, int(rng.integers(since + 300_000, BASE + 5 * HOUR))


@pytest.mark.parametrize("by", ROLLED_PAIRS)
def test_pair_rollups_answer_explore_and_top_exactly_as_the_flows(site, by):
    eng, flows, rng = site
    for _ in range(4):
        since, until = random_window(rng)
        metric = str(rng.choice(["bytes", "packets", "flows"]))
        args = {"since": since, "until": until, "by": by, "metric": metric, "limit": int(rng.integers(1, 12)),
                "scaled": bool(rng.random() < 0.5), "step": int(rng.choice([0, 300, 3600, 7200]))}
        got, raw = eng.explore(args), raw_too(eng, "explore", args)
        assert raw["source"] == "sqlite"
        assert got["source"].startswith("rollups"), f"{args}: sealed hours come from the {K.HIST_DIM[by]} rollups"
        assert {k: got[k] for k in ANSWER} == {k: raw[k] for k in ANSWER}, args
        top_args = {k: v for k, v in args.items() if k != "step"}
        top, raw_top = eng.top(top_args), raw_too(eng, "top", top_args)
        assert top["source"].startswith("rollups") and raw_top["source"] == "sqlite"
        assert (top["rows"], top["totals"]) == (raw_top["rows"], raw_top["totals"]), top_args
        m = (flows["time_end"] >= since) & (flows["time_end"] < until)
        assert top["totals"]["flows"] == int(m.sum())


def test_one_exporters_interface_pairs_answer_from_rollups(site):
    eng, flows, _rng = site
    exporter = addr.to_text(flows["exporter"][0])
    args = {"since": BASE, "until": BASE + 4 * HOUR, "by": "in_if,out_if", "exporter": exporter, "limit": 50}
    got = eng.explore(args)
    assert got["source"] == "rollups" and {k: got[k] for k in ANSWER} == {k: raw_too(eng, "explore", args)[k]
                                                                           for k in ANSWER}
    assert got["series"] and all(s["filter"]["exporter"] == exporter for s in got["series"])
    m = (flows["exporter"] == flows["exporter"][0]) & (flows["time_end"] < BASE + 4 * HOUR)
    assert got["totals"]["flows"] == int(m.sum())


def test_an_as_pair_key_and_filter_name_both_sides(site):
    eng, flows, _rng = site
    got = eng.top({"since": BASE, "until": BASE + 4 * HOUR, "by": "dst_as,src_as", "limit": 1})
    row = got["rows"][0]
    dst, src = row["filter"]["dst_as"], row["filter"]["src_as"]
    assert row["key"] == f"AS{dst} -> AS{src}"
    m = (flows["time_end"] >= BASE) & (flows["time_end"] < BASE + 4 * HOUR) & (flows["dst_as"] == dst) & \
        (flows["src_as"] == src)
    assert row["flows"] == int(m.sum()) and row["bytes"] == int(flows["bytes"][m].sum())


def test_partitions_sealed_before_the_pair_rollups_read_their_flows(tmp_path, monkeypatch):
    """A store file from before the pair rollups: its sealed hours have no if_pair/as_pair blobs, so
    the pairs are summed from those hours' flows (source sqlite) and equal the raw answer."""
    flows = random_site(5)
    with monkeypatch.context() as m:
        for dim in ("if_pair", "as_pair"):
            m.delitem(hists.DIMS, dim)
        w, eng = open_store(str(tmp_path / "old.db"), flows)
    try:
        assert not eng._read(lambda db: db.execute("SELECT count(*) FROM hists WHERE dim IN ('if_pair', 'as_pair')")
                             .fetchone()[0])
        for by in ("in_if,out_if", "src_as,dst_as"):
            args = {"since": BASE, "until": BASE + 4 * HOUR, "by": by, "limit": 6, "step": 3600}
            got = eng.explore(args)
            assert got["source"] == "sqlite" and got["totals"]["flows"] == int((flows["time_end"] < BASE + 4 * HOUR).sum())
            assert {k: got[k] for k in ANSWER} == {k: raw_too(eng, "explore", args)[k] for k in ANSWER}
            # the other rollups still answer their own dimensions
            assert eng.explore({**args, "by": by.split(",")[0]})["source"] == "rollups"
    finally:
        eng.close()
        w.close()
