"""The sealed hours' rollup histograms: every (dim, step) equals a plain Python group-by of the same
flows, whatever the blocks' split and order; capped buckets keep exact totals and exact top keys."""
from __future__ import annotations

import ipaddress

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowlens_store import hists
from flowlens_store.hists import DIMS, VALUES, HistBuilder, decode_hist, encode_hist, key_text
from flowmodel import addr
from flowmodel.schema import FLOW_COLUMNS

M64 = (1 << 64) - 1
P4, P6 = 24, 64
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(0, 2**32 - 1)


def _address_pool(rng: np.random.Generator, size: int, family: str) -> list[bytes]:
    out = []
    for _ in range(size):
        v6 = family == "v6" or (family == "mix" and rng.random() < 0.5)
        if v6:
            raw = bytes(rng.integers(0, 256, 16, dtype=np.uint8))
            out.append(raw if rng.random() < 0.5 else b"\x20\x01\x0d\xb8" + bytes(4) + raw[8:])  # some share a /64
        else:
            out.append(addr.V4_MAPPED_PREFIX + bytes([10, 0, int(rng.integers(0, 3)), int(rng.integers(0, 256))]))
    return out


def make_flows(seed: int, n: int, family: str = "mix") -> dict[str, np.ndarray]:
    """n random flows over every FLOW_COLUMNS column: few distinct keys (so groups merge), src == dst
    rows, sampling rates 0, 1 and N, uint64-large counters, times around the epoch or far from it."""
    rng = np.random.default_rng(seed)
    pool = _address_pool(rng, int(rng.integers(1, 40)), family)
    exporters = _address_pool(rng, int(rng.integers(1, 4)), family)
    cols = {name: np.zeros(n, dt) for name, (dt, _doc) in FLOW_COLUMNS.items()}
    base = int(rng.choice([-7_200_000, 0, 1_700_000_000_000]))
    span = int(rng.choice([60_000, 3_600_000, 3 * 3_600_000]))
    cols["time_end"] = base + rng.integers(0, span, n)
    cols["time_start"] = cols["time_end"] - rng.integers(0, 1000, n)
    src = [pool[i] for i in rng.integers(0, len(pool), n)]
    dst = [s if rng.random() < 0.2 else pool[int(rng.integers(0, len(pool)))] for s in src]
    cols["src_addr"] = np.frombuffer(b"".join(src), "V16").copy() if n else cols["src_addr"]
    cols["dst_addr"] = np.frombuffer(b"".join(dst), "V16").copy() if n else cols["dst_addr"]
    exp = [exporters[i] for i in rng.integers(0, len(exporters), n)]
    cols["exporter"] = np.frombuffer(b"".join(exp), "V16").copy() if n else cols["exporter"]
    for name, choices in (("src_port", [0, 53, 443, 65535, 40000]), ("dst_port", [0, 53, 443, 65535, 40001]),
                          ("protocol", [1, 6, 17, 58]), ("tos", [0, 0x28, 0xB8]),
                          ("input_if", [1, 2, 2**32 - 1]), ("output_if", [0, 7]),
                          ("src_as", [0, 64512, 2**32 - 1]), ("dst_as", [0, 15169])):
        cols[name] = rng.choice(np.array(choices, FLOW_COLUMNS[name][0]), n)
    big = rng.random(n) < 0.2
    cols["bytes"] = np.where(big, rng.integers(0, M64, n, dtype=np.uint64, endpoint=True),
                             rng.integers(0, 100_000, n).astype(np.uint64))
    cols["packets"] = np.where(rng.random(n) < 0.1, np.uint64(M64), rng.integers(0, 100, n).astype(np.uint64))
    cols["sampling_rate"] = rng.choice(np.array([0, 1, 1, 100, 2**32 - 1], np.uint32), n)
    return cols


# ------------------------------------------------------------------ the reference: plain Python

def _words(raw: bytes) -> tuple[int, int]:
    return int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big")


def _prefix(raw: bytes) -> tuple[int, int]:
    if raw[:12] == addr.V4_MAPPED_PREFIX:
        net = ipaddress.IPv4Network((ipaddress.IPv4Address(raw[12:]), P4), strict=False)
        return _words(addr.V4_MAPPED_PREFIX + net.network_address.packed)
    return _words(ipaddress.IPv6Network((ipaddress.IPv6Address(raw), P6), strict=False).network_address.packed)


def _row_key(dim: str, r: dict):
    s, d = bytes(r["src_addr"]), bytes(r["dst_addr"])
    if dim == "self":
        return _words(s) if s == d else None
    return {"src": lambda: _words(s), "dst": lambda: _words(d), "exporter": lambda: _words(bytes(r["exporter"])),
            "dst_prefix": lambda: _prefix(d),
            "in_if": lambda: (*_words(bytes(r["exporter"])), int(r["input_if"])),
            "out_if": lambda: (*_words(bytes(r["exporter"])), int(r["output_if"])),
            "if_pair": lambda: (*_words(bytes(r["exporter"])), int(r["input_if"]), int(r["output_if"])),
            "as_pair": lambda: (int(r["src_as"]), int(r["dst_as"])),
            "port": lambda: (min(int(r["src_port"]), int(r["dst_port"])),)}.get(dim, lambda: (int(r[dim]),))()


def reference(cols: dict[str, np.ndarray]) -> dict[tuple[str, int], dict]:
    """(dim, step) -> {(bucket start, key words): [bytes, packets, flows, sbytes, spackets] mod 2**64}."""
    n = len(cols["time_end"])
    rows = [{name: cols[name][i] for name in cols} for i in range(n)]
    out: dict[tuple[str, int], dict] = {}
    for dim, steps in DIMS.items():
        for step in steps:
            groups: dict = {}
            for r in rows:
                key = _row_key(dim, r)
                if key is None:
                    continue
                t = int(r["time_end"]) // step * step
                b, p, rate = int(r["bytes"]), int(r["packets"]), max(int(r["sampling_rate"]), 1)
                acc = groups.setdefault((t, tuple(key)), [0, 0, 0, 0, 0])
                for j, v in enumerate((b, p, 1, b * rate, p * rate)):
                    acc[j] = (acc[j] + v) & M64
            if groups:
                out[dim, step] = groups
    return out


def as_groups(d: dict[str, np.ndarray]) -> dict:
    vals = np.stack([d[v] for v in VALUES], axis=1).tolist()
    return {(t, tuple(k)): v for t, k, v in zip(d["t"].tolist(), d["k"].tolist(), vals)}


def build(cols, pieces=(), max_keys=200_000) -> dict:
    b = HistBuilder(P4, P6, max_keys)
    n = len(cols["time_end"])
    cuts = [0, *sorted(pieces), n]
    for lo, hi in zip(cuts, cuts[1:]):
        b.add({name: c[lo:hi] for name, c in cols.items()})
    return b.finish()


def _sorted_by_t_k(d: dict) -> bool:
    rows = list(zip(d["t"].tolist(), d["other"].tolist(), map(tuple, d["k"].tolist())))
    return rows == sorted(rows)


# ------------------------------------------------------------------ tests

@SETTINGS
@given(seeds, st.integers(0, 300), st.sampled_from(["v4", "v6", "mix"]))
def test_every_hist_equals_a_plain_group_by(seed, n, family):
    cols = make_flows(seed, n, family)
    want = reference(cols)
    blobs = build(cols)
    assert set(blobs) == set(want)
    for key, blob in blobs.items():
        d = decode_hist(blob)
        assert not d["other"].any()
        assert _sorted_by_t_k(d), key
        assert as_groups(d) == {k: v for k, v in want[key].items()}, key


@SETTINGS
@given(seeds, st.integers(1, 300), st.data())
def test_any_split_and_order_of_blocks_gives_the_same_blobs(seed, n, data):
    cols = make_flows(seed, n)
    whole = build(cols)
    perm = np.random.default_rng(seed).permutation(n)
    shuffled = {name: c[perm] for name, c in cols.items()}
    cuts = data.draw(st.lists(st.integers(0, n), max_size=12))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hists, "_MERGE_ROWS", 8)   # re-group pending pieces often, so small tests merge
        split = build(shuffled, cuts)
    assert split.keys() == whole.keys()
    for key in whole:
        assert split[key] == whole[key], key   # bytes equal, so the decoded content is too


@SETTINGS
@given(seeds, st.integers(1, 300), st.integers(1, 5))
def test_capped_buckets_keep_exact_totals_and_top_keys(seed, n, max_keys):
    cols = make_flows(seed, n)
    want = reference(cols)
    for key, blob in build(cols, max_keys=max_keys).items():
        d = decode_hist(blob)
        assert _sorted_by_t_k(d), key
        got = as_groups({name: a[~d["other"]] for name, a in d.items()})
        buckets: dict[int, list] = {}
        for (t, k), v in want[key].items():
            buckets.setdefault(t, []).append((k, v))
        assert sorted(set(d["t"].tolist())) == sorted(buckets)
        for t, items in buckets.items():
            top = sorted(items, key=lambda kv: (-kv[1][0], kv[0]))[:max_keys]
            assert {k: v for k, v in got.items() if k[0] == t} == {(t, k): v for k, v in top}, (key, t)
            others = np.flatnonzero(d["other"] & (d["t"] == t))
            if len(items) <= max_keys:
                assert len(others) == 0
                continue
            assert len(others) == 1
            rest = [v for _k, v in sorted(items, key=lambda kv: (-kv[1][0], kv[0]))[max_keys:]]
            assert [int(d[name][others[0]]) for name in VALUES] == [sum(col) & M64 for col in zip(*rest)]
            assert (d["k"][others[0]] == np.uint64(M64)).all()


@SETTINGS
@given(seeds, st.integers(0, 400), st.integers(1, 3),
       st.sampled_from(["extremes", "sorted", "const", "small"]))
def test_encode_decode_round_trip(seed, n, width, shape):
    rng = np.random.default_rng(seed)

    def col(size, dtype=np.uint64):
        if shape == "const":
            return np.full(size, rng.integers(0, M64, dtype=np.uint64, endpoint=True)).view(dtype)
        if shape == "small":
            return rng.integers(0, 300, size).astype(np.uint64).view(dtype)
        v = rng.integers(0, M64, size, dtype=np.uint64, endpoint=True)
        v[rng.random(size) < 0.2] = rng.choice(np.array([0, 1, M64, 1 << 63], np.uint64))
        return (np.sort(v) if shape == "sorted" else v).view(dtype)

    arrays = {"t": col(n, np.int64), "k": col(n * width).reshape(n, width), "other": rng.random(n) < 0.1}
    arrays.update({name: col(n) for name in VALUES})
    d = decode_hist(encode_hist(arrays))
    order = np.lexsort((*arrays["k"].T[::-1], arrays["other"], arrays["t"]))
    assert d["t"].dtype == np.int64 and d["k"].dtype == np.uint64 and d["k"].shape == (n, width)
    assert np.array_equal(d["t"], arrays["t"][order])
    assert np.array_equal(d["other"], arrays["other"][order])
    want_k = arrays["k"][order].copy()
    want_k[arrays["other"][order]] = np.uint64(M64)
    assert np.array_equal(d["k"], want_k)
    for name in VALUES:
        assert d[name].dtype == np.uint64 and np.array_equal(d[name], arrays[name][order]), name


@SETTINGS
@given(seeds, st.integers(0, 300), st.integers(1, 3), st.lists(st.sampled_from(["const", "small", "wide"]),
                                                            min_size=10, max_size=10),
       st.sampled_from(["none", "some", "all"]), st.sampled_from([VALUES, ("sbytes",), ("flows", "spackets")]))
def test_each_part_constant_or_not_decodes_the_same(seed, n, width, shapes, other, values):
    """decode_hist keeps a constant part as a number until an output needs it: any mix of constant
    and varying t, "other", key words and sums (and the sums asked for) decodes what was encoded."""
    rng = np.random.default_rng(seed)
    shape = iter(shapes)

    def col(dtype=np.uint64):
        kind = next(shape)
        if kind == "const":
            return np.full(n, rng.integers(0, M64, dtype=np.uint64, endpoint=True)).view(dtype)
        high = 300 if kind == "small" else M64
        return rng.integers(0, high, n, dtype=np.uint64, endpoint=True).view(dtype)

    arrays = {"t": col(np.int64), "k": np.stack([col() for _ in range(width)], axis=1).reshape(n, width),
              "other": {"none": np.zeros(n, bool), "all": np.ones(n, bool), "some": rng.random(n) < 0.3}[other]}
    arrays.update({name: col() for name in VALUES})
    d = decode_hist(encode_hist(arrays), values)
    order = np.lexsort((*arrays["k"].T[::-1], arrays["other"], arrays["t"]))
    assert set(d) == {"t", "k", "other", *values}
    assert d["t"].dtype == np.int64 and np.array_equal(d["t"], arrays["t"][order])
    assert d["other"].dtype == bool and np.array_equal(d["other"], arrays["other"][order])
    want_k = arrays["k"][order].copy()
    want_k[arrays["other"][order]] = np.uint64(M64)
    assert d["k"].dtype == np.uint64 and d["k"].shape == (n, width) and np.array_equal(d["k"], want_k)
    for name in values:
        assert d[name].dtype == np.uint64 and np.array_equal(d[name], arrays[name][order]), name


def test_unsampled_flows_store_no_scaled_counters_and_sorted_keys_shrink():
    n = 20_000
    rng = np.random.default_rng(7)
    arrays = {"t": np.repeat(np.arange(4, dtype=np.int64) * 300_000, n // 4),
              "k": np.sort(rng.choice(1 << 40, n, replace=False).astype(np.uint64)).reshape(n, 1),
              "bytes": rng.integers(0, 1 << 30, n).astype(np.uint64), "packets": np.ones(n, np.uint64),
              "flows": np.ones(n, np.uint64)}
    arrays["sbytes"], arrays["spackets"] = arrays["bytes"], arrays["packets"]
    blob = encode_hist(arrays)
    # 4-byte key steps and 4-byte random bytes at most; the other columns cost (next to) nothing
    assert len(blob) < n * 8.2
    assert np.array_equal(decode_hist(blob)["sbytes"], arrays["bytes"])
    sampled = dict(arrays, sbytes=arrays["bytes"] * np.uint64(100))
    assert len(encode_hist(sampled)) > len(blob) + n * 2


def test_memory_follows_groups_not_rows(monkeypatch):
    monkeypatch.setattr(hists, "_MERGE_ROWS", 16)
    cols = make_flows(3, 40, "v4")
    cols["time_end"][:] = 1_700_000_000_000
    b = HistBuilder(P4, P6)
    for _ in range(200):
        b.add(cols)
    held = max(sum(p[0] for p in acc.pieces) for acc in b._acc.values())  # rows
    assert held <= 16 + 2 * 40   # merged groups (<= 40 keys) + pending under the threshold + one block
    d = decode_hist(b.finish()["src", 300_000])
    assert int(d["flows"].sum()) == 200 * 40


def test_key_text():
    v4 = addr.to_bytes("10.1.2.3")
    v6 = addr.to_bytes("2001:db8::1")
    words = np.array([_words(v4), _words(v6), (M64, M64)], np.uint64)
    assert key_text("src", words) == ["10.1.2.3", "2001:db8::1", "other"]
    pre = np.array([_words(addr.to_bytes("10.1.2.0")), _words(addr.to_bytes("2001:db8::"))], np.uint64)
    assert key_text("dst_prefix", pre, prefix_v4=24, prefix_v6=64) == ["10.1.2.0/24", "2001:db8::/64"]
    assert key_text("in_if", np.array([(*_words(v4), 7)], np.uint64)) == ["10.1.2.3 7"]
    assert key_text("port", np.array([[443], [M64]], np.uint64)) == ["443", "other"]
    assert key_text("if_pair", np.array([(*_words(v4), 7, 9), [M64] * 4], np.uint64)) == ["10.1.2.3 7 -> 9", "other"]
    assert key_text("as_pair", np.array([[64500, 15169], [M64, M64]], np.uint64)) == ["64500 -> 15169", "other"]
    assert key_text("src_as", np.array([[65000]], np.uint64), other=np.array([True])) == ["other"]


def test_decode_refuses_what_it_cannot_read():
    blob = encode_hist({"t": np.zeros(1, np.int64), "k": np.zeros((1, 1), np.uint64),
                        **{name: np.ones(1, np.uint64) for name in VALUES}})
    assert decode_hist(blob)["flows"].tolist() == [1]
    with pytest.raises(ValueError, match="not a hist blob"):
        decode_hist(b"XXXX" + blob[4:])
    with pytest.raises(ValueError, match="unknown hist dimension"):
        hists.dim_key_words("nope", make_flows(1, 3), P4, P6)
