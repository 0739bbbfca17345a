"""top (and explore) by a pair of dimensions, ``by`` "A,B": the (A, B) pairs' sums equal a plain
numpy sum of the same flows over sealed blocks, rows and the ring; each pair's filter selects exactly
its flows; bad pairs are error replies naming ``by``. (The Explore page's Sankey of two dimensions.)
Interface and AS pairs come from their rollups over sealed hours, the others from the flows."""
import numpy as np
import pytest

from flowmodel.protocol import QueryError
from flowlens_store import keydims as K
from flowlens_store import planner as P

from test_explore import BASE, HOUR, site_store

PAIRS = ["in_if,out_if", "exporter,dst_port", "src_as,dst_as", "protocol,dscp", "src,dst_port", "out_if,src_as",
         "out_if,in_if", "dst_as,src_as"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    w, eng, flows = site_store(str(tmp_path_factory.mktemp("toppairs") / "f.db"), {"t": BASE + 6 * HOUR})
    yield eng, flows
    eng.close()
    w.close()


@pytest.mark.parametrize("window", [(BASE + 1234, BASE + 6 * HOUR), (BASE + 5 * HOUR + 45 * 60_000, BASE + 6 * HOUR)],
                         ids=["blocks+rows+ring", "ring"])
@pytest.mark.parametrize("by", PAIRS)
def test_top_of_a_pair_of_dimensions_equals_numpy(store, by, window):
    eng, flows = store
    since, until = window
    m = (flows["time_end"] >= since) & (flows["time_end"] < until)
    got = eng.top({"by": by, "metric": "bytes", "limit": 8, "scaled": True, "since": since, "until": until})
    raw_source = "rollups+sqlite" if by in K.PAIR_WORDS else "sqlite"  # pair rollups, then the unsealed hour
    assert got["source"] == ("ring" if since > BASE + 5 * HOUR else raw_source)
    rate = np.maximum(flows["sampling_rate"], 1).astype(np.uint64)
    scaled = (flows["bytes"] * rate)[m]
    cols = {c: flows[c][m] for c in K.columns(by)}
    keys = np.stack(K.key_words(by, cols), axis=1)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    sums = np.zeros(len(uniq), np.uint64)
    np.add.at(sums, inverse.ravel(), scaled)
    want = sorted(zip(K.texts(by, uniq), sums.tolist()), key=lambda kv: -kv[1])[:8]
    assert [(r["key"], r["bytes"]) for r in got["rows"]] == want
    assert got["totals"]["bytes"] == int(scaled.sum()) and got["totals"]["flows"] == int(m.sum())
    a, b = by.split(",")
    for r in got["rows"]:
        assert r["key"].count(" -> ") == 1
        f = P.parse_filters({**r["filter"], "since": since, "until": until}, 0)
        sel = P.ring_mask(flows.columns, f)
        assert int((flows["bytes"] * rate)[sel].sum()) == r["bytes"], f"{r['filter']} selects the pair's flows"
    # the same pairs as explore's series
    ex = eng.explore({"by": by, "metric": "bytes", "limit": 8, "since": since, "until": until})
    assert [(s["key"], s["total"]) for s in ex["series"]] == want


@pytest.mark.parametrize("by", ["in_if,in_if", "pair,src", "src,dst,port", "src,", ",dst", "bogus,dst", "in_if;out_if"])
def test_a_bad_pair_of_dimensions_names_by(store, by):
    eng, _flows = store
    for op in ("top", "explore"):
        with pytest.raises(QueryError, match=r"^by "):
            getattr(eng, op)({"by": by, "since": BASE, "until": BASE + HOUR})
