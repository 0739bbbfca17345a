"""Hostile messages through the bus codec (flowmodel.bus), as a subscriber receives them.

Real flow batch bodies (decoded from corpus captures, small and packed-size batches, encoded by
``encode_batch``) are damaged byte-wise (flips, truncation, splices) or structurally (an envelope
field, the count, a column, or a packed column's parts replaced by arbitrary msgpack values); and
arbitrary msgpack values and bytes come as event bodies. ``decode_batch`` must either refuse with
CodecError or return an envelope and a batch whose columns all hold ``count`` values of the
schema's dtypes; ``decode_body`` and ``envelope_of`` refuse with CodecError or return a map with
an envelope. Nothing else may escape: a store subscriber would log it as a crash.
``FLOWLENS_FUZZ_EXAMPLES`` sets the example count (``make fuzz`` runs more).
"""
from __future__ import annotations

import os
from pathlib import Path

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowlens_collector.decode import Decoder
from flowmodel import bus
from flowmodel.pcap import read_datagrams
from flowmodel.schema import FLOW_COLUMNS

DATA = Path(__file__).resolve().parents[1] / "data"
EXAMPLES = int(os.environ.get("FLOWLENS_FUZZ_EXAMPLES", "300"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def _bodies() -> list[bytes]:
    out = []
    for name in ("softflowd_v5_http.pcap", "pmacct_ipfix_dual.pcap", "softflowd_v9_scan.pcap"):
        dgs = [d.payload for d in read_datagrams(str(DATA / name))][:200]
        batch = Decoder().decode(dgs, [("192.0.2.7", 2055)] * len(dgs), 1_700_000_000_000)
        seq = bus.Sequencer(f"fuzz-{name}")
        out.append(bus.encode_batch(batch.select(np.arange(min(3, batch.count))), seq))
        out.append(bus.encode_batch(batch, seq, stream="s1", batch_seq=4, flows_before=10))
    return out


BODIES = _bodies()

values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 64 - 1) | st.floats() | st.text(max_size=20) |
    st.binary(max_size=64),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=12)


@st.composite
def damaged(draw):
    body = bytearray(draw(st.sampled_from(BODIES)))
    kind = draw(st.sampled_from(["flip", "truncate", "splice", "field", "column", "packed"]))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            pos = draw(st.integers(0, len(body) * 8 - 1))
            body[pos // 8] ^= 1 << (pos % 8)
        return bytes(body)
    if kind == "truncate":
        return bytes(body[:draw(st.integers(0, len(body) - 1))])
    if kind == "splice":
        other = draw(st.sampled_from(BODIES))
        return bytes(body[:draw(st.integers(0, len(body)))]) + other[draw(st.integers(0, len(other))):]
    msg = msgpack.unpackb(bytes(body), raw=False)
    if kind == "field":
        key = draw(st.sampled_from(["schema", "source", "seq", "sent_at", "count", "columns", "stream", "batch_seq",
                                    "flows_before"]))
        if draw(st.booleans()):
            msg.pop(key, None)
        else:
            msg[key] = draw(values | st.sampled_from([-1, 0, 2 ** 31, 2 ** 63 - 1, bus.SCHEMA_VERSION]))
    elif kind == "column":
        name = draw(st.sampled_from(sorted(FLOW_COLUMNS)))
        if draw(st.booleans()):
            msg["columns"].pop(name, None)
        else:
            msg["columns"][name] = draw(values)
    else:
        name = draw(st.sampled_from(sorted(FLOW_COLUMNS)))
        kind_name = draw(st.sampled_from([bus.PACK_CONST, bus.PACK_IPV4, bus.PACK_NARROW, "raw", "other"]))
        msg["columns"][name] = [kind_name] + draw(st.lists(values | st.integers(0, 8), max_size=4))
    return msgpack.packb(msg, use_bin_type=True)


@SETTINGS
@given(damaged())
def test_damaged_flow_batches_are_refused_or_whole(body):
    try:
        env, batch = bus.decode_batch(body)
    except bus.CodecError:
        return
    assert isinstance(env.source, str) and isinstance(env.seq, int)
    assert 0 <= batch.count
    for name, col in batch.columns.items():
        assert len(col) == batch.count, name
        assert col.dtype == FLOW_COLUMNS[name][0], name


@SETTINGS
@given(st.one_of(st.binary(max_size=256), values.map(lambda v: msgpack.packb(v, use_bin_type=True)),
                 st.dictionaries(st.sampled_from(["schema", "source", "seq", "sent_at", "stream", "batch_seq",
                                                  "flows_before", "severity"]), values, max_size=8)
                 .map(lambda m: msgpack.packb({"schema": bus.SCHEMA_VERSION, **m}, use_bin_type=True))))
def test_hostile_event_bodies_are_refused_or_enveloped(body):
    try:
        msg = bus.decode_body(body)
        env = bus.envelope_of(msg)
    except bus.CodecError:
        return
    assert isinstance(msg, dict) and "seq" in msg and "source" in msg
    assert isinstance(env.seq, int) and isinstance(env.sent_at, int)


@pytest.mark.parametrize("fields", [{"stream": "s1", "batch_seq": 4}, {"seq": float("inf")}, {"seq": "seven"},
                                    {"sent_at": float("-inf")}, {"stream": "s1", "batch_seq": [1], "flows_before": 0},
                                    {"source": -1}, {"source": None}])
def test_a_broken_envelope_is_a_codec_error(fields):
    # found by the fuzz suite: a missing flows_before (KeyError) and a seq of float inf (OverflowError,
    # which the store's subscriber loop did not catch) escaped as other types than CodecError, and a
    # source of any type (an int, nil) was taken
    msg = msgpack.unpackb(BODIES[0], raw=False)
    msg.update(fields)
    with pytest.raises(bus.CodecError):
        bus.decode_batch(msgpack.packb(msg, use_bin_type=True))
    with pytest.raises(bus.CodecError):
        bus.envelope_of(msg)


def test_a_count_of_float_inf_is_a_codec_error():
    msg = msgpack.unpackb(BODIES[0], raw=False)
    msg["count"] = float("inf")
    with pytest.raises(bus.CodecError):
        bus.decode_batch(msgpack.packb(msg, use_bin_type=True))
