"""topwarm.TopWarmer: a warm round merges the dashboard's tops' whole hours into the shared top cache,
so the dashboard's own top then answers from it, the same answer as uncached; it yields to users
(gives an item up when they keep the store busy) and its thread runs a round at start."""
import time

import pytest

from flowlens_store import histread as H
from flowlens_store import topwarm
from flowlens_store.queries import QueryEngine
from flowlens_store.ring import Ring
from flowlens_store.layout import connect_reader
from flowlens_store.topwarm import DASHBOARD_DIMS, SCALED_NAMES, TopWarmer
from flowlens_store.warm import WarmWriter

from store_testdata import T0, make_batch, with_seq

HOUR = 3_600_000
BASE = (T0 // HOUR) * HOUR
NOW = BASE + 4 * HOUR + 20 * 60_000  # 20 minutes into the unsealed fifth hour
RANGES = [2 * HOUR, 24 * HOUR]


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("topwarm") / "f.db")
    w = WarmWriter(path, HOUR, 24, 64, seal_chunk_rows=700)
    for h in range(4):
        w.write_flows(with_seq(make_batch(1200, t0=BASE + h * HOUR + 999, spacing_ms=2950, seed=90 + h), 1 + h * 1200))
    assert w.seal_due(BASE + 4 * HOUR + 200_000) == 4
    yield path
    w.close()


def engine(path, cache):
    e = QueryEngine(Ring(1024), path, 60_000, 10_000, 30, clock=lambda: NOW)
    e.sealed_totals = cache
    return e


def dashboard_tops(e, span):
    return {by: e.top({"by": by, "limit": 10, "scaled": True, "since": NOW - span, "until": NOW})
            for by in DASHBOARD_DIMS}


def test_a_warm_round_makes_the_dashboards_tops_cache_hits(path):
    cache = H.SealedTotals(8 << 20)
    warmer = TopWarmer(path, cache, RANGES, busy=lambda: False, clock=lambda: NOW)
    warmer.warm_round()
    assert warmer.merged == len(RANGES) * len(DASHBOARD_DIMS) and warmer.given_up == 0
    assert cache.bytes > 0
    misses = cache.misses
    e, plain = engine(path, cache), engine(path, None)
    for span in RANGES:
        hits = cache.hits
        got = dashboard_tops(e, span)
        assert cache.hits - hits == len(DASHBOARD_DIMS), f"every top of the {span // HOUR} h range hits"
        want = dashboard_tops(plain, span)
        for by in DASHBOARD_DIMS:
            assert got[by]["rows"] and got[by]["rows"] == want[by]["rows"]
            assert got[by]["totals"] == want[by]["totals"]
    # only the 2 h range has 5-minute edges of its own (24 h starts before the first partition)
    assert cache.misses - misses == len(DASHBOARD_DIMS)
    warmer.warm_round()
    assert warmer.fresh == len(RANGES) * len(DASHBOARD_DIMS), "a second round finds them cached"
    e.close(), plain.close(), warmer.stop()


def test_the_warmer_gives_up_while_users_keep_the_store_busy(path, monkeypatch):
    monkeypatch.setattr(topwarm, "WAIT_LIMIT_S", 0.05)
    cache = H.SealedTotals(8 << 20)
    warmer = TopWarmer(path, cache, RANGES, busy=lambda: True, clock=lambda: NOW)
    warmer.warm_round()
    assert warmer.given_up == len(RANGES) * len(DASHBOARD_DIMS) and warmer.merged == 0
    assert cache.bytes == 0, "nothing half merged is kept"
    assert warmer.paused_s > 0 and warmer.stats()["given_up"] == warmer.given_up
    warmer.stop()


def test_the_warmer_thread_warms_at_start_and_stops(path):
    cache = H.SealedTotals(8 << 20)
    warmer = TopWarmer(path, cache, RANGES, busy=lambda: False, clock=lambda: NOW, poll_s=0.05).start()
    try:
        deadline = time.monotonic() + 30
        while warmer.rounds < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert warmer.rounds == 1 and warmer.merged == len(RANGES) * len(DASHBOARD_DIMS)
        polls = warmer.polls
        while warmer.polls < polls + 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert warmer.polls >= polls + 3
        assert warmer.rounds == 1, "nothing changed (same hour, same sealed hours): no new round"
    finally:
        warmer.stop()
        warmer.stop()  # safe twice
    assert warmer._thread is None


def test_an_hour_sealed_starts_a_new_round(tmp_path):
    path = str(tmp_path / "f.db")
    w = WarmWriter(path, HOUR, 24, 64, seal_chunk_rows=700)
    for h in range(2):
        w.write_flows(with_seq(make_batch(600, t0=BASE + h * HOUR + 999, spacing_ms=5900, seed=40 + h), 1 + h * 600))
    assert w.seal_due(BASE + HOUR + 200_000) == 1  # the first hour only: the second is still filling
    cache = H.SealedTotals(8 << 20)
    warmer = TopWarmer(path, cache, [24 * HOUR], busy=lambda: False, clock=lambda: NOW, poll_s=0.05).start()
    try:
        deadline = time.monotonic() + 30
        while warmer.rounds < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert warmer.rounds == 1
        assert w.seal_due(BASE + 2 * HOUR + 200_000) == 1
        # (a seal may commit in steps: a round may see a part of it, the next the rest)
        # (merged counts inside a round, rounds at its end: wait for both)
        while (warmer.merged < 2 * len(DASHBOARD_DIMS) or warmer.rounds < 2) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert warmer.rounds >= 2 and warmer.merged == 2 * len(DASHBOARD_DIMS), "the new hour merged in a new round"
        # the dashboard's tops of the 24 h range, both hours now, are found in the cache
        reader = connect_reader(path)
        try:
            hits, misses = cache.hits, cache.misses
            for dim in DASHBOARD_DIMS:
                pl = H.plan(reader, dim, NOW - 24 * HOUR, NOW)
                assert [p[0] for p in pl.pieces if p[2] == HOUR] == [BASE, BASE + HOUR]
                H.key_totals(reader, dim, [p for p in pl.pieces if p[2] == HOUR], SCALED_NAMES, cache=cache)
            assert (cache.hits - hits, cache.misses - misses) == (len(DASHBOARD_DIMS), 0)
        finally:
            reader.close()
    finally:
        warmer.stop()
        w.close()


def test_no_ranges_no_thread(path):
    warmer = TopWarmer(path, H.SealedTotals(1 << 20), [], busy=lambda: False).start()
    assert warmer._thread is None and warmer.stats()["rounds"] == 0
    warmer.stop()
