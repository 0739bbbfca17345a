"""The hot hour's kept sums (blockruns.py) and the ring's per-block sums used by top and series: as the
hour gains blocks between queries, answers from the kept runs equal a store without any cache and a
plain numpy sum, and the runs are really reused (counted)."""
import numpy as np
import pytest

from flowlens_store.blockruns import BlockRuns
from flowlens_store.queries import QueryEngine
from flowlens_store.ring import Ring
from flowlens_store.warm import WarmWriter
from flowmodel import addr
from flowmodel.schema import FlowBatch

from store_testdata import T0, make_batch, with_seq

HOUR = 3_600_000
BASE = (T0 // HOUR) * HOUR


def flows_of_hour(h: int, n: int, seed: int) -> FlowBatch:
    rng = np.random.default_rng(seed)
    b = make_batch(n, t0=BASE + h * HOUR + 500 + seed, spacing_ms=(HOUR - 1000) // (n + 1), seed=seed)
    # repeating sources, a few IPv6 destinations among IPv4 ones, a sampled exporter
    b.columns["src_addr"][:] = addr.from_texts([f"10.1.{a}.{c}" for a, c in rng.integers(0, 5, (n, 2))])
    v6 = rng.random(n) < 0.1
    b.columns["dst_addr"][v6] = addr.from_texts([f"2001:db8::{i % 7:x}" for i in range(int(v6.sum()))])
    b.columns["sampling_rate"][:] = np.where(rng.random(n) < 0.3, rng.choice([10, 100], n), 1)
    return b


def test_tops_and_series_over_a_growing_hot_hour_equal_a_store_without_caches(tmp_path):
    path = str(tmp_path / "f.db")
    w = WarmWriter(path, HOUR, 24, 64, seal_chunk_rows=300)
    ring = Ring(500, segment_rows=100, block_sums_bytes=4 << 20)
    seq = 1
    written = []

    def write(batch: FlowBatch) -> None:
        nonlocal seq
        cols = with_seq(batch, seq)
        for i in range(0, batch.count, 150):
            part = {k: v[i:i + 150] for k, v in cols.items()}
            w.write_flows(part)
            ring.append(FlowBatch({k: v for k, v in part.items() if k != "seq"}), seq + i)
        seq += batch.count
        written.append(batch)

    write(flows_of_hour(0, 1200, 1))
    assert w.seal_due(BASE + HOUR + 200_000) == 1
    hot = flows_of_hour(1, 4000, 2)
    order = np.argsort(hot["time_end"], kind="stable")
    hot = FlowBatch({k: v[order] for k, v in hot.columns.items()})
    clock = lambda: BASE + 2 * HOUR  # noqa: E731
    cached = QueryEngine(ring, path, 600_000, 10_000, 10.0, clock=clock)
    cached.block_runs = BlockRuns(8 << 20)
    only_sql = Ring(10)
    plain = QueryEngine(only_sql, path, 600_000, 10_000, 10.0, clock=clock)
    windows = [(BASE + HOUR, BASE + 2 * HOUR), (BASE + 1234, BASE + 2 * HOUR), (BASE + HOUR + 777_777, BASE + 2 * HOUR)]
    try:
        for stage in range(4):  # the hot hour gains a quarter of its flows (and blocks) between queries
            write(FlowBatch({k: v[stage * 1000:(stage + 1) * 1000] for k, v in hot.columns.items()}))
            only_sql.evicted_max_time_end = int(max(b["time_end"].max() for b in written))
            allf = FlowBatch.concat(written)
            for since, until in windows:
                m = (allf["time_end"] >= since) & (allf["time_end"] < until)
                for scaled in (True, False):
                    rate = np.maximum(allf["sampling_rate"], 1).astype(np.uint64) if scaled else 1
                    for by in ("src", "dst", "protocol", "port"):
                        args = {"since": since, "until": until, "by": by, "limit": 10, "scaled": scaled}
                        got, want = cached.top(dict(args)), plain.top(dict(args))
                        assert got["rows"] == want["rows"], (stage, since, by, scaled)
                        assert got["totals"] == want["totals"]
                        assert got["totals"]["flows"] == int(m.sum())
                        assert got["totals"]["bytes"] == int((allf["bytes"] * rate)[m].sum())
                    for step in (60, 300):
                        args = {"since": since, "until": until, "step": step, "scaled": scaled}
                        got, want = cached.series(dict(args)), plain.series(dict(args))
                        assert got["points"] == want["points"], (stage, since, step, scaled)
                        assert sum(p[1] for p in got["points"]) == int((allf["bytes"] * rate)[m].sum())
                        assert sum(p[3] for p in got["points"]) == int(m.sum())
        stats = cached.block_runs.stats()
        # from the second stage on, each question's run was grown from the one kept before
        assert stats["hits"] > 0 and stats["blocks_merged"] > 0 and stats["runs"] > 0, stats
        assert stats["bytes"] <= 8 << 20
        assert ring.block_sums.hits > 0  # the ring's whole blocks were merged from their kept sums
    finally:
        cached.close()
        plain.close()
        w.close()


def grouped(keys: dict, n: int):
    return keys, np.arange(1, n + 1, dtype=np.uint64), np.arange(n, dtype=np.uint64) * 3, np.ones(n, np.uint64)


def test_a_run_is_used_only_while_its_blocks_are_all_still_read():
    runs = BlockRuns(1 << 20)
    a = frozenset({(1, 10, 0, 5), (2, 10, 6, 9)})
    runs.put(("p", "top"), a, grouped({"t": np.array([0, 60_000], np.int64)}, 2))
    assert runs.get(("p", "top"), a | {(3, 10, 10, 12)}) is not None  # grown: the run is a part of it
    assert runs.get(("p", "top"), frozenset({(2, 10, 6, 9), (3, 10, 10, 12)})) is None  # block 1 is gone
    assert runs.get(("p", "top"), frozenset({(1, 11, 0, 5), (2, 10, 6, 9)})) is None  # block 1 changed
    assert runs.get(("q", "top"), a) is None
    assert (runs.hits, runs.misses) == (1, 3)


def test_kept_sums_come_back_exactly_ipv4_narrowed_and_other_keys_untouched():
    runs = BlockRuns(1 << 20)
    dst = addr.from_texts(["10.0.0.1", "192.168.7.9", "2001:db8::1"])
    v4 = addr.from_texts(["10.0.0.1", "192.168.7.9"])
    ifs = np.array([7, 4_000_000_000], np.uint32)  # a uint32 key that is not an address
    ids = frozenset({(1, 3, 0, 1)})
    for key, keys in ((("p", "dst6"), {"dst_addr": dst}), (("p", "dst4"), {"dst_addr": v4}), (("p", "if"), {"k": ifs})):
        sums = grouped(keys, len(next(iter(keys.values()))))
        runs.put(key, ids, sums)
        _ids, back = runs.get(key, ids)
        for name, k in keys.items():
            assert back[0][name].dtype == k.dtype and back[0][name].tobytes() == k.tobytes()
        for i in (1, 2, 3):
            assert back[i].dtype == np.uint64 and back[i].tolist() == sums[i].tolist()
    assert runs.nbytes < 3 * 1000


def test_the_byte_bound_drops_the_least_recently_used_run():
    runs = BlockRuns(4096)
    big = {"t": np.arange(80, dtype=np.int64)}  # 80 keys x 32 bytes: two do not fit
    runs.put(("p", 1), frozenset({1}), grouped(big, 80))
    runs.put(("p", 2), frozenset({1}), grouped(big, 80))
    assert runs.get(("p", 1), frozenset({1})) is None and runs.get(("p", 2), frozenset({1})) is not None
    assert runs.nbytes <= 4096
    runs.put(("p", 3), frozenset({1}), grouped({"t": np.arange(1000, dtype=np.int64)}, 1000))  # alone too big
    assert runs.get(("p", 3), frozenset({1})) is None and runs.get(("p", 2), frozenset({1})) is not None


@pytest.mark.parametrize("held", [True, False])
def test_a_larger_run_kept_by_another_worker_is_not_replaced_by_a_smaller_one(held):
    runs = BlockRuns(1 << 20)
    big, small = frozenset({1, 2, 3}), frozenset({1, 2})
    runs.put(("p",), big, grouped({"t": np.arange(3, dtype=np.int64)}, 3))
    runs.put(("p",), small if held else frozenset({4}), grouped({"t": np.arange(2, dtype=np.int64)}, 2))
    kept = runs.get(("p",), big | {4})
    assert (kept is not None and kept[0] == big) if held else (kept is not None and kept[0] == frozenset({4}))
