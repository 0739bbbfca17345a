"""Bus codec: every column survives a round trip, views are read-only, bad bodies are CodecErrors."""
import msgpack
import numpy as np
import pytest

from flowmodel import addr
from flowmodel.bus import (PACK_MIN_FLOWS, REQUIRED_COLUMNS, SCHEMA_VERSION, CodecError, GapCounter, Sequencer, decode_batch, decode_body, encode_batch,
                           encode_event, flows_topic)
from flowmodel.schema import ADDRESS_COLUMNS, FLOW_COLUMNS, HINT_CONST, HINT_IPV4, MAX_BATCH_FLOWS, FlowBatch


def sample_batch(n=5):
    rng = np.random.default_rng(7)
    cols = {}
    for name, (dt, _doc) in FLOW_COLUMNS.items():
        if name in ADDRESS_COLUMNS:
            continue
        info = np.iinfo(dt)
        cols[name] = rng.integers(info.min, info.max, size=n, dtype=dt, endpoint=True)
    texts = ["10.0.0.1", "2001:db8::1", "192.168.255.255", "::1", "fe80::abcd:1"][:n]
    cols["src_addr"] = addr.from_texts(texts)
    cols["dst_addr"] = addr.from_texts(list(reversed(texts)))
    cols["exporter"] = addr.from_texts(["127.0.0.1"] * n)
    cols["next_hop"] = addr.from_texts(["0.0.0.0"] * n)
    return FlowBatch(cols), texts


def test_round_trip_every_column():
    batch, texts = sample_batch()
    seq = Sequencer("collector@test:1")
    env, out = decode_batch(encode_batch(batch, seq))
    assert (env.source, env.seq, env.schema) == ("collector@test:1", 1, SCHEMA_VERSION)
    assert out.count == batch.count
    for name in FLOW_COLUMNS:
        assert out[name].dtype == FLOW_COLUMNS[name][0], name
        assert np.array_equal(out[name], batch[name]), name
    assert addr.column_to_text(out["src_addr"]) == texts


def test_decoded_columns_are_read_only_views():
    batch, _ = sample_batch()
    _env, out = decode_batch(encode_batch(batch, Sequencer("s")))
    assert not out["bytes"].flags.writeable
    with pytest.raises(ValueError):
        out["bytes"][0] = 1


def test_seq_increases_by_one_and_events_are_stamped():
    seq = Sequencer("analyzer@x:2")
    encode_batch(FlowBatch.empty(0), seq)
    body = decode_body(encode_event({"key": "scan:1.2.3.4"}, seq))
    assert body["seq"] == 2 and body["source"] == "analyzer@x:2" and body["key"] == "scan:1.2.3.4"
    assert body["sent_at"] > 1_600_000_000_000


def test_empty_batch_round_trip():
    _env, out = decode_batch(encode_batch(FlowBatch.empty(0), Sequencer("s")))
    assert out.count == 0


def test_unknown_extra_column_is_ignored():
    batch, _ = sample_batch(2)
    msg = msgpack.unpackb(encode_batch(batch, Sequencer("s")), raw=False)
    msg["columns"]["future_column"] = b"\x00" * 2
    _env, out = decode_batch(msgpack.packb(msg, use_bin_type=True))
    assert out.count == 2 and "future_column" not in out.columns


@pytest.mark.parametrize("mutate,reason", [
    (lambda m: m["columns"].__setitem__("bytes", b"\x00" * 3), "bytes"),
    (lambda m: m.__setitem__("count", 9), "count"),
    (lambda m: m.pop("columns"), "columns"),
    (lambda m: m.__setitem__("schema", 99), "schema 99"),
    (lambda m: m.pop("seq"), "envelope"),
])
def test_bad_bodies_raise_codec_error(mutate, reason):
    batch, _ = sample_batch(2)
    msg = msgpack.unpackb(encode_batch(batch, Sequencer("s")), raw=False)
    mutate(msg)
    with pytest.raises(CodecError, match=reason):
        decode_batch(msgpack.packb(msg, use_bin_type=True))


@pytest.mark.parametrize("body", [b"", b"\xc1", b"not msgpack at all \xff\xff", msgpack.packb([1, 2])])
def test_garbage_is_codec_error(body):
    with pytest.raises(CodecError):
        decode_batch(body)


def test_flows_topic():
    assert flows_topic(5) == b"flows.5" and flows_topic(10) == b"flows.10"


def test_gap_counter():
    g = GapCounter()
    assert g.observe("a", 1) == 0
    assert g.observe("a", 2) == 0
    assert g.observe("a", 5) == 2
    assert g.observe("b", 7) == 0       # first message of a source: no gap
    assert g.observe("a", 1) == 0       # restart
    assert g.restarts == {"a": 1}
    assert g.total_gaps == 2 and g.received == {"a": 4, "b": 1}


def test_flowbatch_rejects_ragged_and_unknown():
    with pytest.raises(ValueError, match="rows"):
        FlowBatch({"bytes": np.zeros(2, "<u8"), "packets": np.zeros(3, "<u8")})
    with pytest.raises(ValueError, match="unknown flow column"):
        FlowBatch({"nope": np.zeros(1)})
    b = FlowBatch.empty(3)
    assert (b["sampling_rate"] == 1).all() and (b["direction"] == 255).all()
    both = FlowBatch.concat([b, FlowBatch.empty(2)])
    assert both.count == 5 and both.select(both["sampling_rate"] == 1).count == 5


# ---------------------------------------------------------------- packed columns

def exporter_like_batch(n=1000, seed=3):
    """What one IPv4 exporter sends: mapped addresses, one exporter, small counters, close times."""
    rng = np.random.default_rng(seed)
    b = FlowBatch.empty(n)
    c = b.columns
    c["time_start"][:] = 1_700_000_000_000 + rng.integers(0, 60_000, n)
    c["time_end"][:] = c["time_start"] + rng.integers(0, 5_000, n)
    c["src_addr"][:] = addr.from_texts([f"10.0.{i % 256}.{i // 256}" for i in range(n)])
    c["dst_addr"][:] = addr.from_texts([f"192.168.{i % 7}.{i % 250}" for i in range(n)])
    c["exporter"][:] = addr.from_texts(["172.16.0.1"] * n)
    c["bytes"][:] = rng.integers(40, 70_000, n)
    c["packets"][:] = rng.integers(1, 200, n)
    c["input_if"][:] = rng.integers(0, 40, n)
    c["observation_domain"][:] = 7
    c["src_port"][:] = rng.integers(0, 65536, n)
    return b


def body_columns(body) -> dict:
    return msgpack.unpackb(body, raw=False)["columns"]


def test_an_exporters_batch_is_packed_and_comes_back_exactly():
    batch = exporter_like_batch()
    body = encode_batch(batch, Sequencer("s"))
    wire = body_columns(body)
    assert wire["src_addr"][0] == "ipv4" and len(wire["src_addr"][1]) == 4 * batch.count
    assert wire["exporter"][0] == "const" and wire["observation_domain"][0] == "const"
    assert wire["next_hop"][0] == "const"                       # all :: (the template had no next hop)
    assert wire["bytes"][:3] == ["narrow", 4, 0] and wire["packets"][:3] == ["narrow", 1, 0]
    kind, size, base, _raw = wire["time_start"]
    assert (kind, size, base) == ("narrow", 2, int(batch["time_start"].min()))
    assert isinstance(wire["src_port"], bytes)                  # 2-byte columns always go raw
    assert len(body) < batch.count * 40                         # vs 140 bytes per flow raw
    _env, out = decode_batch(body)
    for name, (dt, _doc) in FLOW_COLUMNS.items():
        assert out[name].dtype == dt, name
        assert np.array_equal(out[name], batch[name]), name


def test_parts_go_out_as_one_batch_packed_over_all_of_them():
    a, b = exporter_like_batch(600, seed=1), exporter_like_batch(500, seed=2)
    b.columns["bytes"][-1] = 1 << 40                 # only the second part needs 8 bytes
    b.columns["dst_addr"][3] = addr.from_texts(["2001:db8::9"])[0]   # and holds one IPv6 address
    body = encode_batch([a, FlowBatch.empty(0), b], Sequencer("s"))
    wire = body_columns(body)
    assert isinstance(wire["bytes"], bytes) and isinstance(wire["dst_addr"], bytes)
    assert wire["src_addr"][0] == "ipv4"
    _env, out = decode_batch(body)
    joined = FlowBatch.concat([a, b])
    assert out.count == 1100
    for name in FLOW_COLUMNS:
        assert np.array_equal(out[name], joined[name]), name


def test_signed_times_pack_from_their_minimum_even_when_negative():
    batch = exporter_like_batch(300)
    batch.columns["time_start"][:] = np.arange(-150, 150) * 1000
    wire_time = body_columns(encode_batch(batch, Sequencer("s")))["time_start"]
    assert wire_time[:3] == ["narrow", 4, -150_000]
    _env, out = decode_batch(encode_batch(batch, Sequencer("s")))
    assert np.array_equal(out["time_start"], batch["time_start"])


def test_extreme_values_survive():
    batch = exporter_like_batch(300)
    batch.columns["time_start"][:2] = [np.iinfo(np.int64).min, np.iinfo(np.int64).max]
    batch.columns["packets"][0] = np.iinfo(np.uint64).max
    batch.columns["src_as"][:] = np.iinfo(np.uint32).max
    wire = body_columns(encode_batch(batch, Sequencer("s")))
    assert isinstance(wire["time_start"], bytes) and isinstance(wire["packets"], bytes)
    assert wire["src_as"][0] == "const"
    _env, out = decode_batch(encode_batch(batch, Sequencer("s")))
    for name in ("time_start", "packets", "src_as"):
        assert np.array_equal(out[name], batch[name]), name


def test_small_batches_go_raw():
    batch = exporter_like_batch(PACK_MIN_FLOWS - 1)
    wire = body_columns(encode_batch(batch, Sequencer("s")))
    assert all(isinstance(v, bytes) for v in wire.values())


@pytest.mark.parametrize("name,value,reason", [
    ("bytes", ["narrow", 4, 0, b"\x00" * 7], "count says"),
    ("bytes", ["narrow", 8, 0, b"\x00" * 8 * 300], "width"),
    ("bytes", ["narrow", 3, 0, b"\x00" * 3 * 300], "width"),
    ("time_start", ["narrow", 4, 2 ** 63, b"\x00" * 4 * 300], "base"),
    ("time_start", ["narrow", 4, 2 ** 63 - 5, b"\xff" * 4 * 300], "outside"),
    ("src_addr", ["ipv4", b"\x00" * 5], "count says"),
    ("exporter", ["const", b"\x00" * 4], "neither|packed as"),
    ("bytes", ["ipv4", b"\x00" * 4 * 300], "packed as"),
    ("bytes", ["zstd", b""], "packed as 'zstd'"),
    ("bytes", [], "neither"),
    ("bytes", 17, "neither"),
])
def test_bad_packed_columns_are_codec_errors(name, value, reason):
    msg = msgpack.unpackb(encode_batch(exporter_like_batch(300), Sequencer("s")), raw=False)
    msg["columns"][name] = value
    with pytest.raises(CodecError, match=reason):
        decode_batch(msgpack.packb(msg, use_bin_type=True))


def test_a_count_beyond_the_batch_limit_is_refused_before_allocating():
    batch = FlowBatch.empty(300)        # the wide columns constant, the narrow ones raw
    msg = msgpack.unpackb(encode_batch(batch, Sequencer("s")), raw=False)
    assert all(v[0] == "const" for v in msg["columns"].values() if isinstance(v, list))
    # a message that leaves the optional raw columns out (a reader fills them with defaults)
    # says "n flows" in a few hundred bytes
    msg["columns"] = {k: v if isinstance(v, list) else ["const", bytes(FLOW_COLUMNS[k][0].itemsize)]
                      for k, v in msg["columns"].items() if isinstance(v, list) or k in REQUIRED_COLUMNS}
    msg["count"] = MAX_BATCH_FLOWS + 1
    with pytest.raises(CodecError, match="count"):
        decode_batch(msgpack.packb(msg, use_bin_type=True))
    msg["count"] = 1000                 # within the limit, constants stretch to any count
    _env, out = decode_batch(msgpack.packb(msg, use_bin_type=True))
    assert out.count == 1000 and (out["direction"] == 255).all() and (out["sampling_rate"] == 1).all()


# ---------------------------------------------------------------- producer hints

def hinted(n, value, start=0):
    b = FlowBatch.empty(n)
    b.columns["observation_domain"][:] = value
    b.columns["src_addr"][:] = addr.from_texts([f"10.1.{i // 256 % 256}.{i % 256}" for i in range(start, start + n)])
    b.columns["next_hop"][:] = addr.from_texts(["192.0.2.254"] * n)
    b.hints = {"observation_domain": HINT_CONST, "src_addr": HINT_IPV4, "next_hop": HINT_IPV4}
    return b


def test_select_keeps_hints_and_concat_keeps_only_what_still_holds():
    a, b = hinted(300, 7), hinted(300, 8)
    assert a.select(slice(10, 20)).hints == a.hints
    assert FlowBatch.concat([a, hinted(300, 7)]).hints == a.hints
    both = FlowBatch.concat([a, b])
    assert both.hints == {"src_addr": HINT_IPV4, "next_hop": HINT_IPV4}   # 7 and 8: no longer one value


def test_parts_with_different_constants_are_not_sent_as_one():
    a, b = hinted(300, 7), hinted(300, 8, start=300)
    body = encode_batch([a, b], Sequencer("s"))
    wire = body_columns(body)
    assert wire["observation_domain"][:2] == ["narrow", 1]
    assert wire["src_addr"][0] == "ipv4"
    assert wire["next_hop"][0] == "const"      # IPv4-hinted, and one address for all: still found
    _env, out = decode_batch(body)
    joined = FlowBatch.concat([a, b])
    for name in FLOW_COLUMNS:
        assert np.array_equal(out[name], joined[name]), name


def test_a_hint_is_trusted_without_looking():
    """The contract: the producer vouches. A (wrong) IPv4 hint on IPv6 addresses is packed as told,
    which is why decoders' hints are tested against every corpus capture."""
    b = hinted(300, 7)
    b.columns["src_addr"][5] = addr.from_texts(["2001:db8::1"])[0]
    assert body_columns(encode_batch(b, Sequencer("s")))["src_addr"][0] == "ipv4"
    b.hints.pop("src_addr")
    assert isinstance(body_columns(encode_batch(b, Sequencer("s")))["src_addr"], bytes)


# ---------------------------------------------------------------- required columns

def test_a_batch_without_columns_is_refused():
    body = msgpack.packb({"schema": SCHEMA_VERSION, "source": "s", "seq": 1, "sent_at": 0, "count": 5, "columns": {}},
                         use_bin_type=True)
    with pytest.raises(CodecError, match="lacks the column.*time_start.*exporter"):
        decode_batch(body)


@pytest.mark.parametrize("name", REQUIRED_COLUMNS)
def test_each_required_column_is_required(name):
    msg = msgpack.unpackb(encode_batch(exporter_like_batch(300), Sequencer("s")), raw=False)
    del msg["columns"][name]
    with pytest.raises(CodecError, match=f"lacks the column\\(s\\) {name}$"):
        decode_batch(msgpack.packb(msg, use_bin_type=True))


def test_optional_columns_may_be_absent_and_default():
    src = exporter_like_batch(300)
    msg = msgpack.unpackb(encode_batch(src, Sequencer("s")), raw=False)
    msg["columns"] = {k: v for k, v in msg["columns"].items() if k in REQUIRED_COLUMNS}
    _env, out = decode_batch(msgpack.packb(msg, use_bin_type=True))
    assert out.count == 300
    for name in REQUIRED_COLUMNS:
        assert np.array_equal(out[name], src[name])
    assert (out["sampling_rate"] == 1).all() and (out["direction"] == 255).all() and (out["src_as"] == 0).all()


def test_columns_that_are_not_a_map_are_refused():
    msg = msgpack.unpackb(encode_batch(exporter_like_batch(300), Sequencer("s")), raw=False)
    msg["columns"] = [1, 2]
    with pytest.raises(CodecError, match="not a map"):
        decode_batch(msgpack.packb(msg, use_bin_type=True))


def test_columns_left_to_their_default_go_once_whatever_their_width():
    n = 1000
    batch = FlowBatch({"time_start": np.arange(n, dtype=np.int64), "time_end": np.arange(n, dtype=np.int64),
                       "bytes": np.full(n, 64, np.uint64), "tos": np.arange(n, dtype=np.uint8)})
    wire = body_columns(encode_batch(batch, Sequencer("s")))
    for name in ("src_country", "dst_country", "vlan", "direction"):  # 2- and 1-byte columns nobody filled
        assert wire[name][0] == "const", name
    assert isinstance(wire["tos"], bytes)  # filled by the producer with many values: raw, not looked at
    _env, back = decode_batch(encode_batch(batch, Sequencer("s")))
    for name in ("src_country", "direction", "tos", "bytes"):
        assert np.array_equal(back[name], batch[name]), name
    assert back["direction"][0] == 255 and not back.hints  # the default, and no promise travels
