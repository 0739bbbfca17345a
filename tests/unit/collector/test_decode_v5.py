"""NetFlow v5 decoding: every v5 capture of the corpus against its tshark ground truth, plus quirks."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from collector_truth import captures, check_capture
from flowlens_collector.decode import Decoder

V5_FILES = captures((5,))


def test_v5_corpus_present():
    assert len(V5_FILES) >= 15


@pytest.mark.parametrize("stem", V5_FILES)
def test_v5_capture_matches_tshark(stem):
    import json
    from collector_truth import DATA
    totals = json.loads((DATA / f"{stem}.totals.json").read_text())
    assert check_capture(stem)[0] == totals["flow_records"]


def _v5_packet(records, *, uptime=10_000, secs=1_700_000_000, nsecs=0, seq=0, engine=(0, 0), sampling=0):
    head = struct.pack(">HHIIIIBBH", 5, len(records), uptime, secs, nsecs, seq, engine[0], engine[1], sampling)
    body = b"".join(struct.pack(">4s4s4sHHIIIIHHBBBBHHBBH", *r) for r in records)
    return head + body


def _rec(first=9_000, last=9_500, proto=6, dport=80, nbytes=1000, pkts=10):
    return (bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), bytes([10, 0, 0, 254]), 3, 4, pkts, nbytes, first, last,
            1234, dport, 0, 0x1B, proto, 0xB8, 65001, 65002, 24, 16, 0)


def test_v5_sampling_field_masked_to_14_bit_interval():
    dec = Decoder()
    # mode 01 (deterministic) in the top two bits, interval 100 below
    b = dec.decode([_v5_packet([_rec()], sampling=(1 << 14) | 100)], [("192.0.2.1", 9)], 0)
    assert b["sampling_rate"].tolist() == [100]
    b = dec.decode([_v5_packet([_rec()], sampling=(2 << 14))], [("192.0.2.1", 9)], 0)
    assert b["sampling_rate"].tolist() == [1]  # interval 0 = unsampled


def test_v5_times_absolute_and_uptime_rollover():
    dec = Decoder()
    # uptime rolled over to 5 s; the flow started 10 s before the rollover
    first = (2**32 - 10_000)
    b = dec.decode([_v5_packet([_rec(first=first, last=3_000)], uptime=5_000, secs=1_700_000_000, nsecs=250_000_000)],
                   [("192.0.2.1", 9)], 0)
    export_ms = 1_700_000_000_250
    assert b["time_start"].tolist() == [export_ms - 15_000]
    assert b["time_end"].tolist() == [export_ms - 2_000]


def test_v5_fields_engine_icmp_and_next_hop():
    dec = Decoder()
    pkt = _v5_packet([_rec(), _rec(proto=1, dport=(3 << 8) | 3)], engine=(1, 2))
    b = dec.decode([pkt], [("192.0.2.1", 9)], 0)
    assert b["observation_domain"].tolist() == [258, 258]
    assert b["icmp_type"].tolist() == [0, 3] and b["icmp_code"].tolist() == [0, 3]
    assert b["dst_port"].tolist() == [80, 0x303]  # kept as exported
    assert b["src_as"].tolist() == [65001, 65001] and b["tos"].tolist() == [0xB8, 0xB8]
    assert b["src_mask"].tolist() == [24, 24] and b["dst_mask"].tolist() == [16, 16]
    assert bytes(b["next_hop"][0]) == bytes(10) + b"\xff\xff" + bytes([10, 0, 0, 254])
    assert bytes(b["exporter"][0]) == bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 1])


def test_v5_sequence_gaps_count_flows_forward_and_backward_apart():
    dec = Decoder()
    src = [("192.0.2.1", 9)]
    dec.decode([_v5_packet([_rec()] * 3, seq=100)], src, 0)
    dec.decode([_v5_packet([_rec()] * 2, seq=103)], src, 0)  # in order
    dec.decode([_v5_packet([_rec()] * 2, seq=110)], src, 0)  # 5 flows lost
    dec.decode([_v5_packet([_rec()] * 2, seq=50)], src, 0)   # reset
    (st,) = dec.exporter_stats()
    assert st["sequence_lost"] == 5 and st["sequence_backward"] == 1
    assert st["packets"] == 4 and st["flows"] == 9 and st["version"] == 5


def test_v5_many_datagrams_in_one_call_keep_their_headers():
    dec = Decoder()
    p1 = _v5_packet([_rec()], secs=1_000, uptime=10_000, engine=(0, 1))
    p2 = _v5_packet([_rec()] * 2, secs=2_000, uptime=10_000, engine=(0, 2), sampling=10)
    b = dec.decode([p1, p2], [("192.0.2.1", 9), ("192.0.2.2", 9)], 0)
    assert b["time_start"].tolist() == [1_000_000 - 1_000, 2_000_000 - 1_000, 2_000_000 - 1_000]
    assert b["observation_domain"].tolist() == [1, 2, 2]
    assert b["sampling_rate"].tolist() == [1, 10, 10]
    assert [bytes(x)[-1] for x in b["exporter"]] == [1, 2, 2]


@pytest.mark.parametrize("mutate, reason", [
    (lambda p: p[:10], "truncated_header"),
    (lambda p: p[:-1], "truncated_records"),
    (lambda p: p[:2] + b"\x00\x00" + p[4:], "zero_count"),
    (lambda p: p[:2] + b"\xff\xff" + p[4:], "truncated_records"),
    (lambda p: b"\x00\x07" + p[2:], "unsupported_version"),
    (lambda p: p[:1], "truncated_header"),
])
def test_v5_bad_datagrams_counted_by_reason(mutate, reason):
    dec = Decoder()
    good = _v5_packet([_rec()] * 2)
    b = dec.decode([mutate(good), good], [("192.0.2.1", 9)] * 2, 0)
    assert b.count == 2
    errors = {}
    for st in dec.exporter_stats():
        for k, v in st["decode_errors"].items():
            errors[k] = errors.get(k, 0) + v
    assert errors == {reason: 1}


def test_v5_memoryview_input():
    dec = Decoder()
    buf = bytearray(_v5_packet([_rec()] * 3) + b"junk")
    b = dec.decode([memoryview(buf)], [("2001:db8::1", 9)], 0)
    assert b.count == 3
    assert np.all(b["bytes"] == 1000)
    assert dec.exporter_stats()[0]["exporter"] == "2001:db8::1"
