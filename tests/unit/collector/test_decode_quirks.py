"""One test per exporter quirk of issue 3, on hand-built v9/IPFIX packets (pure decoder, no sockets)."""
from __future__ import annotations

import json
import struct

import numpy as np

from flowlens_collector.decode import Decoder
from flowlens_collector.decoders.pending import PENDING_QUEUE_OVERHEAD, PENDING_SET_OVERHEAD

from packet_builders import (BASIC_V4, EXP, EXPORT_S, basic_record, be, ipfix_packet, set_ as _set, tmpl_ipfix, tmpl_v9,
                             v4, v9_packet)


def errors(dec: Decoder) -> dict:
    out: dict = {}
    for s in dec.exporter_stats():
        for k, v in s["decode_errors"].items():
            out[k] = out.get(k, 0) + v
    return out


def test_reduced_size_integers_every_length_1_to_8():
    dec = Decoder()
    for length in range(1, 9):
        value = (1 << (8 * length)) - 3  # uses every byte
        tid = 300 + length
        fields = [(8, 4), (1, length), (2, length)]
        rec = v4("10.0.0.1") + be(value, length) + be(length, length)
        pkt = ipfix_packet([_set(2, tmpl_ipfix(tid, fields)), _set(tid, rec)])
        b = dec.decode([pkt], [EXP], 0)
        assert b["bytes"].tolist() == [value], length
        assert b["packets"].tolist() == [length]


def test_options_template_lengths_v9_in_bytes_ipfix_in_fields():
    # v9: scope length 4 bytes (one scope field), option length 8 bytes (two fields)
    v9_opts = struct.pack(">HHH", 260, 4, 8) + struct.pack(">HH", 1, 4) + struct.pack(">HHHH", 34, 4, 35, 1)
    v9_data = be(0, 4) + be(64, 4) + be(2, 1)
    dec = Decoder()
    tmpl = _set(0, tmpl_v9(300, BASIC_V4))
    b = dec.decode([v9_packet([_set(1, v9_opts, pad_to=4), _set(260, v9_data, pad_to=4), tmpl,
                               _set(300, basic_record())])], [EXP], 0)
    assert b["sampling_rate"].tolist() == [64]
    assert errors(dec) == {}
    # IPFIX: field count 3, scope field count 1 (fields, not bytes)
    ipfix_opts = struct.pack(">HHH", 260, 3, 1) + struct.pack(">HHHHHH", 149, 4, 305, 4, 306, 4)
    dec = Decoder()
    data = be(0, 4) + be(1, 4) + be(99, 4)  # 1 packet selected out of every 100
    b = dec.decode([ipfix_packet([_set(3, ipfix_opts), _set(260, data), _set(2, tmpl_ipfix(300, BASIC_V4)),
                                  _set(300, basic_record())])], [EXP], 0)
    assert b["sampling_rate"].tolist() == [100]
    assert errors(dec) == {}


def test_same_field_repeated_keeps_first_and_skips_the_rest():
    fields = [(8, 4), (12, 4), (1, 4), (1, 4), (2, 4), (8, 4)]
    rec = v4("10.0.0.1") + v4("10.0.0.2") + be(111, 4) + be(222, 4) + be(3, 4) + v4("10.9.9.9")
    dec = Decoder()
    b = dec.decode([ipfix_packet([_set(2, tmpl_ipfix(300, fields)), _set(300, rec * 2)])], [EXP], 0)
    assert b["bytes"].tolist() == [111, 111] and b["packets"].tolist() == [3, 3]


def test_v9_count_is_a_hint_set_lengths_are_the_truth():
    dec = Decoder()
    pkt = v9_packet([_set(0, tmpl_v9(300, BASIC_V4)), _set(300, basic_record() * 3, pad_to=4)], count=1)
    assert dec.decode([pkt], [EXP], 0).count == 3
    pkt = v9_packet([_set(300, basic_record() * 2)], count=40, seq=2)
    assert dec.decode([pkt], [EXP], 0).count == 2


def test_v9_uptime_rollover_and_first_after_last_wrap():
    fields = [(8, 4), (22, 4), (21, 4)]
    # sysUptime rolled over to 2 s; flow started 8 s before the rollover, ended 1 s after it
    rec = v4("10.0.0.1") + be(2**32 - 8_000, 4) + be(1_000, 4)
    dec = Decoder()
    b = dec.decode([v9_packet([_set(0, tmpl_v9(300, fields)), _set(300, rec)], uptime=2_000)], [EXP], 0)
    export_ms = EXPORT_S * 1000
    assert b["time_start"].tolist() == [export_ms - 10_000]
    assert b["time_end"].tolist() == [export_ms - 1_000]
    # FIRST/LAST just under 2^32 with a small uptime (uptime base behind the flow clock): near export time
    rec = v4("10.0.0.1") + be(2**32 - 500, 4) + be(2**32 - 100, 4)
    b = dec.decode([v9_packet([_set(300, rec)], uptime=50, seq=2)], [EXP], 0)
    assert b["time_start"].tolist() == [export_ms - 550] and b["time_end"].tolist() == [export_ms - 150]


def test_ipfix_sysuptime_with_system_init_from_record_and_from_options():
    dec = Decoder()
    init = 1_699_999_000_000
    fields = [(8, 4), (160, 8), (22, 4), (21, 4)]
    rec = v4("10.0.0.1") + be(init, 8) + be(1_000, 4) + be(3_000, 4)
    b = dec.decode([ipfix_packet([_set(2, tmpl_ipfix(300, fields)), _set(300, rec)])], [EXP], 0)
    assert b["time_start"].tolist() == [init + 1_000] and b["time_end"].tolist() == [init + 3_000]
    # from options data (softflowd's way), arriving before the data
    opts = struct.pack(">HHH", 256, 2, 1) + struct.pack(">HHHH", 143, 4, 160, 8)
    fields = [(8, 4), (22, 4), (21, 4)]
    dec = Decoder()
    b = dec.decode([ipfix_packet([_set(3, opts), _set(256, be(1, 4) + be(init, 8)),
                                  _set(2, tmpl_ipfix(301, fields)),
                                  _set(301, v4("10.0.0.1") + be(5, 4) + be(9, 4))])], [EXP], 0)
    assert b["time_start"].tolist() == [init + 5] and b["time_end"].tolist() == [init + 9]
    assert errors(dec) == {}


def test_options_with_garbage_boot_time_or_rate_are_counted_and_ignored():
    """A boot time past the year 2109 or a 1-in-2^40 rate is corruption, not state: counted per
    reason, the session keeps what it had, and the flows still decode (sampled at an unknown
    rate: the exporter announced sampling but sent no usable rate)."""
    init = 1_699_999_000_000
    opts = struct.pack(">HHH", 256, 2, 1) + struct.pack(">HHHH", 143, 4, 160, 8)
    rate_opts = struct.pack(">HHH", 257, 2, 1) + struct.pack(">HHHH", 143, 4, 34, 8)  # samplingInterval, 8 bytes
    fields = [(8, 4), (22, 4), (21, 4)]
    dec = Decoder()
    b = dec.decode([ipfix_packet([_set(3, opts + rate_opts), _set(256, be(1, 4) + be(init, 8)),
                                  _set(256, be(1, 4) + be(2**63 + 5, 8)),
                                  _set(257, be(1, 4) + be(2**40, 8)),
                                  _set(2, tmpl_ipfix(301, fields)),
                                  _set(301, v4("10.0.0.1") + be(5, 4) + be(9, 4))])], [EXP], 0)
    assert b["time_start"].tolist() == [init + 5] and b["sampling_rate"].tolist() == [0]
    assert errors(dec) == {"bad_system_init_time": 1, "bad_sampling_rate": 1}
    assert dec.exporter_stats()[0]["sampling_unknown"] == 1
    state = dec.templates_state()
    state["sessions"][0]["init_ms"] = 2**64
    fresh = Decoder()
    fresh.load_templates_state(state)
    assert fresh._templated.state_rejected == 1


def test_ipfix_absolute_time_elements():
    dec = Decoder()
    ms = 1_700_000_123_456
    ntp_s = ms // 1000 + 2_208_988_800
    ntp = (ntp_s << 32) | ((456 << 32) // 1000 + 1)
    cases = [
        ([(150, 4), (151, 4)], be(ms // 1000, 4) + be(ms // 1000 + 2, 4), ms // 1000 * 1000, ms // 1000 * 1000 + 2000),
        ([(152, 8), (153, 8)], be(ms, 8) + be(ms + 7, 8), ms, ms + 7),
        ([(154, 8), (155, 8)], be(ntp, 8) + be(ntp, 8), ms, ms),
        ([(156, 8), (157, 8)], be(ntp, 8) + be(ntp, 8), ms, ms),
        # pmacct nfprobe_tstamp_usec: length 16, int64 seconds + int64 microseconds
        ([(154, 16), (155, 16)], be(ms // 1000, 8) + be(456_789, 8) + be(ms // 1000 + 1, 8) + be(1, 8),
         ms, ms // 1000 * 1000 + 1000),
        ([(158, 4), (159, 4)], be(3_000_000, 4) + be(1_500, 4), EXPORT_S * 1000 - 3000, EXPORT_S * 1000 - 1),
    ]
    for i, (fields, values, start, end) in enumerate(cases):
        tid = 400 + i
        b = dec.decode([ipfix_packet([_set(2, tmpl_ipfix(tid, [(8, 4)] + fields)),
                                      _set(tid, v4("10.0.0.1") + values)])], [EXP], 0)
        assert (b["time_start"].tolist(), b["time_end"].tolist()) == ([start], [end]), fields


def test_variable_length_fields_ipfix_one_and_three_byte_forms_and_v9_ffff():
    fields = [(8, 4), (82, 0xFFFF), (1, 4), (83, 0xFFFF), (2, 4)]
    rec1 = v4("10.0.0.1") + b"\x03eth" + be(10, 4) + b"\xff" + be(300, 2) + b"x" * 300 + be(1, 4)
    rec2 = v4("10.0.0.2") + b"\x00" + be(20, 4) + b"\x02ab" + be(2, 4)
    dec = Decoder()
    b = dec.decode([ipfix_packet([_set(2, tmpl_ipfix(300, fields)), _set(300, rec1 + rec2, pad_to=4)])], [EXP], 0)
    assert b["bytes"].tolist() == [10, 20] and b["packets"].tolist() == [1, 2]
    assert errors(dec) == {}
    dec = Decoder()
    b = dec.decode([v9_packet([_set(0, tmpl_v9(300, fields)), _set(300, rec1 + rec2, pad_to=4)])], [EXP], 0)
    assert b["bytes"].tolist() == [10, 20]


def test_enterprise_fields_are_skipped_by_length():
    fields = [(8, 4), (1, 4, 25461), (2, 4, 9), (1, 4), (2, 4)]
    rec = v4("10.0.0.1") + be(999, 4) + be(998, 4) + be(10, 4) + be(1, 4)
    dec = Decoder()
    b = dec.decode([ipfix_packet([_set(2, tmpl_ipfix(300, fields)), _set(300, rec)])], [EXP], 0)
    assert b["bytes"].tolist() == [10] and b["packets"].tolist() == [1]


def test_ipv6_template_icmp_vlan_direction_masks_next_hop():
    fields = [(27, 16), (28, 16), (62, 16), (4, 1), (139, 2), (243, 2), (61, 1), (29, 1), (30, 1), (1, 4)]
    src = bytes.fromhex("20010db8000000000000000000000001")
    dst = bytes.fromhex("20010db8000000000000000000000002")
    nh = bytes.fromhex("20010db80000000000000000000000fe")
    rec = src + dst + nh + be(58, 1) + be(0x8000, 2) + be(42, 2) + be(1, 1) + be(48, 1) + be(64, 1) + be(5, 4)
    dec = Decoder()
    b = dec.decode([ipfix_packet([_set(2, tmpl_ipfix(300, fields)), _set(300, rec)])], [EXP], 0)
    assert bytes(b["src_addr"][0]) == src and bytes(b["dst_addr"][0]) == dst and bytes(b["next_hop"][0]) == nh
    assert b["icmp_type"].tolist() == [128] and b["icmp_code"].tolist() == [0]
    assert b["vlan"].tolist() == [42] and b["direction"].tolist() == [1]
    assert b["src_mask"].tolist() == [48] and b["dst_mask"].tolist() == [64]


def test_icmp_from_destination_port_keeps_port():
    dec = Decoder()
    rec = basic_record(proto=1, sport=0, dport=0x0303)
    b = dec.decode([ipfix_packet([_set(2, tmpl_ipfix(300, BASIC_V4)), _set(300, rec)])], [EXP], 0)
    assert b["dst_port"].tolist() == [0x0303]
    assert b["icmp_type"].tolist() == [3] and b["icmp_code"].tolist() == [3]
    rec = basic_record(proto=17, dport=0x0303)  # not ICMP: no type/code
    b = dec.decode([ipfix_packet([_set(300, rec)])], [EXP], 0)
    assert b["icmp_type"].tolist() == [0]


def test_cisco_asa_nsel_initiator_responder_octets_and_event_time():
    fields = [(8, 4), (12, 4), (4, 1), (233, 1), (231, 4), (232, 4), (298, 8), (299, 8), (323, 8)]
    ev = 1_700_000_001_234
    rec = v4("10.0.0.1") + v4("10.0.0.2") + be(6, 1) + be(2, 1) + be(1000, 4) + be(5000, 4) + be(4, 8) \
        + be(6, 8) + be(ev, 8)
    dec = Decoder()
    b = dec.decode([v9_packet([_set(0, tmpl_v9(263, fields)), _set(263, rec, pad_to=4)])], [EXP], 0)
    assert b["bytes"].tolist() == [6000] and b["packets"].tolist() == [10]
    assert b["time_start"].tolist() == [ev] and b["time_end"].tolist() == [ev]


def test_v9_sampler_options_per_sampler_id_and_unknown_rate_counted():
    opts = struct.pack(">HHH", 4096, 4, 12) + struct.pack(">HH", 1, 4) + struct.pack(">HHHHHH", 48, 1, 49, 1, 50, 4)
    fields = BASIC_V4 + [(48, 1)]
    dec = Decoder()
    pkt = v9_packet([_set(0, tmpl_v9(1024, fields)),
                     _set(1024, basic_record() + be(1, 1) + basic_record() + be(7, 1), pad_to=4)])
    b = dec.decode([pkt], [EXP], 0)  # sampler ids announced, no rate yet
    assert b["sampling_rate"].tolist() == [0, 0]
    pkt = v9_packet([_set(1, opts, pad_to=4), _set(4096, be(0, 4) + be(1, 1) + be(2, 1) + be(4, 4), pad_to=4),
                     _set(1024, basic_record() + be(1, 1) + basic_record() + be(7, 1), pad_to=4)], seq=2)
    b = dec.decode([pkt], [EXP], 0)
    assert b["sampling_rate"].tolist() == [4, 0]  # sampler 7 never got a rate
    assert dec.exporter_stats()[0]["sampling_unknown"] == 3


def test_templates_keyed_by_exporter_port_and_domain():
    dec = Decoder()
    t_a = tmpl_ipfix(300, BASIC_V4)
    t_b = tmpl_ipfix(300, [(8, 4), (1, 2)])
    b = dec.decode([ipfix_packet([_set(2, t_a)], domain=1), ipfix_packet([_set(2, t_b)], domain=2),
                    ipfix_packet([_set(2, t_b)]), ],
                   [EXP, EXP, ("192.0.2.1", 4001)], 0)
    b = dec.decode([ipfix_packet([_set(300, basic_record(nbytes=77))], domain=1),
                    ipfix_packet([_set(300, v4("10.0.0.9") + be(55, 2))], domain=2),
                    ipfix_packet([_set(300, v4("10.0.0.8") + be(33, 2))])],
                   [EXP, EXP, ("192.0.2.1", 4001)], 0)
    assert sorted(b["bytes"].tolist()) == [33, 55, 77]
    assert sorted(b["observation_domain"].tolist()) == [0, 1, 2]
    # the same id from another port without a template of its own is not decoded with theirs
    b = dec.decode([ipfix_packet([_set(300, v4("10.0.0.8") + be(33, 2))])], [("192.0.2.1", 4999)], 0)
    assert b.count == 0


def test_ipfix_template_withdrawal_single_and_all():
    dec = Decoder()
    dec.decode([ipfix_packet([_set(2, tmpl_ipfix(300, BASIC_V4) + tmpl_ipfix(301, BASIC_V4))])], [EXP], 0)
    assert dec.exporter_stats()[0]["templates"] == 2
    dec.decode([ipfix_packet([_set(2, struct.pack(">HH", 300, 0))])], [EXP], 0)
    assert dec.exporter_stats()[0]["templates"] == 1
    b = dec.decode([ipfix_packet([_set(300, basic_record())])], [EXP], 0)
    assert b.count == 0 and dec.exporter_stats()[0]["pending_sets"] == 1
    dec.decode([ipfix_packet([_set(2, struct.pack(">HH", 2, 0))])], [EXP], 0)
    assert dec.exporter_stats()[0]["templates"] == 0


def test_set_padding_is_not_a_record():
    dec = Decoder()
    rec = basic_record()  # 21 bytes: 3 bytes of padding to reach a 4-byte boundary
    b = dec.decode([ipfix_packet([_set(2, tmpl_ipfix(300, BASIC_V4)), _set(300, rec * 2, pad_to=4)])], [EXP], 0)
    assert b.count == 2 and errors(dec) == {}
    b = dec.decode([v9_packet([_set(0, tmpl_v9(300, BASIC_V4), pad_to=8), _set(300, rec, pad_to=8)])], [EXP], 0)
    assert b.count == 1 and errors(dec) == {}


def test_data_before_template_is_held_then_decoded_and_expiry_counted():
    dec = Decoder(pending_max_age_ms=60_000)
    b = dec.decode([ipfix_packet([_set(300, basic_record(nbytes=1) * 2)])], [EXP], 1_000)
    st = dec.exporter_stats()[0]
    assert b.count == 0 and (st["pending_sets"], st["pending_bytes"]) == (1, 42)  # one set, two records
    b = dec.decode([ipfix_packet([_set(2, tmpl_ipfix(300, BASIC_V4))])], [EXP], 2_000)
    assert b["bytes"].tolist() == [1, 1]
    assert dec.exporter_stats()[0]["pending_sets"] == 0
    dec.decode([ipfix_packet([_set(301, basic_record())])], [EXP], 3_000)
    dec.expire(62_000)
    assert dec.exporter_stats()[0]["pending_sets"] == 1
    dec.expire(63_001)
    st = dec.exporter_stats()[0]
    assert st["pending_sets"] == 0 and st["pending_expired"] == 1


def test_pending_is_bounded_per_exporter():
    dec = Decoder(pending_max_bytes=4 * (840 + PENDING_SET_OVERHEAD + PENDING_QUEUE_OVERHEAD))
    body = basic_record() * 40  # 840 bytes, each set for its own template id (its own queue)
    for i in range(10):
        dec.decode([ipfix_packet([_set(500 + i, body)])], [EXP], 0)
    st = dec.exporter_stats()[0]
    assert (st["pending_sets"], st["pending_bytes"]) == (4, 4 * 840)
    assert st["pending_dropped"] == {"exporter_bound": 6} and st["decode_errors"] == {}


def test_template_id_flood_is_capped_per_exporter():
    dec = Decoder(max_templates_per_exporter=50)
    sets = [_set(2, b"".join(tmpl_ipfix(256 + i, BASIC_V4) for i in range(j, j + 100))) for j in range(0, 1000, 100)]
    dec.decode([ipfix_packet([s]) for s in sets], [EXP] * len(sets), 0)
    st = dec.exporter_stats()[0]
    assert st["templates"] == 50 and st["decode_errors"]["template_cap"] == 950
    # another exporter still gets its templates
    dec.decode([ipfix_packet([_set(2, tmpl_ipfix(300, BASIC_V4))])], [("192.0.2.2", 1)], 0)
    assert {s["exporter"]: s["templates"] for s in dec.exporter_stats()}["192.0.2.2"] == 1


def test_templates_state_survives_restart_and_bad_entries_are_ignored():
    dec = Decoder()
    opts = struct.pack(">HHH", 256, 2, 1) + struct.pack(">HHHH", 143, 4, 160, 8)
    init = EXPORT_S * 1000 - 60_000  # booted a minute before the export time
    dec.decode([ipfix_packet([_set(3, opts), _set(256, be(1, 4) + be(init, 8)),
                              _set(2, tmpl_ipfix(300, BASIC_V4 + [(22, 4), (21, 4)]))])], [EXP], 0)
    state = json.loads(json.dumps(dec.templates_state()))
    state["templates"].append({"exporter": "192.0.2.1", "port": "x"})
    state["templates"].append({"exporter": "192.0.2.1", "port": 1, "version": 10, "domain": 0,
                               "template_id": 12, "fields": [[1, 4, 0]]})
    fresh = Decoder()
    assert fresh.load_templates_state(state) == 2
    assert fresh.load_templates_state({"nonsense": 1}) == 0
    assert fresh.load_templates_state("garbage") == 0
    b = fresh.decode([ipfix_packet([_set(300, basic_record() + be(10, 4) + be(20, 4))])], [EXP], 0)
    assert b.count == 1 and b["time_start"].tolist() == [init + 10]


def test_sequence_numbers_v9_packets_ipfix_records():
    dec = Decoder()
    t = _set(0, tmpl_v9(300, BASIC_V4))
    for seq in (1, 2, 5, 3):  # 2 packets missing, then one comes late and fills its hole
        dec.decode([v9_packet([t], seq=seq)], [EXP], 0)
    st = dec.exporter_stats()[0]
    assert (st["sequence_lost"], st["sequence_backward"]) == (1, 1)
    dec = Decoder()
    t = _set(2, tmpl_ipfix(300, BASIC_V4))
    dec.decode([ipfix_packet([t, _set(300, basic_record() * 3)], seq=0)], [EXP], 0)
    dec.decode([ipfix_packet([_set(300, basic_record() * 2)], seq=3)], [EXP], 0)
    dec.decode([ipfix_packet([_set(300, basic_record())], seq=9)], [EXP], 0)  # 4 records lost
    st = dec.exporter_stats()[0]
    assert (st["sequence_lost"], st["sequence_backward"]) == (4, 0)
    # softflowd counts the records of the message itself: no false gaps
    dec = Decoder()
    dec.decode([ipfix_packet([t, _set(300, basic_record() * 3)], seq=3)], [EXP], 0)
    dec.decode([ipfix_packet([_set(300, basic_record() * 5)], seq=8)], [EXP], 0)
    dec.decode([ipfix_packet([_set(300, basic_record() * 1)], seq=9)], [EXP], 0)
    st = dec.exporter_stats()[0]
    assert (st["sequence_lost"], st["sequence_backward"]) == (0, 0)


def test_malformed_lengths_counted_never_raised():
    dec = Decoder()
    good = ipfix_packet([_set(2, tmpl_ipfix(300, BASIC_V4)), _set(300, basic_record())])
    bad = [
        good[:10],                                           # truncated header
        good[:2] + be(5000, 2) + good[4:],                   # message length past the end
        good[:16] + struct.pack(">HH", 300, 2) + good[20:],  # set length below 4
        good[:16] + struct.pack(">HH", 2, 4000) + good[20:],  # set length past the end
        ipfix_packet([_set(2, struct.pack(">HH", 300, 5000))]),  # field count past the set
        ipfix_packet([_set(2, tmpl_ipfix(310, [(1, 0), (2, 0)]))]),  # zero-length template
        ipfix_packet([_set(3, struct.pack(">HHH", 311, 2, 0) + struct.pack(">HHHH", 1, 4, 2, 4))]),  # scope 0
        v9_packet([_set(1, struct.pack(">HHH", 312, 3, 4) + b"\0" * 8)]),  # byte lengths not /4
        ipfix_packet([_set(7, b"\0\0\0\0")]),  # reserved set id
    ]
    b = dec.decode(bad + [good], [EXP] * (len(bad) + 1), 0)
    assert b.count == 1
    assert errors(dec) == {"truncated_header": 1, "length_past_end": 1, "bad_set_length": 1, "set_past_end": 1,
                           "template_past_end": 1, "zero_length_template": 1, "bad_scope_count": 1,
                           "bad_options_lengths": 1, "reserved_set_id": 1}


def test_template_with_thousands_of_fields():
    fields = [(8, 4)] + [(1000 + i % 500, 1) for i in range(5000)] + [(1, 4)]
    rec = v4("10.0.0.1") + bytes(5000) + be(9, 4)
    dec = Decoder()
    b = dec.decode([ipfix_packet([_set(2, tmpl_ipfix(300, fields)), _set(300, rec)])], [EXP], 0)
    assert b["bytes"].tolist() == [9]


def test_many_datagrams_one_call_group_per_template():
    dec = Decoder()
    t = _set(2, tmpl_ipfix(300, BASIC_V4 + [(152, 8)]))
    pkts = [ipfix_packet([t] + [_set(300, b"".join(basic_record(nbytes=i * 10 + j) + be(1_000 * i, 8)
                                                  for j in range(10)))], export_s=EXPORT_S + i) for i in range(5)]
    b = dec.decode(pkts, [EXP] * 5, 0)
    assert b["bytes"].tolist() == [i * 10 + j for i in range(5) for j in range(10)]
    assert np.array_equal(b["time_start"], np.repeat(np.arange(5) * 1000, 10))


def test_template_memory_bounded_by_fields_per_exporter():
    dec = Decoder(max_templates_per_exporter=1024, template_fields_total_max=1 << 20)
    big = [(1000 + i % 500, 1) for i in range(8000)]
    sets = [ipfix_packet([_set(2, tmpl_ipfix(256 + i, big))]) for i in range(20)]
    dec.decode(sets, [EXP] * len(sets), 0)
    st = dec.exporter_stats()[0]
    assert st["templates"] == 16 and st["decode_errors"]["template_cap"] == 4
    too_big = ipfix_packet([_set(2, tmpl_ipfix(999, [(1, 1)] * 9000))])
    dec.decode([too_big], [("192.0.2.9", 1)], 0)
    assert {s["exporter"]: s["decode_errors"] for s in dec.exporter_stats()}["192.0.2.9"] == {"too_many_fields": 1}


def test_sampling_options_template_without_its_data_yet_marks_flows_rate_unknown():
    """An exporter that announced a sampling options template is sampled: until the rate arrives
    its flows carry rate 0 (unknown) and are counted, never silently 1."""
    dec = Decoder()
    opts = struct.pack(">HHH", 256, 2, 1) + struct.pack(">HHHH", 149, 4, 34, 4)  # domain scope, samplingInterval
    t = _set(2, tmpl_ipfix(300, BASIC_V4))
    b = dec.decode([ipfix_packet([_set(3, opts), t, _set(300, basic_record() * 2)])], [EXP], 0)
    assert b["sampling_rate"].tolist() == [0, 0] and dec.exporter_stats()[0]["sampling_unknown"] == 2
    b = dec.decode([ipfix_packet([_set(256, be(0, 4) + be(100, 4)), _set(300, basic_record())], seq=2)], [EXP], 0)
    assert b["sampling_rate"].tolist() == [100] and dec.exporter_stats()[0]["sampling_unknown"] == 2
    # withdrawn before its rate came: the session is no longer announced as sampled, and forgotten
    gone = Decoder()
    gone.decode([ipfix_packet([_set(3, opts), t, _set(300, basic_record())])], [EXP], 0)
    b = gone.decode([ipfix_packet([_set(3, struct.pack(">HH", 256, 0)), _set(300, basic_record())], seq=1)], [EXP], 0)
    assert b["sampling_rate"].tolist() == [1] and gone.exporter_stats()[0]["sampling_unknown"] == 1
    assert not gone._templated.store.sampling_sessions
    # an exporter without a sampling options template is unsampled (1), as before
    other = Decoder()
    b = other.decode([ipfix_packet([t, _set(300, basic_record())])], [EXP], 0)
    assert b["sampling_rate"].tolist() == [1] and other.exporter_stats()[0]["sampling_unknown"] == 0


def test_flows_without_a_time_base_are_counted_apart_not_as_decode_errors():
    dec = Decoder()
    fields = [(8, 4), (22, 4), (21, 4)]  # IPFIX uptime times, no boot time ever sent
    b = dec.decode([ipfix_packet([_set(2, tmpl_ipfix(301, fields)),
                                  _set(301, (v4("10.0.0.1") + be(5, 4) + be(9, 4)) * 3)])], [EXP], 0)
    st = dec.exporter_stats()[0]
    assert b.count == 3 and st["decode_errors"] == {} and st["time_unknown"] == 3
    assert b["time_end"].tolist() == [EXPORT_S * 1000] * 3
