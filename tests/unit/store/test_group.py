"""Columnar grouping for ring top: groupby.key_words + group_rows + top_groups against a plain
Python dict, on every code path (constant words dropped, dense indexing, packed sort with and without
row numbers in the spare bits, lexsort for keys wider than 64 bits), and ring top == SQLite top."""
import numpy as np
import pytest

from flowmodel import addr
from flowmodel.protocol import METRICS, TOP_BY
from flowlens_store import groupby as G

from test_planner import RING, SQL, setup  # noqa: F401  (the shared ring + SQLite fixture)


def _v4(rng, n, lo, hi):
    return addr.ipv4_column(rng.integers(lo, hi, n).astype(np.uint32))


def _cases():
    rng = np.random.default_rng(11)
    n = 5000
    v4_narrow = _v4(rng, n, 0x0A000000, 0x0A000000 + 300)          # 9 bits: dense indexing
    v4_wide = _v4(rng, n, 0x01000000, 0xDF000000)                   # ~32 bits: packed sort + row numbers
    texts = [f"2001:db8::{i % 37:x}" if i % 3 == 0 else f"192.168.{i % 5}.{i % 41}" for i in range(n)]
    mixed = addr.from_texts(texts)                                   # IPv4-mapped and IPv6: lexsort
    ports = rng.integers(0, 65536, n).astype(np.uint16)
    proto = rng.choice(np.array([1, 6, 17], np.uint8), n)
    signed = rng.integers(-50, 50, n).astype(np.int64) * 1000
    same = addr.from_texts(["10.1.2.3"] * n)
    return {
        "v4 dense": (v4_narrow,),
        "v4 packed sort": (v4_wide,),
        "v4 pair, 64 bits: argsort": (v4_wide, _v4(rng, n, 0x01000000, 0xDF000000)),
        "mixed v4/v6 lexsort": (mixed,),
        "mixed pair": (v4_narrow, mixed),
        "ports dense": (ports,),
        "protocol dense": (proto,),
        "signed ints": (signed,),
        "one key": (same,),
        "address and port": (mixed, ports),
    }


CASES = _cases()


def _raw(parts, i):
    return tuple(p[i].tobytes() if p.dtype.kind == "V" else int(p[i]) for p in parts)


@pytest.mark.parametrize("name", list(CASES))
def test_group_rows_matches_a_dict(name):
    parts = CASES[name]
    n = len(parts[0])
    rng = np.random.default_rng(5)
    b = rng.integers(0, 2**40, n).astype(np.uint64)
    p = rng.integers(0, 1000, n).astype(np.uint64)
    want: dict = {}
    for i in range(n):
        acc = want.setdefault(_raw(parts, i), [0, 0, 0])
        acc[0] += int(b[i])
        acc[1] += int(p[i])
        acc[2] += 1
    rep, (gb, gp), cnt = G.group_rows(G.key_words(*parts), b, p)
    keys = [_raw(parts, int(r)) for r in rep]
    got = {k: [int(x), int(y), int(c)] for k, x, y, c in zip(keys, gb, gp, cnt)}
    assert len(keys) == len(got)  # one group per key
    assert got == want
    # ascending key order: addresses as bytes, ints as numbers (what top's tie-break relies on)
    assert keys == sorted(keys)


def test_group_rows_empty_and_big_values():
    rep, (s,), cnt = G.group_rows(G.key_words(np.zeros(0, np.uint16)), np.zeros(0, np.uint64))
    assert len(rep) == len(s) == len(cnt) == 0
    big = np.array([2**62, 2**62, 5], np.uint64)
    rep, (s,), cnt = G.group_rows(G.key_words(np.array([7, 7, 9], np.uint16)), big)
    assert s.tolist() == [2**63, 5] and cnt.tolist() == [2, 1]


@pytest.mark.parametrize("limit", [1, 3, 5, 8, 20])
def test_top_groups_breaks_ties_by_group_order(limit):
    m = np.array([5, 9, 5, 1, 9, 5, 0, 5], np.uint64)
    got = sorted(G.top_groups(m, limit).tolist(), key=lambda i: (-int(m[i]), i))
    want = sorted(range(len(m)), key=lambda i: (-int(m[i]), i))[:limit]
    assert got == want


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("by", TOP_BY)
def test_ring_top_equals_sqlite_top(setup, by, metric):  # noqa: F811
    eng, _ = setup
    for extra in ({}, {"protocol": "udp"}, {"dst": "2001:db8::/64"}):
        a = eng.top({**RING, **extra, "by": by, "metric": metric, "limit": 7})
        b = eng.top({**SQL, **extra, "by": by, "metric": metric, "limit": 7})
        assert a["source"] == "ring" and b["source"] in ("sqlite", "rollups")
        assert a["rows"] == b["rows"] and a["totals"] == b["totals"]
        assert len(a["rows"]) == min(7, len(a["rows"])) and a["rows"]


def test_ring_top_with_nothing_in_the_window(setup):  # noqa: F811
    eng, _ = setup
    r = eng.top({**RING, "until": RING["since"] + 1, "by": "pair"})
    assert r["source"] == "ring" and r["rows"] == [] and r["totals"] == {"bytes": 0, "packets": 0, "flows": 0}


@pytest.fixture(scope="module")
def ring_or_sql(tmp_path_factory):
    """The same flows in an unsealed SQLite file and a ring of many small segments; one engine reads
    the raw ranges of the rollup path from the ring, the other (its ring counted as evicted) from SQLite."""
    from flowlens_store.queries import QueryEngine
    from flowlens_store.ring import Ring
    from flowlens_store.warm import WarmWriter
    from store_testdata import T0, make_batch, with_seq
    HOUR = 3_600_000

    path = str(tmp_path_factory.mktemp("ringsql") / "f.db")
    w = WarmWriter(path, HOUR, 24, 64)
    ring = Ring(10_000, segment_rows=256)
    seq = 1
    for i in range(3):
        b = make_batch(1000, t0=T0 + i * 10_000, spacing_ms=10, seed=20 + i)
        b.columns["sampling_rate"][:] = np.random.default_rng(i).choice([0, 1, 100], b.count)
        ring.append(b, seq)
        w.write_flows(with_seq(b, seq))
        seq += b.count
    scans = []
    scan = ring.scan
    ring.scan = lambda *a, **k: (scans.append(1), scan(*a, **k))[1]  # counts the ring reads, changes nothing
    evicted = Ring(10)
    evicted.evicted_max_time_end = T0 + 60_000
    clock = lambda: T0 + 60_000  # noqa: E731
    from_ring = QueryEngine(ring, path, 600_000, 10_000, 5.0, clock=clock)
    from_sql = QueryEngine(evicted, path, 600_000, 10_000, 5.0, clock=clock)
    yield from_ring, from_sql, scans, {"since": T0 - 20 * 60_000, "until": T0 + 60_000}
    from_ring.close()
    from_sql.close()
    w.close()


@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("by", ["src", "dst", "port", "src_port", "dst_port", "protocol", "exporter"])
def test_rollup_path_folds_the_ring_segment_by_segment_as_sqlite_answers(ring_or_sql, by, scaled):
    a_eng, b_eng, scans, window = ring_or_sql
    before = len(scans)
    a = a_eng.top({**window, "by": by, "limit": 7, "scaled": scaled})
    b = b_eng.top({**window, "by": by, "limit": 7, "scaled": scaled})
    assert len(scans) > before  # the ring answered the raw range
    assert a["rows"] == b["rows"] and a["totals"] == b["totals"] and a["rows"]
    before = len(scans)
    a = a_eng.series({**window, "step": 300, "scaled": scaled})
    b = b_eng.series({**window, "step": 300, "scaled": scaled})
    assert len(scans) > before and a["points"] == b["points"]
    for kind in ("dst_prefix", "exporter"):
        a = a_eng.rollups({**window, "kind": kind, "scaled": scaled})
        b = b_eng.rollups({**window, "kind": kind, "scaled": scaled})
        assert a["rows"] == b["rows"] and a["rows"]["key"]
