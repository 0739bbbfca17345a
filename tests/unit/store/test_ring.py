import numpy as np

from flowlens_store.planner import ring_mask
from flowlens_store.ring import Ring

from store_testdata import T0, make_batch


def test_append_below_capacity_keeps_everything():
    r = Ring(100)
    r.append(make_batch(30), 1)
    assert r.size == 30
    assert r.covers(0)
    got = r.select(lambda c: np.ones(len(c["seq"]), bool))
    assert sorted(got["seq"].tolist()) == list(range(1, 31))


def test_wraparound_overwrites_oldest_and_keeps_capacity():
    r = Ring(100)
    seq = 1
    for i in range(7):  # 7 x 40 = 280 rows through a 100-row ring
        b = make_batch(40, t0=T0 + i * 1000, spacing_ms=10, seed=i)
        r.append(b, seq)
        seq += 40
    assert r.size == 100 and r.appended == 280
    got = r.select(lambda c: np.ones(len(c["seq"]), bool))
    assert sorted(got["seq"].tolist()) == list(range(181, 281))
    # rows keep their columns together across the wrap
    last = make_batch(40, t0=T0 + 6 * 1000, seed=6)
    i = np.argsort(got["seq"])[-40:]
    assert np.array_equal(got["bytes"][i], last["bytes"])
    assert np.array_equal(got["src_addr"][i], last["src_addr"])


def test_batch_larger_than_capacity_keeps_newest():
    r = Ring(50)
    b = make_batch(120)
    r.append(b, 1)
    got = r.select(lambda c: np.ones(len(c["seq"]), bool))
    assert sorted(got["seq"].tolist()) == list(range(71, 121))
    assert r.evicted_max_time_end == int(b["time_end"][69])


def test_time_window_coverage_rule():
    r = Ring(100)
    r.append(make_batch(100, t0=T0, spacing_ms=10), 1)   # time_end T0 .. T0+990
    assert r.covers(T0)
    r.append(make_batch(10, t0=T0 + 1000, spacing_ms=10), 101)  # evicts the 10 oldest (T0 .. T0+90)
    assert r.evicted_max_time_end == T0 + 90
    assert not r.covers(T0 + 90)
    assert r.covers(T0 + 91)
    assert not r.covers(None)
    got = r.select(lambda c: ring_mask(c, {"since": T0 + 91, "until": T0 + 200}))
    assert sorted(got["time_end"].tolist()) == list(range(T0 + 100, T0 + 200, 10))
    assert r.time_bounds() == (T0 + 100, T0 + 1090)
