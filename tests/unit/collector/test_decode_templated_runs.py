"""v9/IPFIX datagrams that are one header and one data set of a known fixed-length template are
decoded as arrays, a run at a time (Decoder._templated_run). Whatever the grouping, the result must
be what decoding the datagrams one per call gives: the same flows and the same exporter counters,
sequence losses and backward jumps included, for the real captures and for the cases a run can
get wrong (several sources interleaved, IPFIX sequence numbering modes, a template redefined
between runs, datagrams with bytes after their set)."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from collector_truth import captures, load_datagrams
from flowlens_collector.decode import Decoder
from flowlens_collector.templated_run import single_set_segments
from flowmodel.schema import COLUMN_NAMES

A, B = ("192.0.2.1", 2055), ("192.0.2.2", 2055)
# id, fields (IE, length): src, dst, ports, proto, octets (4 B), packets (4 B), first/last switched
V9_FIELDS = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 4), (2, 4), (22, 4), (21, 4)]
V9_RECORD = struct.Struct(">4s4sHHBIIII")
# IPFIX: src, dst, ports, proto, octetDeltaCount (8 B), packetDeltaCount (8 B), flowStart/EndMilliseconds
IPFIX_FIELDS = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 8), (2, 8), (152, 8), (153, 8)]
IPFIX_RECORD = struct.Struct(">4s4sHHBQQQQ")


def _template_set(set_id: int, tid: int, fields) -> bytes:
    body = struct.pack(">HH", tid, len(fields)) + b"".join(struct.pack(">HH", ie, ln) for ie, ln in fields)
    return struct.pack(">HH", set_id, 4 + len(body)) + body


def _v9_records(n: int, salt: int) -> bytes:
    return b"".join(V9_RECORD.pack(bytes([10, 0, salt & 255, i]), bytes([10, 1, 0, 2]), 1000 + i, 53, 17,
                                   100 * (salt + 1) + i, 1 + i, 5_000 + i, 9_000 + i) for i in range(n))


def _v9(seq: int, *, n: int = 3, salt: int = 0, domain: int = 0, tid: int = 300, template: bool = False,
        trailing: bytes = b"") -> bytes:
    sets = _template_set(0, tid, V9_FIELDS) if template else b""
    body = _v9_records(n, salt)
    sets += struct.pack(">HH", tid, 4 + len(body)) + body + trailing
    return struct.pack(">HHIIII", 9, n, 10_000, 1_700_000_000 + seq, seq, domain) + sets


def _ipfix(seq: int, *, n: int = 3, salt: int = 0, domain: int = 7, template: bool = False) -> bytes:
    sets = _template_set(2, 400, IPFIX_FIELDS) if template else b""
    body = b"".join(IPFIX_RECORD.pack(bytes([172, 16, salt & 255, i]), bytes([10, 9, 0, 1]), 40000 + i, 443, 6,
                                      1500 * (salt + 1) + i, 2 + i, 1_700_000_000_000 + i, 1_700_000_001_000 + i)
                    for i in range(n))
    sets += struct.pack(">HH", 400, 4 + len(body)) + body
    return struct.pack(">HHIII", 10, 16 + len(sets), 1_700_000_000, seq, domain) + sets


def _decode(datagrams, sources, group: int):
    dec = Decoder()
    batches = [dec.decode(datagrams[i:i + group], sources[i:i + group], 1_000)
               for i in range(0, len(datagrams), group)]
    return batches, dec.exporter_stats()


def _rows(batches):
    rows = []
    for b in batches:
        if b.count:
            cols = [[bytes(x) if b[n].dtype.kind == "V" else int(x) for x in b[n]] for n in COLUMN_NAMES]
            rows.extend(zip(*cols))
    return sorted(rows)


def _assert_same(datagrams, sources, group):
    one_b, one_s = _decode(datagrams, sources, 1)
    grp_b, grp_s = _decode(datagrams, sources, group)
    one_rows = _rows(one_b)
    assert len(one_rows) > 0
    assert _rows(grp_b) == one_rows
    assert grp_s == one_s
    return grp_s


@pytest.mark.parametrize("group", [5, 64, 256])
def test_corpus_v9_ipfix_grouped_equals_one_per_call(group):
    versions = set()
    for stem in captures((9, 10)):
        datagrams = [d.payload for d in load_datagrams(stem)]
        sources = [(d.src, d.sport) for d in load_datagrams(stem)]
        stats = _assert_same(datagrams, sources, group)
        versions |= {s["version"] for s in stats}
    assert versions == {9, 10}


def test_uniform_run_is_one_segment_and_bytes_after_the_set_are_not():
    pkts = [_v9(i) for i in range(1, 9)]
    pkts[5] = _v9(6, trailing=b"\x00\x00\x00\x00")  # v9 padding after the set: walked, not in the run
    blob = b"".join(pkts) + bytes(48)
    lengths = np.array([len(p) for p in pkts], dtype=np.int64)
    offsets = np.cumsum(lengths) - lengths
    versions = np.full(len(pkts), 9, dtype=np.int32)
    segs = single_set_segments(blob, offsets, lengths, versions, np.zeros(len(pkts), dtype=np.int64))
    assert [(a, b, h is not None) for a, b, h in segs] == [(0, 5, True), (5, 6, False), (6, 8, True)]
    uniform = [_v9(i) for i in range(1, 9)]
    blob = b"".join(uniform) + bytes(48)
    lengths = np.full(8, len(uniform[0]), dtype=np.int64)
    segs = single_set_segments(blob, np.arange(8) * lengths[0], lengths, versions, np.zeros(8, dtype=np.int64))
    assert [(a, b) for a, b, _h in segs] == [(0, 8)]


def test_v9_runs_count_losses_per_source_and_keep_every_flow():
    pkts, srcs = [_v9(1, template=True), _v9(1, template=True, domain=0)], [A, B]
    seq_a = list(range(2, 30)) + list(range(33, 60)) + [40, 41, 42]  # 3 packets lost, then one backward jump
    seq_b = list(range(2, 40))
    for i in range(max(len(seq_a), len(seq_b))):
        if i < len(seq_a):
            pkts.append(_v9(seq_a[i], salt=i))
            srcs.append(A)
        if i < len(seq_b) and i % 3:
            pkts.append(_v9(seq_b[i], salt=200 + i, n=5))
            srcs.append(B)
    for group in (4, 32, 256):
        stats = _assert_same(pkts, srcs, group)
        by = {s["exporter"]: s for s in stats}
        assert (by["192.0.2.1"]["sequence_lost"], by["192.0.2.1"]["sequence_backward"]) == (3, 1)
        assert by["192.0.2.1"]["packets"] == len(seq_a) + 1
        assert by["192.0.2.1"]["flows"] == 3 * (len(seq_a) + 1)
        lost_b = by["192.0.2.2"]["sequence_lost"]
        assert lost_b == sum(1 for i in range(len(seq_b)) if i % 3 == 0)  # the packets B never sent
    batches, _ = _decode(pkts, srcs, 256)
    b = batches[0]
    a_rows = np.array([bytes(x)[-4:] == bytes([192, 0, 2, 1]) for x in b["exporter"]])
    # v9 times: header unix_secs*1000 - (sysUptime - LAST_SWITCHED)
    ends = set(b["time_end"][a_rows].tolist())
    assert (1_700_000_000 + 2) * 1000 - (10_000 - 9_000) in ends


@pytest.mark.parametrize("mode", ["all", "inclusive"])
def test_ipfix_runs_follow_the_sessions_sequence_numbering(mode):
    n = 3
    pkts, srcs, seq = [], [], 0
    for i in range(60):
        if i == 40:
            seq += n * 2  # two messages lost on the way
        if mode == "inclusive":
            pkts.append(_ipfix(seq + n, n=n, salt=i, template=(i == 0)))
        else:
            pkts.append(_ipfix(seq, n=n, salt=i, template=(i == 0)))
        srcs.append(A)
        seq += n
    for group in (3, 16, 256):
        (st,) = _assert_same(pkts, srcs, group)
        assert (st["sequence_lost"], st["sequence_backward"]) == (2 * n, 0)
        assert st["flows"] == 60 * n and st["packets"] == 60


def test_template_redefined_between_runs_keeps_each_runs_layout():
    other = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 4), (2, 4), (22, 4), (21, 4), (10, 2)]
    redefine = struct.pack(">HHIIII", 9, 0, 10_000, 1_700_000_000, 20, 0) + _template_set(0, 300, other)
    wide = struct.Struct(">4s4sHHBIIIIH")
    body = b"".join(wide.pack(bytes([10, 7, 7, i]), bytes([10, 8, 8, 8]), 22, 2222, 6, 64 + i, 1, 5_000, 9_000, 3)
                    for i in range(4))
    pkts = [_v9(i, template=(i == 1), salt=i) for i in range(1, 20)] + [redefine]
    pkts += [struct.pack(">HHIIII", 9, 4, 10_000, 1_700_000_000, s, 0) + struct.pack(">HH", 300, 4 + len(body)) + body
             for s in range(21, 40)]
    srcs = [A] * len(pkts)
    for group in (8, 256):
        (st,) = _assert_same(pkts, srcs, group)
        assert st["flows"] == 19 * 3 + 19 * 4 and st["sequence_lost"] == 0
    b = Decoder().decode(pkts, srcs, 0)
    wide_rows = b["src_port"] == 22
    assert int(wide_rows.sum()) == 19 * 4 and set(b["input_if"][wide_rows].tolist()) == {3}
    assert set(b["input_if"][~wide_rows].tolist()) == {0}


def test_datagrams_read_in_place_from_receive_slots_equal_joined():
    """The collector hands the decoder its recvmmsg slots (fixed-size, mostly unused) instead of
    joining the datagrams: same flows, same counters, for every v5/v9/IPFIX capture."""
    slot = 9000
    for stem in captures((5, 9, 10)):
        ds = load_datagrams(stem)
        datagrams, sources = [d.payload for d in ds], [(d.src, d.sport) for d in ds]
        for group in (7, 256):
            joined, slotted = Decoder(), Decoder()
            a_rows, b_rows = [], []
            for i in range(0, len(datagrams), group):
                g, s = datagrams[i:i + group], sources[i:i + group]
                buf = bytearray(b"\xa5" * (slot * len(g)))  # garbage between datagrams must not matter
                for k, d in enumerate(g):
                    buf[k * slot:k * slot + len(d)] = d
                mv = memoryview(bytes(buf))
                views = [mv[k * slot:k * slot + len(d)] for k, d in enumerate(g)]
                layout = (mv, np.arange(len(g), dtype=np.int64) * slot, np.array([len(d) for d in g], dtype=np.int64))
                a_rows += _rows([joined.decode(g, s, 1_000)])
                b_rows += _rows([slotted.decode(views, s, 1_000, layout)])
            assert sorted(b_rows) == sorted(a_rows) and a_rows, stem
            assert slotted.exporter_stats() == joined.exporter_stats(), stem


def _v9_with(template_fields, records: bytes, seq: int, tid: int = 300) -> bytes:
    sets = _template_set(0, tid, template_fields) + struct.pack(">HH", tid, 4 + len(records)) + records
    return struct.pack(">HHIIII", 9, 0, 10_000, 1_700_000_000, seq, 0) + sets


def test_template_repeated_in_every_datagram_and_changed_midway(monkeypatch):
    """nfreplay and some routers put the template set in front of every data set. Those datagrams
    go through the array path while the template set is the one already processed; the datagram
    that changes it is walked, and the records on each side keep their own layout."""
    from flowlens_collector.decoders.templated import TemplatedDecoder

    taken = []
    real = TemplatedDecoder.single_set_run

    def counting(self, *args):
        ok = real(self, *args)
        taken.append(ok)
        return ok

    wide_fields = V9_FIELDS + [(10, 2)]
    wide = struct.Struct(">4s4sHHBIIIIH")
    pkts = [_v9_with(V9_FIELDS, _v9_records(3, i), seq=i) for i in range(1, 30)]
    pkts += [_v9_with(wide_fields, b"".join(wide.pack(bytes([10, 7, 7, k]), bytes([10, 8, 8, 8]), 22, 2222, 6, 64, 1,
                                                      5_000, 9_000, 5) for k in range(2)), seq=i)
             for i in range(30, 60)]
    srcs = [A] * len(pkts)
    (st,) = _assert_same(pkts, srcs, 256)
    assert st["flows"] == 29 * 3 + 30 * 2 and st["sequence_lost"] == 0 and st["decode_errors"] == {}
    monkeypatch.setattr(TemplatedDecoder, "single_set_run", counting)
    b = Decoder().decode(pkts, srcs, 0)
    assert True in taken                                  # the repeats went through the array path
    wide_rows = b["src_port"] == 22
    assert int(wide_rows.sum()) == 60 and set(b["input_if"][wide_rows].tolist()) == {5}
    assert set(b["input_if"][~wide_rows].tolist()) == {0}
    assert int((b["src_port"] == 1000).sum()) == 29


def test_ipfix_withdrawal_between_repeated_template_sets():
    withdraw = struct.pack(">HHIII", 10, 16 + 8, 1_700_000_000, 0, 7) + struct.pack(">HHHH", 2, 8, 400, 0)
    pkts, seq = [], 0
    for i in range(40):
        if i == 20:
            pkts.append(withdraw[:8] + struct.pack(">I", seq) + withdraw[12:])
        pkts.append(_ipfix(seq, n=2, salt=i, template=True))
        seq += 2
    (st,) = _assert_same(pkts, [A] * len(pkts), 256)
    assert st["flows"] == 80 and st["sequence_lost"] == 0 and st["sequence_backward"] == 0
