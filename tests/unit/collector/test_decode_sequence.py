"""Sequence accounting (review 3, finding 6): reordering is not loss, late packets fill their hole,
resets are not losses of 2^31. Units: v5 flows, v9 export packets, IPFIX data records."""
from __future__ import annotations

import numpy as np
import pytest

from packet_builders import (BASIC_V4, EXP, basic_record, ipfix_packet, set_, stats_of, tmpl_ipfix, tmpl_v9,
                        v5_packet, v9_packet)
from flowlens_collector.decode import Decoder
from flowlens_collector.decoders.stats import ExporterStats, SequenceTracker

T9 = set_(0, tmpl_v9(300, BASIC_V4))
T10 = set_(2, tmpl_ipfix(300, BASIC_V4))


def _seq(st) -> tuple:
    return st["sequence_lost"], st["sequence_backward"], st["sequence_resets"]


def _v9_run(seqs, group: int = 1) -> dict:
    dec = Decoder()
    pkts = [v9_packet([T9, set_(300, basic_record())], seq=s) for s in seqs]
    for i in range(0, len(pkts), group):
        dec.decode(pkts[i:i + group], [EXP] * len(pkts[i:i + group]), 0)
    return stats_of(dec)


@pytest.mark.parametrize("group", [1, 5])
def test_v9_reordered_packets_are_not_lost(group):
    st = _v9_run([1, 2, 4, 3, 5], group)
    assert _seq(st) == (0, 1, 0)
    assert st["flows"] == 5


def test_v9_late_packet_fills_its_hole_and_the_rest_stays_lost():
    st = _v9_run([1, 2, 6, 4, 7, 8])  # 3, 4, 5 skipped; 4 arrives late
    assert _seq(st) == (2, 1, 0)
    st = _v9_run([1, 2, 6, 4, 7, 3, 5, 8])  # every one arrives in the end
    assert _seq(st) == (0, 3, 0)


def test_duplicate_packet_is_backward_not_loss_and_not_reset():
    st = _v9_run([1, 2, 3, 2, 4, 5])
    assert _seq(st) == (0, 1, 0)


@pytest.mark.parametrize("group", [1, 4])
def test_a_duplicated_pair_is_two_backward_packets_not_a_restart_and_a_loss(group):
    st = _v9_run(list(range(1, 11)) + [5, 6, 11, 12], group)
    assert _seq(st) == (0, 2, 0)


def test_v9_restart_small_numbers_again_is_a_reset_not_a_loss():
    st = _v9_run(list(range(1000, 1010)) + [0, 1, 2, 3])  # counted again from 0, continues in order
    assert _seq(st)[0] == 0 and _seq(st)[2] == 1
    st = _v9_run(list(range(100_000, 100_010)) + [5, 6])  # far back: a reset at once
    assert _seq(st) == (0, 1, 1)


@pytest.mark.parametrize("group", [1, 8])
def test_counter_reset_from_above_2_31_is_not_a_loss_of_2_31(group):
    st = _v9_run([3_000_000_000 + i for i in range(5)] + [0, 1, 2], group)
    assert _seq(st) == (0, 0, 1)


def test_wrap_at_2_32_is_in_order_and_a_loss_across_it_is_counted():
    top = 2**32
    st = _v9_run([top - 3, top - 2, top - 1, 0, 1])
    assert _seq(st) == (0, 0, 0)
    st = _v9_run([top - 3, top - 2, 1, 2])  # top-1 and 0 lost across the wrap
    assert _seq(st) == (2, 0, 0)
    st = _v9_run([top - 3, top - 2, 1, top - 1, 0, 2])  # ... and arrive late across it
    assert _seq(st) == (0, 2, 0)


def test_v5_counts_flows_and_a_late_packet_gives_its_flows_back():
    dec = Decoder()
    order = [(0, 3), (3, 2), (10, 4), (5, 5), (14, 1)]  # (sequence, flows): the 5 flows at 5 come late
    for seq, n in order:
        dec.decode([v5_packet(n, seq)], [EXP], 0)
    assert _seq(stats_of(dec)) == (0, 1, 0)
    dec = Decoder()
    for seq, n in [(0, 3), (3, 2), (10, 4), (7, 3), (14, 1)]:  # only 7..9 of the hole 5..9 arrive
        dec.decode([v5_packet(n, seq)], [EXP], 0)
    assert _seq(stats_of(dec)) == (2, 1, 0)


def test_v5_reordered_inside_one_group_is_not_lost():
    dec = Decoder()
    pkts = [v5_packet(2, s) for s in (0, 2, 6, 4, 8, 10)]
    dec.decode(pkts, [EXP] * len(pkts), 0)
    assert _seq(stats_of(dec)) == (0, 1, 0)


def test_ipfix_counts_data_records_and_reordering_is_not_loss():
    dec = Decoder()
    msgs = [(0, 3), (3, 2), (5, 4), (9, 1)]  # (sequence = records before, records)
    pkts = {s: ipfix_packet([T10, set_(300, basic_record() * n)], seq=s) for s, n in msgs}
    for s in (0, 5, 3, 9):  # the message at 3 arrives after the one at 5
        dec.decode([pkts[s]], [EXP], 0)
    st = stats_of(dec)
    assert _seq(st) == (0, 1, 0) and st["flows"] == 10
    dec = Decoder()
    for s in (0, 5, 9):  # the message at 3 never arrives: its 2 records are lost
        dec.decode([pkts[s]], [EXP], 0)
    assert _seq(stats_of(dec)) == (2, 0, 0)


def test_holes_are_bounded_and_the_oldest_is_forgotten():
    tr, st = SequenceTracker(), ExporterStats("x", 0, 0)
    s = 0
    holes = []
    for _ in range(SequenceTracker.MAX_HOLES + 5):
        tr.observe(("x",), s, 1, st)
        holes.append(s + 1)
        s += 2  # one packet skipped each time
    assert st.sequence_lost == SequenceTracker.MAX_HOLES + 4
    assert len(tr._holes[("x",)]) == SequenceTracker.MAX_HOLES
    tr.observe(("x",), holes[0], 1, st)   # its hole was forgotten: a stray, not a fill
    assert st.sequence_lost == SequenceTracker.MAX_HOLES + 4 and st.sequence_backward == 1
    tr.observe(("x",), holes[-2], 1, st)  # remembered: filled
    assert st.sequence_lost == SequenceTracker.MAX_HOLES + 3 and st.sequence_resets == 0


def test_observe_many_matches_observe_one_by_one():
    rng = np.random.default_rng(7)
    for trial in range(30):
        seqs, s = [], int(rng.integers(0, 2**32))
        for _ in range(40):
            seqs.append(s & 0xFFFFFFFF)
            s += int(rng.choice([1, 1, 1, 2, 3]))
        seqs = np.array(seqs, dtype=np.int64)
        for _ in range(3 if trial % 2 else 0):  # swap a few neighbours (even trials: forward gaps only)
            i = int(rng.integers(0, len(seqs) - 1))
            seqs[[i, i + 1]] = seqs[[i + 1, i]]
        if trial % 3 == 0:
            seqs[30:] = np.arange(10)
        units = np.ones(len(seqs), dtype=np.int64)
        a, b = ExporterStats("a", 0, 0), ExporterStats("b", 0, 0)
        ta, tb = SequenceTracker(), SequenceTracker()
        for x in seqs.tolist():
            ta.observe(("s",), x, 1, a)
        tb.observe_many(("s",), seqs[:7], units[:7], b)
        tb.observe_many(("s",), seqs[7:], units[7:], b)
        assert (a.sequence_lost, a.sequence_backward, a.sequence_resets) == \
            (b.sequence_lost, b.sequence_backward, b.sequence_resets)
        assert a.sequence_lost >= 0
        assert ta._holes == tb._holes  # the same holes remembered, so a late packet fills both alike
        if ta._holes.get(("s",)):
            late = ta._holes[("s",)][-1][0]
            ta.observe(("s",), late, 1, a)
            tb.observe(("s",), late, 1, b)
            assert (a.sequence_lost, a.sequence_backward) == (b.sequence_lost, b.sequence_backward)
