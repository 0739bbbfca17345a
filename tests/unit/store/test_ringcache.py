"""The ring's cache of decoded block columns: answers stay those of a ring without it, through
wrap-around and eviction, and the cache keeps to its byte bound."""
import numpy as np

from flowmodel import addr
from flowlens_store.planner import ring_mask
from flowlens_store.ring import Ring
from flowlens_store.ringcache import DecodedColumns

from store_testdata import T0, make_batch

HOST = addr.from_texts(["192.168.1.2"])[0]


def _host_filter():
    return {"addr": (bytes(HOST), bytes(HOST))}


def _select(ring: Ring, f: dict) -> dict:
    return ring.select(lambda c: ring_mask(c, f), filters=f)


def test_cached_ring_answers_like_an_uncached_one_through_eviction():
    plain, cached = Ring(3000, segment_rows=500), Ring(3000, segment_rows=500, decoded_cache_bytes=200_000)
    f = _host_filter()
    seq = 1
    for i in range(12):  # 12 x 700 rows through a 3000-row ring: blocks are encoded, read, evicted
        b = make_batch(700, t0=T0 + i * 7000, seed=i)
        plain.append(b, seq)
        cached.append(b, seq)
        seq += 700
        for _ in range(2):  # the second select is answered from the cache
            want, got = _select(plain, f), _select(cached, f)
            assert len(want["seq"]) > 0
            for name in want:
                assert np.array_equal(want[name], got[name]), name
    assert cached.decoded.hits > 0
    assert cached.decoded.nbytes <= 200_000
    live = {id(b) for b in cached._blocks}
    assert all(key[0] in live for key in cached.decoded._cols)  # evicted blocks' columns are gone


def test_cache_keeps_to_its_bound_dropping_the_least_recently_used():
    cache = DecodedColumns(max_bytes=3 * 800)
    blocks = [object() for _ in range(4)]
    cols = [np.arange(100, dtype=np.int64) + i for i in range(4)]  # 800 bytes each
    for b, c in zip(blocks[:3], cols):
        cache.put(b, "time_end", c)
    assert cache.get(blocks[0], "time_end") is cols[0]  # now the most recently used
    cache.put(blocks[3], "time_end", cols[3])
    assert cache.nbytes == 3 * 800
    assert cache.get(blocks[1], "time_end") is None  # the least recently used went
    assert cache.get(blocks[0], "time_end") is cols[0]
    assert not cols[0].flags.writeable  # shared between queries: nobody may change it
    cache.put(object(), "big", np.zeros(1000, np.int64))  # larger than the bound: not kept
    assert cache.nbytes == 3 * 800


def test_a_new_block_at_a_reused_id_is_a_miss():
    cache = DecodedColumns(max_bytes=10_000)
    first = object()
    cache.put(first, "time_end", np.arange(10))
    other = object()
    key = (id(first), "time_end")
    cache._cols[key] = (other, cache._cols[key][1])  # as if `first` died and its id went to another block
    assert cache.get(first, "time_end") is None
