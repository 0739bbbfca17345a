"""Bus codec: every column survives a round trip, views are read-only, bad bodies are CodecErrors."""
import msgpack
import numpy as np
import pytest

from flowmodel import addr
from flowmodel.bus import (CodecError, GapCounter, Sequencer, decode_batch, decode_body, encode_batch,
                           encode_event, flows_topic)
from flowmodel.schema import ADDRESS_COLUMNS, FLOW_COLUMNS, FlowBatch


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
    assert (env.source, env.seq, env.schema) == ("collector@test:1", 1, 1)
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
