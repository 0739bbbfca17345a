"""The explore op, top by interface/AS/DSCP and the interface, AS and DSCP flow filters, against a
plain numpy sum of the same flows: six hours, five sealed (blocks and rollups), the sixth still rows,
plus a ring holding the newest minutes. The rollups' answer equals the raw rows' answer; totals equal
the series plus other and top's totals; each series' filter selects exactly its key's flows."""
import numpy as np
import pytest

from flowmodel import addr
from flowmodel.protocol import QueryError, normalise_flow_filters
from flowmodel.schema import FlowBatch
from flowlens_store import explore as X
from flowlens_store import keydims as K
from flowlens_store import planner as P
from flowlens_store.queries import QueryEngine
from flowlens_store.ring import Ring
from flowlens_store.warm import WarmWriter

from store_testdata import T0, make_batch, with_seq

HOUR = 3_600_000
BASE = (T0 // HOUR) * HOUR
DIMS = ["src", "dst", "pair", "port", "src_port", "protocol", "exporter", "in_if", "out_if", "src_as", "dst_as",
        "dscp", "in_if,out_if", "src_as,dst_as"]


def site_flows() -> FlowBatch:
    """6 hours; small pools of sources, interfaces, AS numbers and DSCP values so keys repeat."""
    rng = np.random.default_rng(11)
    parts = []
    for h in range(6):
        b = make_batch(1200, t0=BASE + h * HOUR + 777, spacing_ms=2991, seed=60 + h)
        n = b.count
        b.columns["src_addr"][:] = addr.from_texts([f"10.0.{a}.{c}" for a, c in rng.integers(0, 5, (n, 2))])
        b.columns["output_if"][:] = rng.integers(1, 6, n)
        b.columns["src_as"][:] = rng.choice([0, 64500, 64501, 65010], n)
        b.columns["dst_as"][:] = rng.choice([64500, 15169, 13335], n)
        b.columns["tos"][:] = rng.choice([0, 3, 46 << 2, (46 << 2) | 1, 10 << 2], n)
        b.columns["sampling_rate"][:] = np.where(rng.random(n) < 0.3, 10, 1)
        parts.append(b)
    return FlowBatch.concat(parts)


def site_store(path: str, now: dict):
    """(writer, engine, flows) of site_flows: five hours sealed, the sixth rows, its last half hour in
    the ring too; the engine's clock reads ``now["t"]``. Shared by the pair tests (test_top_pairs)."""
    flows = site_flows()
    w = WarmWriter(path, HOUR, 24, 64, seal_chunk_rows=500)
    cols = with_seq(flows, 1)
    for i in range(0, flows.count, 1000):
        w.write_flows({k: v[i:i + 1000] for k, v in cols.items()})
    assert w.seal_due(BASE + 5 * HOUR + 200_000) == 5  # the sixth hour stays rows
    ring = Ring(100_000)
    newest = flows["time_end"] >= BASE + 5 * HOUR + 30 * 60_000
    ring.append(FlowBatch({k: v[newest] for k, v in flows.columns.items()}), int(cols["seq"][newest][0]))
    ring.evicted_max_time_end = int(flows["time_end"][~newest].max())
    return w, QueryEngine(ring, path, 40 * 60_000, 10_000, 10.0, clock=lambda: now["t"]), flows


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    w, eng, flows = site_store(str(tmp_path_factory.mktemp("explore") / "f.db"), {"t": BASE + 6 * HOUR})
    yield eng, flows
    eng.close()
    w.close()


def numpy_key(by: str, flows, m) -> np.ndarray:
    return np.stack(K.key_words(by, {c: flows[c][m] for c in K.columns(by)}), axis=1)


def raw_too(eng, op, args):
    eng.use_rollups = False
    try:
        return getattr(eng, op)(dict(args))
    finally:
        eng.use_rollups = True


# ------------------------------------------------------------------ pure parts

def test_step_is_chosen_for_about_300_steps_rounded_up():
    assert X.choose_step_ms(HOUR) == 60_000
    assert X.choose_step_ms(HOUR, finest_ms=300_000) == 300_000
    assert X.choose_step_ms(24 * HOUR) == 300_000
    assert X.choose_step_ms(72 * HOUR) == 3_600_000
    assert X.choose_step_ms(7 * 24 * HOUR) == 3_600_000
    assert X.choose_step_ms(30 * 24 * HOUR) == 21_600_000
    assert X.choose_step_ms(365 * 24 * HOUR) == 2 * 86_400_000
    assert X.step_arg({}) == 0 and X.step_arg({"step": "0"}) == 0 and X.step_arg({"step": 300}) == 300_000


@pytest.mark.parametrize("step,words", [("x", "not a number"), (1.5, "whole number"), (-60, "whole number"),
                                        (True, "whole number")])
def test_bad_steps_say_why(step, words):
    with pytest.raises(QueryError, match=words):
        X.step_arg({"step": step})


@pytest.mark.parametrize("args,words", [({"dscp": 64}, "dscp 64 is outside 0-63"),
                                        ({"input_if": "eth0"}, "input_if 'eth0' is not a whole number"),
                                        ({"as": -3}, "as -3 is not a whole number"),
                                        ({"src_as": 1 << 32}, "src_as 4294967296 is outside"),
                                        ({"output_if": True}, "output_if True")])
def test_bad_new_filters_name_their_argument(args, words):
    with pytest.raises(QueryError, match=words):
        normalise_flow_filters(args)


def test_key_texts_and_filters():
    cols = {"exporter": addr.from_texts(["192.0.2.1"]), "input_if": np.array([3], np.uint32),
            "src_addr": addr.from_texts(["10.1.2.3"]), "dst_addr": addr.from_texts(["2001:db8::1"]),
            "tos": np.array([46 << 2 | 2], np.uint8), "src_as": np.array([64500], np.uint32),
            "protocol": np.array([17], np.uint8)}
    k = {by: np.stack(K.key_words(by, cols), axis=1) for by in ("in_if", "pair", "dscp", "src_as", "protocol")}
    assert K.texts("in_if", k["in_if"]) == ["192.0.2.1 if 3"]
    assert K.filters("in_if", k["in_if"]) == [{"exporter": "192.0.2.1", "input_if": 3}]
    assert K.texts("pair", k["pair"]) == ["10.1.2.3 -> 2001:db8::1"]
    assert K.filters("pair", k["pair"]) == [{"src": "10.1.2.3", "dst": "2001:db8::1"}]
    assert K.filters("dscp", k["dscp"]) == [{"dscp": 46}] and K.texts("src_as", k["src_as"]) == ["AS64500"]
    assert K.texts("protocol", k["protocol"]) == ["UDP"] and K.filters("protocol", k["protocol"]) == [{"protocol": 17}]


# ------------------------------------------------------------------ filters on every path

@pytest.mark.parametrize("filters,mask_of", [
    ({"input_if": 3}, lambda b: b["input_if"] == 3),
    ({"output_if": "2", "exporter": "127.0.0.1"},
     lambda b: (b["output_if"] == 2) & (b["exporter"] == np.void(addr.to_bytes("127.0.0.1")))),
    ({"src_as": 64501}, lambda b: b["src_as"] == 64501),
    ({"dst_as": 13335}, lambda b: b["dst_as"] == 13335),
    ({"as": 64500}, lambda b: (b["src_as"] == 64500) | (b["dst_as"] == 64500)),
    ({"dscp": 46}, lambda b: (b["tos"] >> 2) == 46),
    ({"dscp": 0, "protocol": "udp"}, lambda b: ((b["tos"] >> 2) == 0) & (b["protocol"] == 17)),
])
@pytest.mark.parametrize("since", [BASE, BASE + 5 * HOUR + 1, BASE + 5 * HOUR + 45 * 60_000],
                         ids=["blocks+rows+ring", "rows+ring", "ring"])
def test_new_filters_select_the_same_flows_from_ring_rows_and_blocks(store, filters, mask_of, since):
    eng, flows = store
    m = mask_of(flows) & (flows["time_end"] >= since)
    assert m.any()
    pages, cursor = [], None
    while True:
        r = eng.flows({"since": since, **filters, "limit": 500, "cursor": cursor})
        pages.append(np.frombuffer(r["columns"]["time_end"], "<i8"))
        cursor = r["next_cursor"]
        if cursor is None:
            break
    assert np.concatenate(pages).tolist() == np.sort(flows["time_end"][m])[::-1].tolist()
    s = eng.series({"since": since, "until": BASE + 6 * HOUR, **filters, "step": 3600})
    assert sum(p[3] for p in s["points"]) == int(m.sum())
    t = eng.top({"since": since, **filters, "by": "protocol"})
    assert t["totals"]["flows"] == int(m.sum()) and t["source"] == s["source"]


def test_new_filters_keep_top_and_series_off_the_rollups(store):
    eng, _flows = store
    for filters in ({"input_if": 3}, {"as": 64500}, {"dscp": 46}):
        assert eng.top({"since": BASE, **filters})["source"] == "sqlite"
        assert eng.series({"since": BASE, "until": BASE + 5 * HOUR, **filters})["source"] == "sqlite"
        assert eng.explore({"since": BASE, "until": BASE + 5 * HOUR, "by": "src", **filters})["source"] == "sqlite"


# ------------------------------------------------------------------ explore

WINDOWS = [(BASE, BASE + 5 * HOUR), (BASE + 1234, BASE + 5 * HOUR + 777), (BASE + HOUR + 300_000, BASE + 6 * HOUR),
           (BASE + 2 * HOUR + 59_999, BASE + 4 * HOUR + 2_000_001)]


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("by", DIMS)
def test_explore_from_rollups_equals_raw_rows_and_numpy(store, window, by):
    eng, flows = store
    since, until = window
    m = (flows["time_end"] >= since) & (flows["time_end"] < until)
    for metric, scaled, step in (("bytes", True, 0), ("flows", False, 3600)):
        args = {"since": since, "until": until, "by": by, "metric": metric, "limit": 4, "scaled": scaled, "step": step}
        got = eng.explore(args)
        raw = raw_too(eng, "explore", args)
        assert raw["source"] == "sqlite"
        assert got["source"].startswith("rollups") == (by != "pair")
        assert {k: got[k] for k in ("times", "series", "other", "totals", "step_ms")} == \
               {k: raw[k] for k in ("times", "series", "other", "totals", "step_ms")}
        # totals: the flows of the window, and the series plus other
        rate = np.maximum(flows["sampling_rate"], 1).astype(np.uint64) if scaled else 1
        assert got["totals"] == {"bytes": int((flows["bytes"] * rate)[m].sum()),
                                 "packets": int((flows["packets"] * rate)[m].sum()), "flows": int(m.sum())}
        assert sum(s["total"] for s in got["series"]) + got["other"]["total"] == got["totals"][metric]
        per_step = np.sum([s["values"] for s in got["series"]] + [got["other"]["values"]], axis=0)
        assert per_step.sum() == got["totals"][metric] and len(per_step) == len(got["times"])
        assert got["times"][0] <= since < got["times"][0] + got["step_ms"] and got["times"][-1] < until
        # the same keys and sums as top
        top = eng.top({"since": since, "until": until, "by": by, "metric": metric, "limit": 4, "scaled": scaled})
        assert top["totals"] == got["totals"]
        assert [(r["key"], r[metric]) for r in top["rows"]] == [(s["key"], s["total"]) for s in got["series"]]
        # each key's numpy sum, and its filter selects exactly its flows (port: a superset, by design)
        keys = numpy_key(by, flows, m)
        values = {"bytes": (flows["bytes"] * rate)[m], "packets": (flows["packets"] * rate)[m],
                  "flows": np.ones(int(m.sum()), np.uint64)}[metric]
        for s in got["series"]:
            f = P.parse_filters({**s["filter"], "since": since, "until": until}, 0)
            sel = P.ring_mask(flows.columns, f)
            mine = (keys == keys[np.flatnonzero(_key_hits(by, keys, s["key"]))[0]]).all(axis=1)
            assert int(values[mine].sum()) == s["total"]
            if by != "port":
                assert sel[m].tolist() == mine.tolist() and not (sel & ~m).any()
        assert len(got["series"]) == min(4, len(np.unique(keys, axis=0)))


def _key_hits(by, keys, text):
    return np.array(K.texts(by, keys)) == text


@pytest.mark.parametrize("by", ["src", "in_if", "dscp", "pair"])
def test_explore_from_the_ring_equals_sqlite(store, by):
    eng, flows = store
    since, until = BASE + 5 * HOUR + 45 * 60_000, BASE + 6 * HOUR
    got = eng.explore({"since": since, "until": until, "by": by, "limit": 5})
    assert got["source"] == "ring" and got["step_ms"] == 60_000 and len(got["times"]) == 15
    args = {"since": since, "until": until, "by": by, "limit": 5, "step": 60}  # SQLite would pick its own
    ring, eng.ring = eng.ring, Ring(10)
    eng.ring.evicted_max_time_end = until
    try:
        sql = eng.explore(args)
    finally:
        eng.ring = ring
    assert sql["source"] == "sqlite"
    assert {k: got[k] for k in ("times", "series", "other", "totals")} == \
           {k: sql[k] for k in ("times", "series", "other", "totals")}


def test_explore_of_one_exporters_interfaces_answers_from_rollups(store):
    eng, flows = store
    args = {"since": BASE, "until": BASE + 5 * HOUR, "by": "in_if", "exporter": "127.0.0.2", "limit": 50}
    got = eng.explore(args)
    assert got["source"] == "rollups" and got == {**raw_too(eng, "explore", args), "source": "rollups"}
    assert all(s["filter"]["exporter"] == "127.0.0.2" for s in got["series"])
    assert got["other"]["total"] == 0  # 10 interfaces: all in the top 50
    m = (flows["exporter"] == np.void(addr.to_bytes("127.0.0.2"))) & (flows["time_end"] < BASE + 5 * HOUR)
    assert got["totals"]["flows"] == int(m.sum())


@pytest.mark.parametrize("args,words", [
    ({"by": "src"}, "explore needs a since time"),
    ({"since": BASE}, "by is required"),
    ({"since": BASE, "by": "colour"}, "by 'colour' is not one of"),
    ({"since": BASE, "by": "src", "limit": 51}, "limit must be at most 50"),
    ({"since": BASE, "by": "src", "limit": 0}, "limit must be at least 1"),
    ({"since": BASE, "by": "src", "metric": "bits"}, "metric 'bits' is not one of"),
    ({"since": BASE, "by": "src", "step": 1}, "more than 2000"),
    ({"since": BASE, "until": BASE, "by": "src"}, "until after since"),
    ({"since": BASE, "by": "src", "dscp": 99}, "dscp 99 is outside 0-63"),
    ({"since": BASE, "by": "src", "colour": 1}, "explore does not take colour"),
])
def test_explore_bad_arguments_say_why(store, args, words):
    eng, _flows = store
    with pytest.raises(QueryError, match=words):
        eng.explore(args)


# ------------------------------------------------------------------ flows by size

@pytest.mark.parametrize("order", ["bytes", "packets"])
@pytest.mark.parametrize("since,filters", [(BASE, {}), (BASE + 3 * HOUR + 1, {"dscp": 46}),
                                           (BASE + 5 * HOUR + 45 * 60_000, {"src_as": 64500})],
                         ids=["blocks+rows+ring", "filtered", "ring"])
def test_flows_by_size_pages_cover_every_flow_once_largest_first(store, order, since, filters):
    eng, flows = store
    m = (flows["time_end"] >= since) & P.ring_mask(flows.columns, P.parse_filters(filters, 0))
    want = sorted(zip(flows[order][m].tolist(), flows["time_end"][m].tolist()), reverse=True)
    pages, cursor = [], None
    while True:
        r = eng.flows({"since": since, **filters, "order": order, "limit": 333, "cursor": cursor})
        pages.append(r)
        cursor = r["next_cursor"]
        if cursor is None:
            break
    vals = [v for p in pages for v in np.frombuffer(p["columns"][order], "<u8").tolist()]
    tes = [v for p in pages for v in np.frombuffer(p["columns"]["time_end"], "<i8").tolist()]
    assert vals == [v for v, _t in want]  # largest first, every flow once
    assert sorted(zip(vals, tes)) == sorted(want)
    back, cursor = [pages[-1]], pages[-1]["prev_cursor"]
    while cursor is not None:
        r = eng.flows({"since": since, **filters, "order": order, "limit": 333, "cursor": cursor, "direction": "prev"})
        back.append(r)
        cursor = r["prev_cursor"]
    assert [p["columns"]["seq"] if "seq" in p["columns"] else p["columns"]["time_end"] for p in back[::-1]] == \
           [p["columns"]["seq"] if "seq" in p["columns"] else p["columns"]["time_end"] for p in pages]


def test_flows_order_must_be_known(store):
    eng, _flows = store
    with pytest.raises(QueryError, match="order 'size' is not one of time, bytes, packets"):
        eng.flows({"order": "size"})


def test_partitions_sealed_before_the_5_minute_interface_rollups_are_read_raw(tmp_path, monkeypatch):
    """A partition sealed when in_if was kept hourly only has no 5-minute blob: explore must not
    answer zeros from it, but read its flows."""
    from flowlens_store import hists
    flows = FlowBatch.concat([make_batch(800, t0=BASE + h * HOUR + 5_000, spacing_ms=4000, seed=h) for h in range(2)])
    path = str(tmp_path / "f.db")
    w = WarmWriter(path, HOUR, 24, 64)
    w.write_flows(with_seq(flows, 1))
    with monkeypatch.context() as m:
        m.setitem(hists.DIMS, "in_if", (3_600_000,))
        assert w.seal_due(BASE + 3 * HOUR) == 2
    ring = Ring(10)
    ring.evicted_max_time_end = int(flows["time_end"].max())
    eng = QueryEngine(ring, path, 600_000, 10_000, 10.0, clock=lambda: BASE + 4 * HOUR)
    try:
        args = {"since": BASE, "until": BASE + 2 * HOUR, "by": "in_if", "step": 300, "limit": 20}
        got = eng.explore(args)
        assert got["source"] == "sqlite" and got["totals"]["flows"] == flows.count
        assert got == raw_too(eng, "explore", args)
        hourly = eng.explore({**args, "step": 3600})
        assert hourly["source"] == "rollups" and hourly["totals"] == got["totals"]
    finally:
        eng.close()
        w.close()


def test_a_raw_explore_stops_at_its_group_bound_with_a_reason(store):
    eng, flows = store
    ring = Ring(10)
    ring.evicted_max_time_end = int(flows["time_end"].max())
    small = QueryEngine(ring, eng.sqlite_path, 600_000, 1, 10.0, clock=eng.clock)  # query_max_rows 1: 100 groups
    try:
        args = {"since": BASE, "until": BASE + 6 * HOUR, "by": "pair", "step": 60}
        with pytest.raises(QueryError, match=r"more than 100 \(step, key\) groups"):
            small.explore(args)
        assert small.explore({**args, "by": "protocol", "step": 3600})["totals"]["flows"] == flows.count
    finally:
        small.close()


@pytest.mark.parametrize("memo_keys", [1, 3, 100_000])
@pytest.mark.parametrize("by", ["src", "dst"])
def test_hourly_top_keys_from_the_first_pass_memo_equal_raw(store, monkeypatch, by, memo_keys):
    """At hourly steps the first pass remembers each hour's largest keys; the top keys' hours come from
    that memo, and an hour missing one (memo cut at 1 or 3 keys) is read again: the same answer."""
    from flowlens_store import histops
    from flowlens_store import histread as H

    eng, _flows = store
    monkeypatch.setattr(H, "MEMO_KEYS", memo_keys)
    read_again = []
    real = histops._gather_chosen
    monkeypatch.setattr(histops, "_gather_chosen",
                        lambda engine, db, dim, pieces, *a: read_again.extend(pieces) or real(engine, db, dim, pieces, *a))
    args = {"since": BASE, "until": BASE + 5 * HOUR, "by": by, "metric": "bytes", "limit": 4, "step": 3600}
    got = eng.explore(dict(args))
    raw = raw_too(eng, "explore", args)
    assert got["source"] == "rollups" and raw["source"] == "sqlite"
    assert {k: got[k] for k in ("times", "series", "other", "totals")} == \
           {k: raw[k] for k in ("times", "series", "other", "totals")}
    assert len(got["series"]) == 4
    if memo_keys == 100_000:
        assert read_again == [], "every hour's keys are remembered: nothing is decoded twice"
    if memo_keys == 1:
        assert read_again, "a memo of one key a hour misses top keys: those hours are read again"


def test_port_rollups_in_key_chunks_answer_explore_like_raw_rows(tmp_path, monkeypatch):
    """Port rollups under an hour are cut into key ranges (hists.CHUNKED_DIMS; chunks of 8 rows
    here, a key staying in one): explore by port reads only the chunks that can hold its top ports, with the raw answer."""
    from flowlens_store import hists, histops

    monkeypatch.setattr(hists, "CHUNK_ROWS", 8)
    flows = site_flows()
    w = WarmWriter(str(tmp_path / "f.db"), HOUR, 24, 64, seal_chunk_rows=500)
    cols = with_seq(flows, 1)
    w.write_flows(cols)
    assert w.seal_due(BASE + 5 * HOUR + 200_000) == 5
    ring = Ring(10)
    ring.evicted_max_time_end = int(flows["time_end"].max())
    eng = QueryEngine(ring, str(tmp_path / "f.db"), 600_000, 10_000, 10.0, clock=lambda: BASE + 7 * HOUR)
    chunks_read = []
    real = histops._gather_chosen
    monkeypatch.setattr(histops, "_gather_chosen",
                        lambda engine, db, dim, pieces, *a: chunks_read.append(dim) or real(engine, db, dim, pieces, *a))
    try:
        for by in ("dst_port", "src_port"):
            stored = eng.db.execute("SELECT count(*) FROM hists WHERE dim = ? AND step_ms = 300000", (by,)).fetchone()[0]
            assert stored > 5 * 2, f"{by}: 5-minute rollups cut into several chunks an hour"
            args = {"since": BASE + 300_000, "until": BASE + 4 * HOUR, "by": by, "limit": 3, "step": 300}
            got = eng.explore(dict(args))
            raw = raw_too(eng, "explore", args)
            assert got["source"] == "rollups" and by in chunks_read
            assert {k: got[k] for k in ("times", "series", "other", "totals")} == \
                   {k: raw[k] for k in ("times", "series", "other", "totals")}
    finally:
        eng.close()
        w.close()
