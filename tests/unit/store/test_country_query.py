"""Countries as flow filters (src_country, dst_country, country) and as top/explore dimensions,
against a plain numpy count of the same flows: six hours, five sealed into blocks, the sixth still
rows, plus a ring holding the newest minutes. A filter selects the same flows from each; a key's
filter selects exactly its flows; a code, a label's words and 'unknown' are accepted, anything else
is refused naming the argument."""
import numpy as np
import pytest

from flowmodel.geo import pack_country
from flowmodel.protocol import QueryError, normalise_flow_filters
from flowmodel.schema import FlowBatch
from flowlens_store import keydims as K
from flowlens_store import planner as P
from flowlens_store.queries import QueryEngine
from flowlens_store.ring import Ring
from flowlens_store.warm import WarmWriter

from store_testdata import T0, make_batch, with_seq

HOUR = 3_600_000
BASE = (T0 // HOUR) * HOUR
CODES = [0, pack_country("US"), pack_country("DE"), pack_country("XP"), pack_country("JP")]


def flows_with_countries() -> FlowBatch:
    rng = np.random.default_rng(23)
    parts = []
    for h in range(6):
        b = make_batch(900, t0=BASE + h * HOUR + 555, spacing_ms=3989, seed=90 + h)
        b.columns["src_country"][:] = rng.choice(CODES, b.count, p=[0.1, 0.4, 0.2, 0.2, 0.1])
        b.columns["dst_country"][:] = rng.choice(CODES, b.count, p=[0.3, 0.1, 0.3, 0.2, 0.1])
        parts.append(b)
    return FlowBatch.concat(parts)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("country") / "f.db")
    flows = flows_with_countries()
    w = WarmWriter(path, HOUR, 24, 64, seal_chunk_rows=400)
    cols = with_seq(flows, 1)
    for i in range(0, flows.count, 1000):
        w.write_flows({k: v[i:i + 1000] for k, v in cols.items()})
    assert w.seal_due(BASE + 5 * HOUR + 200_000) == 5
    ring = Ring(100_000)
    newest = flows["time_end"] >= BASE + 5 * HOUR + 30 * 60_000
    ring.append(FlowBatch({k: v[newest] for k, v in flows.columns.items()}), int(cols["seq"][newest][0]))
    ring.evicted_max_time_end = int(flows["time_end"][~newest].max())
    eng = QueryEngine(ring, path, 40 * 60_000, 10_000, 10.0, clock=lambda: BASE + 6 * HOUR)
    yield eng, flows
    eng.close()
    w.close()


@pytest.mark.parametrize("filters,mask_of", [
    ({"src_country": "US"}, lambda b: b["src_country"] == pack_country("US")),
    ({"dst_country": "private"}, lambda b: b["dst_country"] == pack_country("XP")),
    ({"country": "de"}, lambda b: (b["src_country"] == pack_country("DE")) | (b["dst_country"] == pack_country("DE"))),
    ({"src_country": "unknown", "protocol": "udp"}, lambda b: (b["src_country"] == 0) & (b["protocol"] == 17)),
])
@pytest.mark.parametrize("since", [BASE, BASE + 5 * HOUR + 1, BASE + 5 * HOUR + 45 * 60_000],
                         ids=["blocks+rows+ring", "rows+ring", "ring"])
def test_country_filters_select_the_same_flows_from_ring_rows_and_blocks(store, filters, mask_of, since):
    eng, flows = store
    m = mask_of(flows) & (flows["time_end"] >= since)
    assert m.any() and not m.all()
    pages, cursor = [], None
    while True:
        r = eng.flows({"since": since, **filters, "limit": 400, "cursor": cursor})
        pages.append(np.frombuffer(r["columns"]["time_end"], "<i8"))
        cursor = r["next_cursor"]
        if cursor is None:
            break
    assert np.concatenate(pages).tolist() == np.sort(flows["time_end"][m])[::-1].tolist()
    s = eng.series({"since": since, "until": BASE + 6 * HOUR, **filters, "step": 3600})
    assert sum(p[3] for p in s["points"]) == int(m.sum())
    t = eng.top({"since": since, **filters, "by": "protocol"})
    assert t["totals"]["flows"] == int(m.sum())


@pytest.mark.parametrize("by", ["src_country", "dst_country"])
@pytest.mark.parametrize("window", [(BASE, BASE + 6 * HOUR), (BASE + HOUR + 1234, BASE + 5 * HOUR + 50 * 60_000)])
def test_top_and_explore_by_country_equal_numpy_and_each_key_filters_its_flows(store, by, window):
    eng, flows = store
    since, until = window
    m = (flows["time_end"] >= since) & (flows["time_end"] < until)
    got = eng.explore({"since": since, "until": until, "by": by, "metric": "flows", "limit": 3, "step": 3600})
    top = eng.top({"since": since, "until": until, "by": by, "metric": "flows", "limit": 3})
    codes, counts = np.unique(flows[by][m], return_counts=True)
    order = np.argsort(-counts, kind="stable")[:3]
    want = [(K.texts(by, np.array([[c]], np.uint64))[0], int(n)) for c, n in zip(codes[order], counts[order])]
    assert [(s["key"], s["total"]) for s in got["series"]] == want
    assert [(r["key"], r["flows"]) for r in top["rows"]] == want
    assert got["totals"]["flows"] == top["totals"]["flows"] == int(m.sum())
    assert got["other"]["total"] == int(m.sum()) - sum(n for _k, n in want)
    assert {s["key"] for s in got["series"]} <= {"US", "DE", "private", "unknown", "JP"}
    for s in got["series"]:
        f = P.parse_filters({**s["filter"], "since": since, "until": until}, 0)
        sel = P.ring_mask(flows.columns, f)
        assert int(sel.sum()) == s["total"]


def test_explore_by_country_from_the_ring_equals_sqlite(store):
    eng, _flows = store
    since, until = BASE + 5 * HOUR + 45 * 60_000, BASE + 6 * HOUR
    args = {"since": since, "until": until, "by": "dst_country", "limit": 5, "step": 60}
    got = eng.explore(args)
    ring, eng.ring = eng.ring, Ring(10)
    eng.ring.evicted_max_time_end = until
    try:
        sql = eng.explore(args)
    finally:
        eng.ring = ring
    assert (got["source"], sql["source"]) == ("ring", "sqlite")
    assert {k: got[k] for k in ("times", "series", "other", "totals")} == \
           {k: sql[k] for k in ("times", "series", "other", "totals")}


@pytest.mark.parametrize("args,words", [({"src_country": "USA"}, "src_country: 'USA' is not a two-letter"),
                                        ({"country": "1x"}, "country: '1x'"),
                                        ({"dst_country": "Narnia"}, "dst_country:")])
def test_bad_country_filters_name_their_argument(args, words):
    with pytest.raises(QueryError, match=words):
        normalise_flow_filters(args)


def test_country_filters_take_codes_labels_and_unknown():
    f = normalise_flow_filters({"src_country": "us", "dst_country": "documentation", "country": "unknown"})
    assert f == {"src_country": pack_country("US"), "dst_country": pack_country("XD"), "country": 0}


@pytest.mark.parametrize("by", ["protocol", "src_as", "dst_country"])
def test_explore_with_a_country_filter_counts_only_its_flows(store, by):
    eng, flows = store
    since, until = BASE + 1000, BASE + 6 * HOUR
    m = ((flows["src_country"] == pack_country("DE")) | (flows["dst_country"] == pack_country("DE"))) & \
        (flows["time_end"] >= since) & (flows["time_end"] < until)
    got = eng.explore({"since": since, "until": until, "by": by, "metric": "flows", "country": "DE", "step": 3600})
    assert got["totals"]["flows"] == int(m.sum()) > 0
    assert sum(s["total"] for s in got["series"]) + got["other"]["total"] == int(m.sum())
