"""The overview's cache of per-block group sums (blocksums.py): with it the ring's overview gives
exactly the answer it gives without it, for windows covering blocks whole, in part or not at all,
mixed sampling rates, IPv4 and IPv6 keys, evictions between calls and bounds too small to keep all."""
import numpy as np
import pytest

from flowmodel import addr
from flowmodel.schema import FlowBatch
from flowlens_store.queries import QueryEngine
from flowlens_store.ring import Ring

from store_testdata import T0

SEGMENT = 256


def _batch(rng: np.random.Generator, t0: int, n: int, v6_share: float, ties: bool = False) -> FlowBatch:
    """n flows ending from t0 on, roughly in time order (jittered, so blocks' time ranges overlap)."""
    b = FlowBatch.empty(n)
    te = t0 + np.sort(rng.integers(0, 4_000, n)) + rng.integers(-1_500, 1_500, n)
    b["time_end"][:] = te
    b["time_start"][:] = np.where(rng.random(n) < 0.2, 0, te - rng.choice([0, 300, 5_000, 40_000], n))
    src = addr.ipv4_column((10 << 24) | rng.zipf(1.5, n).clip(1, 300).astype(np.uint32))
    dst = addr.ipv4_column((10 << 24) | (8 << 16) | rng.integers(1, 2_000, n, dtype=np.uint32))
    v6 = rng.random(n) < v6_share
    if v6.any():
        raw = np.zeros((int(v6.sum()), 16), np.uint8)
        raw[:, 0], raw[:, 1] = 0x20, 0x01
        raw[:, 15] = rng.integers(0, 40, len(raw))
        src[v6] = raw.view(src.dtype).reshape(-1)
    b.columns["src_addr"], b.columns["dst_addr"] = src, dst
    b["protocol"][:] = rng.choice(np.array([6, 17, 1, 47], np.uint8), n)
    b["bytes"][:] = np.where(rng.random(n) < 0.01, rng.integers(1 << 40, 1 << 62, n), rng.integers(40, 1_500_000, n))
    b["packets"][:] = rng.integers(1, 1000, n)
    b["sampling_rate"][:] = rng.choice(np.array([0, 1, 100, 4096], np.uint32), n)
    if ties:  # equal bytes: the top's order among equals is the keys' byte order, which merging must keep
        b["bytes"][:], b["sampling_rate"][:] = 1500, 1
    b["flow_version"][:] = 10
    return b


def _engines(tmp_path, capacity: int, bound: int):
    """Two engines over two rings fed alike: one keeps block sums (bounded by ``bound``), one none."""
    clock = {"now": T0}
    rings = Ring(capacity, segment_rows=SEGMENT), Ring(capacity, segment_rows=SEGMENT, block_sums_bytes=bound)
    engines = [QueryEngine(r, str(tmp_path / f"none{i}.db"), 600_000, 10_000, 5.0, clock=lambda: clock["now"])
               for i, r in enumerate(rings)]
    return rings, engines, clock


def _windows(ring: Ring, rng: np.random.Generator) -> list[dict]:
    lo, hi = ring.time_bounds()
    start = lo if ring.evicted_max_time_end is None else max(lo, ring.evicted_max_time_end + 1)
    mid = int(rng.integers(start, hi))
    return [{"since": start, "until": hi + 1},                    # every block whole
            {"since": mid, "until": hi + 1},                      # the older blocks cut or left out
            {"since": start, "until": mid},                       # the newer ones cut or left out
            {"since": start + (mid - start) // 3, "until": mid},  # cut at both ends
            {"since": hi - 500, "until": hi + 1},                 # the newest rows only: most blocks missed
            {"since": start, "until": hi + 1, "protocol": 6}]        # a filter: sums from rows, not the cache


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("bound", [64 << 20, 40_000], ids=["all blocks fit", "a few fit"])
def test_overview_with_block_sums_equals_overview_without(tmp_path, seed, bound):
    _compare(tmp_path, seed, bound, ties=False)


def test_overview_with_block_sums_keeps_the_order_of_equal_keys(tmp_path):
    """Every row sealed and none evicted: a window over every block is answered from cached sums
    alone, whose merged keys must come back in byte order for ties to go to the same keys."""
    _compare(tmp_path, 9, 64 << 20, ties=True, capacity=100_000, rows=2 * SEGMENT)


def _compare(tmp_path, seed: int, bound: int, ties: bool, capacity: int = 3_000, rows: int = 900) -> None:
    rng = np.random.default_rng(seed)
    (plain, cached), (want_eng, got_eng), clock = _engines(tmp_path, capacity, bound)
    seq, t = 1, T0
    try:
        for _round in range(8):  # 8 x 900 rows through a 3,000-row ring: blocks sealed, read, evicted
            b = _batch(rng, t, rows, v6_share=float(rng.choice([0.0, 0.05])), ties=ties)
            for r in (plain, cached):
                r.append(b, seq)
            seq, t = seq + b.count, t + 4_000
            clock["now"] = t + 2_000
            for window in _windows(plain, rng):
                for _again in (False, True):  # the second time from the cache
                    args = {**window, "step": float(rng.choice([1, 2.5, 10])), "limit": int(rng.integers(1, 30))}
                    want, got = want_eng.overview(args), got_eng.overview(args)
                    assert got == want, window
                    if _again:  # and both are what the separate ops (series, top: no block shortcuts) say
                        base = {k: v for k, v in args.items() if k not in ("step", "limit")}
                        series = want_eng.series({**base, "step": args["step"], "spread": True, "scaled": True})
                        assert got["series"]["points"] == series["points"]
                        for by in ("src", "dst", "protocol"):
                            top = want_eng.top({**base, "by": by, "limit": args["limit"], "scaled": True})
                            assert (got["top"][by]["rows"], got["top"][by]["totals"]) == (top["rows"], top["totals"])
                    assert got["top"]["src"]["totals"]["flows"] > 0
        sums = cached.block_sums
        assert sums.hits > 0 and sums.misses > 0
        assert 0 < sums.nbytes <= bound
        live = {id(blk) for blk in cached._blocks}
        assert set(sums._entries) <= live  # evicted blocks' sums are gone
        assert len(sums._entries) < len(cached._blocks) if bound < 50_000 else len(sums._entries) == len(live)
        if ties:
            assert cached._open_rows == 0 and cached.evicted_max_time_end is None
    finally:
        for e in (want_eng, got_eng):
            e.close()


def test_block_sums_keep_ipv6_keys_and_ipv4_keys_exactly():
    """A block of IPv4-mapped keys is kept as 4-byte words and handed back as the same bytes; a block
    with an IPv6 key is kept as it is."""
    from flowlens_store.blocksums import BlockSums, expand
    sums = BlockSums(1 << 20)
    v4 = addr.ipv4_column(np.array([1, 2, 0xC0A80001], np.uint32))
    v6 = addr.from_texts(["2001:db8::1", "::ffff:1.2.3.4", "::1"])
    one = np.ones(3, np.uint64)
    blocks = [object(), object()]
    for blk, keys in zip(blocks, (v4, v6)):
        sums.put(blk, {"src": ({"src_addr": keys}, one * 7, one * 5, one * 3)})
    for blk, keys in zip(blocks, (v4, v6)):
        got_keys, b, p, n = expand(sums.get(blk)["src"])
        assert got_keys["src_addr"].tobytes() == keys.tobytes() and got_keys["src_addr"].dtype == keys.dtype
        assert b.tolist() == [7] * 3 and p.tolist() == [5] * 3 and n.tolist() == [3] * 3 and n.dtype == np.uint64
    assert sums.nbytes == (3 * 4 + 3 * 8 * 2 + 3 * 4) + (3 * 16 + 3 * 8 * 2 + 3 * 4)
    sums.drop(blocks[0])
    assert sums.get(blocks[0]) is None and sums.nbytes == 3 * 16 + 3 * 8 * 2 + 3 * 4
