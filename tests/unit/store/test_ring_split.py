"""top and series over a hot (unsealed) hour split at the ring's evicted bound: the ring answers the
newest part, SQLite the older rest (rawgroups.raw_parts). Random windows with edges before, inside and
after what the ring holds, scaled or not, give the same answer as SQLite alone and a plain sum."""
import numpy as np
import pytest

from flowlens_store.queries import QueryEngine
from flowlens_store.ring import Ring
from flowlens_store.warm import WarmWriter
from flowmodel import addr
from flowmodel.schema import FlowBatch

from store_testdata import T0, make_batch, with_seq

HOUR = 3_600_000
BASE = (T0 // HOUR) * HOUR


def hot_flows() -> FlowBatch:
    """3 hours, the last one hot; keys repeat, a sampled exporter, flows arrive in time order."""
    rng = np.random.default_rng(11)
    parts = []
    for h in range(3):
        b = make_batch(1500, t0=BASE + h * HOUR + 777, spacing_ms=2391, seed=60 + h)
        n = b.count
        b.columns["src_addr"][:] = addr.from_texts([f"10.0.{a}.{c}" for a, c in rng.integers(0, 4, (n, 2))])
        b.columns["sampling_rate"][:] = np.where(rng.random(n) < 0.3, rng.choice([10, 100], n), 1)
        parts.append(b)
    return FlowBatch.concat(parts)


@pytest.fixture(scope="module", params=[400, 1100])
def engines(tmp_path_factory, request):
    """(split engine: a ring of the newest ``param`` flows, SQLite-only engine, flows)."""
    path = str(tmp_path_factory.mktemp("split") / "f.db")
    flows = hot_flows()
    w = WarmWriter(path, HOUR, 24, 64, seal_chunk_rows=700)
    cols = with_seq(flows, 1)
    ring = Ring(request.param, segment_rows=100)
    for i in range(0, flows.count, 250):
        part = {k: v[i:i + 250] for k, v in cols.items()}
        w.write_flows(part)
        ring.append(FlowBatch({k: v for k, v in part.items() if k != "seq"}), i + 1)
    assert w.seal_due(BASE + 2 * HOUR + 200_000) == 2  # the third hour stays hot
    assert ring.evicted_max_time_end is not None and ring.evicted_max_time_end > BASE + 2 * HOUR
    only_sql = Ring(10)
    only_sql.evicted_max_time_end = int(flows["time_end"].max())
    clock = lambda: BASE + 3 * HOUR  # noqa: E731
    split = QueryEngine(ring, path, 600_000, 10_000, 10.0, clock=clock)
    plain = QueryEngine(only_sql, path, 600_000, 10_000, 10.0, clock=clock)
    yield split, plain, flows
    split.close()
    plain.close()
    w.close()


def windows(flows, ring):
    """Random windows over the hot hour and beyond: edges before the ring, inside it, at its bound."""
    rng = np.random.default_rng(5)
    bound = ring.evicted_max_time_end
    edges = [BASE + HOUR + 123, BASE + 2 * HOUR, BASE + 2 * HOUR + 1, bound, bound + 1, bound + 2]
    out = []
    for _ in range(12):
        lo = int(rng.choice(edges)) if rng.random() < 0.4 else int(rng.integers(BASE + HOUR, BASE + 3 * HOUR))
        hi = int(rng.integers(lo + 1, BASE + 3 * HOUR + 60_000))
        out.append((lo, hi))
    out.append((bound + 1, BASE + 3 * HOUR))  # the ring alone answers the raw part
    return out


def test_split_windows_reach_both_sides(engines):
    split, _plain, flows = engines
    ws = windows(flows, split.ring)
    bound = split.ring.evicted_max_time_end
    assert any(lo <= bound < hi for lo, hi in ws) and any(lo > bound for lo, _hi in ws)


@pytest.mark.parametrize("by", ["src", "dst", "protocol", "port"])
def test_top_split_at_the_ring_equals_sqlite_and_plain(engines, by):
    split, plain, flows = engines
    for since, until in windows(flows, split.ring):
        m = (flows["time_end"] >= since) & (flows["time_end"] < until)
        for metric, scaled in (("bytes", True), ("flows", False), ("packets", True)):
            args = {"since": since, "until": until, "by": by, "metric": metric, "limit": 10, "scaled": scaled}
            got, want = split.top(dict(args)), plain.top(dict(args))
            assert got["rows"] == want["rows"], (since, until, metric)
            assert got["totals"] == want["totals"]
            rate = np.maximum(flows["sampling_rate"], 1).astype(np.uint64) if scaled else 1
            assert got["totals"]["flows"] == int(m.sum())
            assert got["totals"]["bytes"] == int((flows["bytes"] * rate)[m].sum())


@pytest.mark.parametrize("step", [12, 60, 300])
def test_series_split_at_the_ring_equals_sqlite_and_plain(engines, step):
    split, plain, flows = engines
    for since, until in windows(flows, split.ring):
        m = (flows["time_end"] >= since) & (flows["time_end"] < until)
        for scaled in (True, False):
            args = {"since": since, "until": until, "step": step, "scaled": scaled}
            got, want = split.series(dict(args)), plain.series(dict(args))
            assert got["points"] == want["points"], (since, until, scaled)
            rate = np.maximum(flows["sampling_rate"], 1).astype(np.uint64) if scaled else 1
            assert sum(p[3] for p in got["points"]) == int(m.sum())
            assert sum(p[1] for p in got["points"]) == int((flows["bytes"] * rate)[m].sum())
