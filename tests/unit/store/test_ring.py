import numpy as np
import pytest

from flowmodel import addr
from flowlens_store.planner import ring_mask
from flowlens_store.ring import DTYPES, Ring

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


# ------------------------------------------------------------------ the compact ring against a plain model

def _plain_model(batches, capacity):
    """Every row appended, as plain columns, and what a ring of ``capacity`` keeps: the newest rows."""
    from flowmodel.schema import FlowBatch
    allrows = FlowBatch.concat([b for b, _ in batches])
    cols = dict(allrows.columns)
    cols["seq"] = np.concatenate([np.arange(s, s + b.count, dtype=np.int64) for b, s in batches])
    n = len(cols["seq"])
    kept = {k: v[max(0, n - capacity):] for k, v in cols.items()}
    evicted = cols["time_end"][:max(0, n - capacity)]
    return kept, (int(evicted.max()) if len(evicted) else None)


def _page_pick(want, older):
    """The flows page's pick (queries._ring_page): the want rows nearest the end, ordered."""
    def pick(cols, idx):
        te = cols["time_end"][idx]
        if len(idx) > want:
            k = len(idx) - want if older else want - 1
            bound = np.partition(te, k)[k]
            keep = te >= bound if older else te <= bound
            idx, te = idx[keep], te[keep]
        order = np.lexsort((cols["seq"][idx], te))
        if older:
            order = order[::-1]
        return idx[order[:want]]
    return pick


@pytest.mark.parametrize("capacity,segment_rows,seed", [(1000, None, 1), (1000, 7, 2), (5000, 256, 3), (64, 1, 4)])
def test_compact_ring_answers_like_plain_columns(capacity, segment_rows, seed):
    """Randomized appends (batches of any size, times out of order) through rings of several segment
    sizes: every select (masks, columns, pages with pick, pruning by filters and nearest) and the
    eviction bound give exactly what the newest ``capacity`` rows as plain columns give."""
    rng = np.random.default_rng(seed)
    r = Ring(capacity, segment_rows)
    batches, seq = [], 1
    for i in range(40):
        n = int(rng.choice([1, 3, 50, 400, capacity // 3 + 1]))
        b = make_batch(n, t0=T0 + int(rng.integers(0, 600_000)), spacing_ms=int(rng.integers(0, 20)), seed=seed * 100 + i)
        r.append(b, seq)
        batches.append((b, seq))
        seq += n + int(rng.integers(0, 3))  # seq gaps (shed batches) are allowed
        kept, evicted = _plain_model(batches, capacity)
        assert r.size == len(kept["seq"]) and r.evicted_max_time_end == evicted
        assert r.time_bounds() == (int(kept["time_end"].min()), int(kept["time_end"].max()))
    host = kept["src_addr"][len(kept["seq"]) // 2].tobytes()
    mid = int(np.median(kept["time_end"]))
    filters = [{}, {"since": mid}, {"until": mid}, {"addr": (host, host)}, {"src": (host, host), "since": mid - 50_000},
               {"protocol": 17, "port": 53}, {"dst_port": 80}, {"exporter": (kept["exporter"][0].tobytes(),) * 2}]
    for f in filters:
        want_rows = np.flatnonzero(ring_mask(kept, f))
        got = r.select(lambda c: ring_mask(c, f), filters=f)
        assert sorted(got["seq"].tolist()) == sorted(kept["seq"][want_rows].tolist()), f
        order = np.argsort(got["seq"])
        for name, col in kept.items():
            assert np.array_equal(got[name][order], col[want_rows][np.argsort(kept["seq"][want_rows])]), (f, name)
        part = r.select(lambda c: ring_mask(c, f), columns=("bytes", "src_addr"))
        assert list(part) == ["bytes", "src_addr"] and len(part["bytes"]) == len(want_rows)
        for want in (1, 5, 50, 10_000):
            for older in (True, False):
                ref = _page_pick(want, older)(kept, want_rows)
                for kw in ({}, {"filters": f}, {"nearest": (want, older)}, {"filters": f, "nearest": (want, older)}):
                    page = r.select(lambda c: ring_mask(c, f), _page_pick(want, older), **kw)
                    assert page["seq"].tolist() == kept["seq"][ref].tolist(), (f, want, older, kw)
                    assert np.array_equal(page["dst_addr"], kept["dst_addr"][ref])


def test_full_ring_is_compact_and_host_filters_skip_blocks():
    """600 rows of 64-row segments: all but the open segment encoded; the encoded rows take a fraction
    of their plain bytes, and a host that is in one block only is looked for in few blocks."""
    r = Ring(600, 64)
    seq = 1
    for i in range(12):
        b = make_batch(50, t0=T0 + i * 1000, seed=i)
        r.append(b, seq)
        seq += 50
    plain = sum(dt.itemsize for dt in DTYPES.values()) * r.size
    assert r.nbytes < plain / 2, (r.nbytes, plain)
    lone = addr.to_bytes("10.200.0.1")
    b = make_batch(50, t0=T0 + 20_000, seed=99)
    b.columns["src_addr"][7] = np.frombuffer(lone, "V16")[0]
    r.append(b, seq)
    f = {"addr": (lone, lone)}
    may = [blk.may_match(f) for blk in r._blocks]
    assert sum(may) <= 3, may  # the block holding it, and false positives of the bitmap
    got = r.select(lambda c: ring_mask(c, f), filters=f)
    assert got["seq"].tolist() == [seq + 7]


def test_scan_gives_select_rows_segment_by_segment_while_appends_go_on():
    """scan yields, per segment, the rows select gives (same filters, same columns); rows appended
    while a scan is under way are not in it, and nothing it yields changes under it."""
    r = Ring(1000, 64)
    seq = 1
    for i in range(30):
        b = make_batch(50, t0=T0 + i * 1000, seed=i)
        r.append(b, seq)
        seq += 50
    f = {"since": T0 + 5_000, "protocol": 6}
    want = r.select(lambda c: ring_mask(c, f), columns=("seq", "bytes", "src_addr"), filters=f)
    parts = []
    scan = r.scan(lambda c: ring_mask(c, f), ("seq", "bytes", "src_addr"), filters=f)
    parts.append(next(scan))
    before = {k: v.copy() for k, v in parts[0].items()}
    for i in range(30, 60):  # appends in the middle of the scan: the open buffer fills and is replaced
        r.append(make_batch(50, t0=T0 + i * 1000, seed=i), seq)
        seq += 50
    parts.extend(scan)
    assert len(parts) > 1 and all(list(p) == ["seq", "bytes", "src_addr"] for p in parts)
    assert all(np.array_equal(before[k], parts[0][k]) for k in before)
    got = {k: np.concatenate([p[k] for p in parts]) for k in want}
    assert got["seq"].tolist() == want["seq"].tolist()
    assert np.array_equal(got["bytes"], want["bytes"]) and np.array_equal(got["src_addr"], want["src_addr"])
