"""The web-history benchmark in small (bench/webhistory.py): a 20,000-flow store of 72 hours built by
bench.history's loader (IPFIX over loopback to a real collector + store), then every page the
benchmark times asked over real HTTP of the real web process, and each page's store ops through
the query socket. Answers only, never timings: a page URL the web no longer takes, or store
arguments the store refuses, fails here rather than in a 30 M-flow run.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import nfdumpfiles as nf  # noqa: E402
from bench import webhistory  # noqa: E402
from bench import webhistorypages  # noqa: E402

pytestmark = pytest.mark.skipif(not nf.have_nfcapd(),
                                reason="bench.history's loader drives nfcapd (Debian package nfdump; `make debs`)")

FLOWS = 20_000


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("webhistory")


@pytest.fixture(scope="module")
def built(store_dir):
    return webhistory.build_store(store_dir, FLOWS, log=lambda *_: None)


@pytest.fixture(scope="module")
def result(store_dir, built):
    return webhistory.measure(store_dir, built, requests=1, log=lambda *_: None)


def test_every_page_answers_200_and_its_store_ops_answer(result):
    assert [(t.page.url, t.status, t.error) for t in result.timings if t.status != 200 or t.error] == []
    assert all(math.isfinite(t.ops_p50_ms) for t in result.timings)
    assert all(t.store_rss_peak > 0 for t in result.timings)
    ops = {"series", "top", "explore", "flows", "exporters", "names"}
    assert [t.slowest_op for t in result.timings if t.slowest_op.split(" ", 1)[0] not in ops] == []
    (dst_port_24h,) = [t for t in result.timings if t.page.name == "explore by dst_port"
                       and t.page.window == "24 h to the newest flow"]
    assert dst_port_24h.slowest_op.startswith("explore by=dst_port metric=bytes limit=10 step=0")
    assert dst_port_24h.slowest_op.endswith("over 24 h")


def test_dashboard_and_explore_are_asked_at_each_range_both_ways(result):
    asked = {(t.page.name, t.page.window) for t in result.timings}
    for hours in webhistory.HOURS:
        for window in (f"{hours} h to the newest flow", f"range={hours}h (to now)"):
            assert ("dashboard", window) in asked
            for by in webhistory.EXPLORE_BY:
                assert (f"explore by {by}", window) in asked
            for a, b in webhistorypages.SANKEY_PAIRS:
                assert ((f"explore sankey {a}->{b}", window) in asked) == (hours in webhistorypages.SANKEY_HOURS)


def test_a_kept_store_is_reused_not_built_again(store_dir, built, result):
    again = webhistory.build_store(store_dir, FLOWS, log=lambda *_: None)
    assert again.reused and not built.reused
    assert (again.start_ms, again.end_ms) == (built.start_ms, built.end_ms)


def test_the_first_request_counts_and_the_warmer_ran_first(result):
    assert all(t.p95_ms >= t.first_ms and t.p50_ms <= t.p95_ms for t in result.timings), "p95 over every request"
    warm = result.warm
    assert warm is not None and warm["rounds"] >= 1 and warm["merged"] >= 1 and warm["errors"] == 0
    assert "top warmer had merged" in webhistory.summary(result)
