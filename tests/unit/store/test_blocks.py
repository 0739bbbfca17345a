"""The warm tier's block codec: bit-exact round trips and stats that never prune a matching block."""
from __future__ import annotations

import struct

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowlens_store import blocks
from flowlens_store.blocks import (BLOCK_DTYPES, BLOCK_ROWS, Options, blobs_needed, decode_block, decode_rows,
                                   encode_block)
from flowlens_store.blockstats import block_may_match, stats_may_hold_addr
from flowlens_store.planner import ring_mask
from flowmodel import addr
from flowmodel.schema import ADDR

SHAPES = ("const", "full", "small", "sorted", "extremes", "stepped")
ADDR_SHAPES = ("const", "ipv4", "mixed", "random16")


def _int_column(rng: np.random.Generator, dt: np.dtype, n: int, shape: str) -> np.ndarray:
    info = np.iinfo(dt)
    if shape == "const":
        return np.full(n, rng.integers(info.min, info.max, endpoint=True, dtype=dt), dt)
    if shape == "stepped":  # one difference between consecutive rows (seq in arrival order), wrapping
        step = rng.choice(np.array([1, 2, 1000, (1 << 64) - 1, (1 << 64) - 1000, rng.integers(0, 1 << 63)], np.uint64))
        start = int(rng.integers(0, 1 << 63))
        return (np.uint64(start) + np.arange(n, dtype=np.uint64) * step).astype(f"u{dt.itemsize}").view(dt)
    if shape == "extremes":
        return rng.choice(np.array([info.min, info.max, 0, 1, info.max - 1], dtype=dt), n)
    if shape == "small":
        span = min(300, int(info.max) - int(info.min))
        base = int(rng.integers(info.min, int(info.max) - span, endpoint=True, dtype=dt))
        return np.array([base], dt) + rng.integers(0, span, n, endpoint=True).astype(dt)
    col = rng.integers(info.min, info.max, n, endpoint=True, dtype=dt)
    return np.sort(col) if shape == "sorted" else col


def _addr_column(rng: np.random.Generator, n: int, shape: str) -> np.ndarray:
    if shape == "const":
        return np.repeat(rng.integers(0, 256, 16, dtype=np.uint8).view(ADDR), n)
    if shape == "random16":
        return rng.integers(0, 256, (n, 16), dtype=np.uint8).view(ADDR).reshape(n)
    v4 = addr.ipv4_column(rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32))
    if shape == "mixed":
        v6 = rng.integers(0, 256, (n, 16), dtype=np.uint8)
        v6[:, :4] = [0x20, 0x01, 0x0D, 0xB8]
        v4 = np.where(rng.random(n) < 0.3, v6.view(ADDR).reshape(n), v4)
    return v4


def random_block(seed: int, n: int, shapes: dict[str, str]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    cols = {}
    for name, dt in BLOCK_DTYPES.items():
        if dt == ADDR:
            cols[name] = _addr_column(rng, n, shapes.get(name, "ipv4"))
        else:
            cols[name] = _int_column(rng, dt, n, shapes.get(name, "full"))
    return cols


def site_block(n: int = 8192, seed: int = 1, hosts: tuple[int, int] = (5000, 20000)) -> dict[str, np.ndarray]:
    from bench.flowgen import generate
    cols = generate(n, 1_790_000_000_000, 1_790_000_000_000 + n * 9, seed=seed, inside_hosts=hosts[0],
                    outside_hosts=hosts[1])
    cols["seq"] = np.arange(1000, 1000 + n, dtype=np.int64)
    return cols


def assert_round_trip(cols: dict[str, np.ndarray], options: Options = blocks.DEFAULT) -> dict:
    n = len(cols["time_end"])
    blobs, stats = encode_block(cols, options)
    assert set(blobs) == set(BLOCK_DTYPES)
    out = decode_block(blobs, BLOCK_DTYPES, n)
    for name, dt in BLOCK_DTYPES.items():
        assert out[name].dtype == dt, name
        assert out[name].shape == (n,), name
        assert out[name].tobytes() == cols[name].tobytes(), name
    # a few rows only (a page's): the same values as the whole decode at those rows, any order, repeats
    idx = np.random.default_rng(n).integers(0, n, min(n, 60))
    some = decode_rows(blobs, BLOCK_DTYPES, n, idx)
    for name, dt in BLOCK_DTYPES.items():
        assert some[name].dtype == dt and some[name].tobytes() == cols[name][idx].tobytes(), name
    return stats


column_shapes = st.fixed_dictionaries(
    {name: st.sampled_from(ADDR_SHAPES if dt == ADDR else SHAPES) for name, dt in BLOCK_DTYPES.items()})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 400), shapes=column_shapes,
       options=st.sampled_from([Options(), Options(dictionary=True, level=3), Options(codec="lz4", shuffle=False)]))
def test_round_trip_is_bit_exact(seed, n, shapes, options):
    assert_round_trip(random_block(seed, n, shapes), options)


@pytest.mark.parametrize("options", [
    Options(), Options(codec="lz4"), Options(codec="raw", shuffle=False), Options(level=1, dictionary=False),
    Options(narrow=False, delta=False, dictionary=False, shuffle=False, duration=False),
    Options(dict_addresses=False, delta=False), Options(dictionary=True),
])
def test_every_option_round_trips(options):
    for seed, shapes in enumerate([{}, {"src_addr": "mixed", "time_end": "sorted", "seq": "sorted"},
                                   {"dst_addr": "random16", "bytes": "extremes", "time_start": "extremes"}]):
        assert_round_trip(random_block(seed, 3000, shapes), options)
    assert_round_trip(site_block(5000), options)


def test_edge_values():
    i64, u64 = np.iinfo(np.int64), np.iinfo(np.uint64)
    cols = random_block(3, 4, {})
    cols["time_end"][:] = [i64.min, i64.max, 0, -1]
    cols["time_start"][:] = [i64.max, i64.min, i64.min, i64.max]   # durations that wrap
    cols["bytes"][:] = [u64.max, 0, u64.max, 1]
    cols["packets"][:] = u64.max
    cols["seq"][:] = [i64.max, i64.min, 7, 7]
    assert_round_trip(cols)
    one = {name: col[:1].copy() for name, col in cols.items()}
    stats = assert_round_trip(one)
    assert stats["rows"] == 1
    assert stats["time_end_min"] == stats["time_end_max"] == i64.min


def test_block_size_limits():
    cols = random_block(1, 2, {})
    with pytest.raises(ValueError):
        encode_block({name: col[:0] for name, col in cols.items()})
    big = {name: np.resize(col, BLOCK_ROWS + 1) for name, col in cols.items()}
    with pytest.raises(ValueError):
        encode_block(big)
    cols["bytes"] = cols["bytes"].astype(np.int64)
    with pytest.raises(ValueError):
        encode_block(cols)


def test_a_full_block_round_trips_and_is_small():
    cols = site_block(BLOCK_ROWS)
    blobs, stats = encode_block(cols)
    out = decode_block(blobs, BLOCK_DTYPES, BLOCK_ROWS)
    assert all(out[name].tobytes() == cols[name].tobytes() for name in BLOCK_DTYPES)
    per_flow = (sum(map(len, blobs.values())) + len(msgpack.packb(stats))) / BLOCK_ROWS
    assert per_flow < 44, "nfdump's LZ4 files take 44 bytes per flow"
    # constant columns cost a header, not a column
    assert len(blobs["sampling_rate"]) < 32 and len(blobs["flow_version"]) < 32


def test_decode_reads_only_the_blobs_it_needs():
    cols = site_block(2000)
    blobs, _ = encode_block(cols)
    assert blobs_needed(["time_start", "bytes"]) == {"time_start", "time_end", "bytes"}
    some = {name: blobs[name] for name in blobs_needed(["time_start", "bytes"])}
    out = decode_block(some, ["time_start", "bytes"], 2000)
    assert list(out) == ["time_start", "bytes"]
    assert np.array_equal(out["time_start"], cols["time_start"])
    with pytest.raises(KeyError):
        decode_block({"time_start": blobs["time_start"]}, ["time_start"], 2000)


def test_unknown_format_is_refused():
    blobs, _ = encode_block(site_block(100))
    with pytest.raises(ValueError, match="format"):
        decode_block({"bytes": b"\x09" + blobs["bytes"][1:]}, ["bytes"], 100)


# ------------------------------------------------------------------ stats and pruning

def _v4(text: str) -> bytes:
    return addr.to_bytes(text)


def _random_filter(rng: np.random.Generator, cols: dict[str, np.ndarray]) -> dict:
    """A filter dict like planner.parse_filters gives: values from the block (so some match) or not."""
    n = len(cols["time_end"])
    row = int(rng.integers(0, n))
    f: dict = {}
    te = cols["time_end"]
    if rng.random() < 0.5:
        f["since"] = int(te[row]) + int(rng.integers(-5, 5))
    if rng.random() < 0.4:
        f["until"] = int(te[row]) + int(rng.integers(-5, 50))
    for key, column in (("src", "src_addr"), ("dst", "dst_addr"), ("addr", "src_addr"), ("exporter", "exporter")):
        if rng.random() < 0.3:
            a = int.from_bytes(bytes(cols[column][row]), "big")
            if rng.random() < 0.3:
                a += int(rng.integers(1, 3))   # a neighbour, usually absent
            width = int(rng.choice([0, 0, 2, 8, 24]))
            lo = a >> width << width
            hi = min(lo + (1 << width) - 1, (1 << 128) - 1)
            f[key] = (lo.to_bytes(16, "big"), hi.to_bytes(16, "big"))
    for key, column in (("port", "dst_port"), ("src_port", "src_port"), ("dst_port", "dst_port")):
        if rng.random() < 0.2:
            f[key] = int(cols[column][row]) if rng.random() < 0.7 else int(rng.integers(0, 65536))
    if rng.random() < 0.3:
        f["protocol"] = int(cols["protocol"][row]) if rng.random() < 0.7 else int(rng.integers(0, 256))
    return f


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300), shapes=column_shapes)
def test_a_block_with_a_matching_row_is_never_pruned(seed, n, shapes):
    cols = random_block(seed, n, shapes)
    blobs, stats = encode_block(cols)
    decoded = decode_block(blobs, BLOCK_DTYPES, n)
    rng = np.random.default_rng(seed)
    for _ in range(20):
        f = _random_filter(rng, cols)
        if ring_mask(decoded, f).any():
            assert block_may_match(stats, f), f


def test_site_blocks_prune_what_they_cannot_hold():
    rng = np.random.default_rng(5)
    matched = pruned = kept_empty = 0
    for seed in range(4):
        cols = site_block(4096, seed=seed, hosts=(300, 800))
        _, stats = encode_block(cols)
        stats = msgpack.unpackb(msgpack.packb(stats))
        for _ in range(300):
            f = _random_filter(rng, cols)
            if ring_mask(cols, f).any():
                matched += 1
                assert block_may_match(stats, f), f
            elif block_may_match(stats, f):
                kept_empty += 1
            else:
                pruned += 1
    assert matched > 100 and pruned > 50, (matched, pruned, kept_empty)


def test_a_host_the_block_never_saw_is_pruned():
    cols = site_block(BLOCK_ROWS)
    _, stats = encode_block(cols)
    seen = set(cols["src_addr"].tobytes()[i:i + 16] for i in range(0, BLOCK_ROWS * 16, 16))
    seen |= set(cols["dst_addr"].tobytes()[i:i + 16] for i in range(0, BLOCK_ROWS * 16, 16))
    rng = np.random.default_rng(9)
    # absent hosts inside the block's address range (min/max alone cannot prune them)
    candidates = addr.ipv4_column(np.concatenate([(10 << 24) + rng.integers(0, 1 << 16, 3000),
                                                  rng.integers(1 << 24, 223 << 24, 3000)]).astype(np.uint32))
    absent = [bytes(a) for a in candidates if bytes(a) not in seen]
    assert len(absent) > 1000
    pruned = sum(not block_may_match(stats, {"addr": (a, a)}) for a in absent)
    assert pruned / len(absent) > 0.9, pruned / len(absent)
    # every present host is kept, by src, dst and addr filters
    for a in list(seen)[:2000]:
        assert block_may_match(stats, {"addr": (a, a)})
    for row in rng.integers(0, BLOCK_ROWS, 500):
        s, d = bytes(cols["src_addr"][row]), bytes(cols["dst_addr"][row])
        assert block_may_match(stats, {"src": (s, s), "dst": (d, d)})


def test_cidr_uses_ranges_and_small_cidrs_probe_the_filter():
    cols = site_block(4096)
    _, stats = encode_block(cols)
    # a /16 inside the block's range matches; one wholly above every address does not
    assert stats_may_hold_addr(stats, _v4("10.0.0.0"), _v4("10.0.255.255"))
    assert not stats_may_hold_addr(stats, _v4("255.255.255.0"), _v4("255.255.255.255"))
    assert not stats_may_hold_addr(stats, addr.to_bytes("2001:db8::"), addr.to_bytes("2001:db8::ffff"))
    # a /30 of absent hosts is pruned by the Bloom filter; a /30 around a present host is not
    host = int.from_bytes(bytes(cols["src_addr"][0]), "big")
    lo = host >> 2 << 2
    assert stats_may_hold_addr(stats, lo.to_bytes(16, "big"), (lo + 3).to_bytes(16, "big"))


def test_time_port_protocol_and_exporter_prune():
    cols = site_block(4096)
    _, stats = encode_block(cols)
    te = cols["time_end"]
    assert block_may_match(stats, {"since": int(te.max()), "until": int(te.max()) + 1})
    assert not block_may_match(stats, {"since": int(te.max()) + 1})
    assert not block_may_match(stats, {"until": int(te.min())})
    assert block_may_match(stats, {"until": int(te.min()) + 1})
    assert block_may_match(stats, {"protocol": 6}) and not block_may_match(stats, {"protocol": 47})
    exporters = np.unique(cols["exporter"])
    assert stats["exporters"] == [bytes(e) for e in exporters]
    e = bytes(exporters[0])
    assert block_may_match(stats, {"exporter": (e, e)})
    other = _v4("192.168.254.1")
    assert not block_may_match(stats, {"exporter": (other, other)})
    assert not block_may_match(stats, {"src_port": int(cols["src_port"].max()) + 1}) or \
        cols["src_port"].max() == 65535


def test_stats_survive_msgpack():
    cols = site_block(4096)
    _, stats = encode_block(cols)
    back = msgpack.unpackb(msgpack.packb(stats))
    assert back == stats
    for key, value in stats.items():
        assert value is None or isinstance(value, (int, bytes, list)), key
    assert len(msgpack.packb(stats)) < 8 * 1024
    a = bytes(cols["dst_addr"][7])
    assert block_may_match(back, {"dst": (a, a)})
    assert struct.unpack(">QQ", stats["src_addr_min"]) <= struct.unpack(">QQ", stats["src_addr_max"])


def test_few_distinct_values_take_a_dictionary():
    cols = random_block(4, 4000, {"src_addr": "random16"})
    cols["input_if"] = np.resize(np.array([7, 1 << 20, 3 << 28, 1 << 31, 99], np.uint32), 4000)
    cols["src_addr"] = np.resize(cols["src_addr"][:50], 4000)   # 50 IPv6 hosts
    plain, _ = encode_block(cols, Options(dictionary=False, dict_addresses=False, codec="raw"))
    with_dict, _ = encode_block(cols, Options(dictionary=True, codec="raw"))
    assert len(with_dict["input_if"]) < len(plain["input_if"]) / 3
    assert len(with_dict["src_addr"]) < len(plain["src_addr"]) / 4
    assert_round_trip(cols, Options(dictionary=True, codec="raw"))
