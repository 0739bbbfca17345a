"""NetFlow v5 datagrams decoded many per call (the collector's grouped path, parsed as arrays) give
exactly what decoding them one per call gives: the same v5 flows in the same order and the same
exporter counters (packets, flows, errors by reason, sequence losses), in the same order. v9/IPFIX
datagrams mixed in are compared as a multiset (that decoder groups a call's records per template)."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from collector_truth import captures, load_datagrams
from flowlens_collector.decode import Decoder
from flowmodel.schema import COLUMN_NAMES


def _v5_packet(n, *, seq=0, engine=(0, 0), secs=1_700_000_000, uptime=10_000, sampling=0, salt=0):
    head = struct.pack(">HHIIIIBBH", 5, n, uptime, secs, 0, seq, engine[0], engine[1], sampling)
    recs = b"".join(struct.pack(">4s4s4sHHIIIIHHBBBBHHBBH", bytes([10, 0, salt & 255, i & 255]),
                                bytes([10, 1, 0, 2]), bytes(4), 1, 2, 10 + i, 1000 + salt, 9_000, 9_500,
                                1234, 80 + i, 0, 0x1B, 6, 0, 1, 2, 24, 16, 0) for i in range(n))
    return head + recs


def _decode(datagrams, sources, group: int):
    dec = Decoder()
    batches = [dec.decode(datagrams[i:i + group], sources[i:i + group], 1_000)
               for i in range(0, len(datagrams), group)]
    return batches, dec.exporter_stats()


def _columns(batches):
    out = {}
    for name in COLUMN_NAMES:
        parts = [b[name] for b in batches if b.count]
        out[name] = np.concatenate(parts) if parts else np.array([])
    return out


def _rows(cols, mask):
    return sorted(zip(*[[bytes(x) if cols[n].dtype.kind == "V" else int(x) for x in cols[n][mask]]
                        for n in COLUMN_NAMES]))


def _assert_same(datagrams, sources, group):
    one_b, one_s = _decode(datagrams, sources, 1)
    grp_b, grp_s = _decode(datagrams, sources, group)
    one, grp = _columns(one_b), _columns(grp_b)
    assert sum(b.count for b in grp_b) == sum(b.count for b in one_b) > 0
    v5_one, v5_grp = one["flow_version"] == 5, grp["flow_version"] == 5
    assert v5_one.sum() > 0
    for name in COLUMN_NAMES:
        assert np.array_equal(one[name][v5_one], grp[name][v5_grp]), name
    assert _rows(one, ~v5_one) == _rows(grp, ~v5_grp)
    assert grp_s == one_s
    return grp_s


def _mixed_corpus():
    """Every v5 capture interleaved round-robin (several exporters and engines per group), with bad
    datagrams and some v9/IPFIX datagrams of other captures in between."""
    files = [load_datagrams(stem) for stem in captures((5,))]
    templated = [d for stem in captures((9, 10))[:3] for d in load_datagrams(stem)][:60]
    datagrams, sources = [], []
    k = 0
    for i in range(max(len(f) for f in files)):
        for f in files:
            if i < len(f):
                d = f[i]
                datagrams.append(d.payload)
                sources.append((d.src, d.sport))
                k += 1
                good = bytes(d.payload)
                if k % 17 == 0:
                    datagrams.append(good[:-1] if len(good) > 24 else good[:10])  # truncated records
                    sources.append((d.src, d.sport))
                if k % 23 == 0:
                    datagrams.append(good[:2] + b"\x00\x00" + good[4:])  # zero count
                    sources.append((d.src, d.sport))
                if k % 29 == 0:
                    datagrams.append(good[:1])
                    sources.append((d.src, d.sport))
                if k % 31 == 0:
                    datagrams.append(b"\x00\x07" + good[2:])
                    sources.append((d.src, d.sport))
                if k % 13 == 0 and templated:
                    t = templated.pop(0)
                    datagrams.append(t.payload)
                    sources.append((t.src, t.sport))
    return datagrams, sources


@pytest.mark.parametrize("group", [2, 7, 64, 256, 100_000])
def test_v5_corpus_grouped_equals_one_per_call(group):
    datagrams, sources = _mixed_corpus()
    stats = _assert_same(datagrams, sources, group)
    errors = {}
    for s in stats:
        for reason, n in s["decode_errors"].items():
            errors[reason] = errors.get(reason, 0) + n
    assert {"truncated_records", "zero_count", "truncated_header", "unsupported_version"} <= set(errors)
    assert any(s["version"] in (9, 10) for s in stats) and any(s["version"] == 5 for s in stats)


def test_v5_sequence_gaps_inside_one_group_per_exporter_and_engine():
    a, b = ("192.0.2.1", 9), ("192.0.2.2", 9)
    pkts = [
        (_v5_packet(3, seq=100, engine=(0, 1)), a),
        (_v5_packet(2, seq=7, engine=(0, 2)), a),      # a second engine of the same exporter
        (_v5_packet(2, seq=103, engine=(0, 1)), a),    # in order
        (_v5_packet(1, seq=500), b),
        (_v5_packet(2, seq=110, engine=(0, 1)), a),    # 5 flows lost
        (_v5_packet(1, seq=9, engine=(0, 2)), a),      # in order
        (_v5_packet(2, seq=0)[:30], b),                 # truncated: not a sequence observation
        (_v5_packet(1, seq=503), b),                   # 2 flows lost
        (_v5_packet(2, seq=50, engine=(0, 1)), a),     # backward (exporter restart)
        (_v5_packet(1, seq=52, engine=(0, 1)), a),     # in order after the reset
    ]
    datagrams = [p for p, _ in pkts]
    sources = [s for _, s in pkts]
    stats = _assert_same(datagrams, sources, len(pkts))
    by = {(s["exporter"], s["observation_domain"]): s for s in stats}
    assert [(s["exporter"], s["observation_domain"]) for s in stats] == [
        ("192.0.2.1", 1), ("192.0.2.1", 2), ("192.0.2.2", 0)]
    e1 = by[("192.0.2.1", 1)]
    assert (e1["sequence_lost"], e1["sequence_backward"], e1["packets"], e1["flows"]) == (5, 1, 5, 10)
    e2 = by[("192.0.2.1", 2)]
    assert (e2["sequence_lost"], e2["sequence_backward"], e2["packets"], e2["flows"]) == (0, 0, 2, 3)
    eb = by[("192.0.2.2", 0)]
    assert (eb["sequence_lost"], eb["sequence_backward"], eb["packets"], eb["flows"]) == (2, 0, 2, 2)
    assert eb["decode_errors"] == {"truncated_records": 1}


def test_v5_sequence_continues_across_groups_and_ports_are_separate_streams():
    a, a2 = ("192.0.2.1", 9), ("192.0.2.1", 10)  # same host, two ports: one stats row, two streams
    dec = Decoder()
    dec.decode([_v5_packet(30, seq=0), _v5_packet(30, seq=1000)], [a, a2], 0)
    dec.decode([_v5_packet(30, seq=30), _v5_packet(30, seq=1030), _v5_packet(30, seq=90)], [a, a2, a], 0)
    (st,) = dec.exporter_stats()
    assert (st["sequence_lost"], st["sequence_backward"], st["packets"], st["flows"]) == (30, 0, 5, 150)


def test_v5_group_keeps_each_datagrams_header_and_exporter():
    pkts = [_v5_packet(2, secs=1_000 + i, sampling=i, engine=(0, i % 3), salt=i) for i in range(40)]
    sources = [(f"192.0.2.{i % 5 + 1}", 9) for i in range(40)]
    _assert_same(pkts, sources, 40)
    b = Decoder().decode(pkts, sources, 0)
    assert b.count == 80
    assert b["time_start"].tolist() == [(1_000 + i) * 1000 - 1_000 for i in range(40) for _ in range(2)]
    assert b["sampling_rate"].tolist() == [max(i, 1) for i in range(40) for _ in range(2)]
    assert b["observation_domain"].tolist() == [i % 3 for i in range(40) for _ in range(2)]
    assert [bytes(x)[-1] for x in b["exporter"]] == [i % 5 + 1 for i in range(40) for _ in range(2)]
    assert b["bytes"].tolist() == [1000 + i for i in range(40) for _ in range(2)]


def test_v5_group_of_only_bad_datagrams_and_memoryviews():
    good = _v5_packet(3)
    dec = Decoder()
    b = dec.decode([memoryview(bytearray(good[:20])), good[:1], b"", memoryview(bytearray(good + b"xx"))],
                   [("192.0.2.1", 9)] * 4, 0)
    assert b.count == 3
    (st,) = dec.exporter_stats()
    assert st["decode_errors"] == {"truncated_header": 3} and st["packets"] == 1
    b = dec.decode([good[:-5]], [("192.0.2.1", 9)], 0)
    assert b.count == 0 and dec.exporter_stats()[0]["decode_errors"]["truncated_records"] == 1
