"""Flows pages the query server's front thread answers from the ring alone (FlowPages.ring_flows):
the same replies as a worker's, and None whenever SQLite or a costly ring scan would be needed."""
from __future__ import annotations

import numpy as np
import pytest

from flowmodel import addr
from flowlens_store.flowpages import INLINE_MAX_ROWS
from flowlens_store.queries import QueryEngine

from store_testdata import T0
from test_planner import mixed_store, page_keys, want_keys

SPLIT = T0 + 9990  # mixed_store's ring evicted everything up to here


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """A worker's engine over the ring and SQLite, and a front engine over the same ring whose SQLite
    file does not exist: any SQLite read of it fails."""
    eng, w, flows = mixed_store(str(tmp_path_factory.mktemp("ringflows") / "f.db"), sealed=True, commit_all=False)
    front = QueryEngine(eng.ring, str(tmp_path_factory.mktemp("none") / "absent" / "f.db"), 600_000, 10_000, 5.0,
                        clock=eng.clock)
    yield eng, front, flows
    front.close()
    eng.close()
    w.close()


def _ring_host(flows) -> str:
    """A source address with flows above the split (in the ring) and at or below it (SQLite only)."""
    te = flows["time_end"]
    for a in np.unique(flows["src_addr"]):
        m = flows["src_addr"] == a
        if (te[m] > SPLIT).any() and (te[m] <= SPLIT).any():
            return addr.to_text(a)
    raise AssertionError("no host on both sides of the split")


@pytest.mark.parametrize("key", ["src", "addr"])
def test_a_hosts_pages_in_the_ring_are_answered_alike_and_deeper_ones_left_to_a_worker(engines, key):
    eng, front, flows = engines
    host = _ring_host(flows)
    a = addr.to_bytes(host)
    m = flows["src_addr"] == np.frombuffer(a, flows["src_addr"].dtype)[0]
    if key == "addr":
        m |= flows["dst_addr"] == np.frombuffer(a, flows["dst_addr"].dtype)[0]
    in_ring = int((flows["time_end"][m] > SPLIT).sum())
    args = {key: host, "since": SPLIT + 1, "limit": 1}
    inline = front.ring_flows(args)
    assert inline is not None and inline == eng.flows(args)
    assert page_keys([inline]) == want_keys(flows, m & (flows["time_end"] > SPLIT))[:1]
    # the whole window: the ring holds the page's rows but not the one after them (it says whether
    # there is a next page), nor the next page's: both need SQLite
    whole = {key: host, "limit": in_ring}
    assert front.ring_flows(whole) is None
    deeper = eng.flows(whole)["next_cursor"]
    assert deeper is not None and front.ring_flows({**whole, "cursor": deeper}) is None
    assert front._db is None  # never opened SQLite


@pytest.mark.parametrize("args", [{"port": 443, "since": SPLIT + 1}, {"src": "10.0.0.0/8", "since": SPLIT + 1},
                                  {"since": SPLIT + 1, "order": "bytes"}, {"since": SPLIT + 1, "protocol": "tcp"},
                                  {"since": SPLIT + 1, "limit": INLINE_MAX_ROWS + 1}, {"until": SPLIT}],
                         ids=["port", "cidr", "by-bytes", "protocol", "large", "below-split"])
def test_other_pages_go_to_a_worker(engines, args):
    _eng, front, _flows = engines
    assert front.ring_flows(args) is None
    assert front._db is None  # never opened SQLite


def test_a_bad_argument_is_the_same_error(engines):
    eng, front, _flows = engines
    from flowmodel.protocol import QueryError
    for bad in ({"src": "not an address"}, {"limit": 0}, {"cursor": "??"}):
        with pytest.raises(QueryError) as inline:
            front.ring_flows(bad)
        with pytest.raises(QueryError) as worker:
            eng.flows(bad)
        assert str(inline.value) == str(worker.value)


def test_the_newest_page_the_ring_fills_is_answered_alike(engines):
    eng, front, flows = engines
    for args in ({"limit": 5}, {"limit": 400, "until": T0 + 60_000}):
        inline = front.ring_flows(args)
        assert inline is not None and inline == eng.flows(args) and inline["source"] == "ring"
        assert page_keys([inline]) == want_keys(flows, np.ones(len(flows["seq"]), bool))[:args["limit"]]
    assert front._db is None
