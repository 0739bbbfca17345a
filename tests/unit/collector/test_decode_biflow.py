"""RFC 5103 biflow records (reverse elements, enterprise 29305) become two flows: the forward half as
exported, the reverse half with endpoints, interfaces, AS numbers and masks swapped and the reverse
counters, flags and times; a record whose reverse counters are zero stays one flow. Checked on
hand-built records and on ipfixprobe's export (Akvorado's test data), flow by flow."""
from __future__ import annotations

from flowmodel import addr

from collector_truth import load_datagrams
from flowlens_collector.decode import Decoder
from packet_builders import EXP, EXPORT_S, be, ipfix_packet, set_, stats_of, tmpl_ipfix, v4

REV = 29305
FIELDS = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 4), (2, 4), (6, 1), (5, 1), (10, 4), (14, 4),
          (16, 4), (17, 4), (9, 1), (13, 1), (61, 1), (15, 4), (152, 8), (153, 8),
          (1, 4, REV), (2, 4, REV), (6, 1, REV), (5, 1, REV)]
T0 = EXPORT_S * 1000 - 5_000


def _record(src, dst, sport, dport, nbytes, pkts, rbytes, rpkts, proto=6, flags=0x02, rflags=0x12) -> bytes:
    return (v4(src) + v4(dst) + be(sport, 2) + be(dport, 2) + be(proto, 1) + be(nbytes, 4) + be(pkts, 4)
            + be(flags, 1) + be(0x10, 1) + be(3, 4) + be(7, 4) + be(64500, 4) + be(64501, 4) + be(24, 1)
            + be(16, 1) + be(0, 1) + v4("192.0.2.254") + be(T0, 8) + be(T0 + 900, 8)
            + be(rbytes, 4) + be(rpkts, 4) + be(rflags, 1) + be(0x20, 1))


def _rows(b) -> list[tuple]:
    c = b.columns
    src, dst, nh = (addr.column_to_text(c[k]) for k in ("src_addr", "dst_addr", "next_hop"))
    return sorted(
        (src[i], dst[i], int(c["src_port"][i]), int(c["dst_port"][i]), int(c["bytes"][i]), int(c["packets"][i]),
         int(c["tcp_flags"][i]), int(c["tos"][i]), int(c["input_if"][i]), int(c["output_if"][i]),
         int(c["src_as"][i]), int(c["dst_as"][i]), int(c["src_mask"][i]), int(c["dst_mask"][i]),
         int(c["direction"][i]), nh[i], int(c["time_start"][i]), int(c["time_end"][i]), int(c["biflow"][i]))
        for i in range(b.count))


def test_a_biflow_record_with_reverse_traffic_is_two_flows_and_one_without_is_one():
    dec = Decoder()
    data = _record("10.0.0.1", "10.0.0.2", 40000, 443, 1000, 10, 64000, 50) + \
        _record("10.0.0.3", "10.0.0.9", 5353, 53, 80, 1, 0, 0, proto=17, flags=0, rflags=0)
    b = dec.decode([ipfix_packet([set_(2, tmpl_ipfix(300, FIELDS)), set_(300, data)], seq=0)], [EXP], 0)
    nh = "192.0.2.254"
    assert _rows(b) == sorted([
        ("10.0.0.1", "10.0.0.2", 40000, 443, 1000, 10, 0x02, 0x10, 3, 7, 64500, 64501, 24, 16, 0, nh,
         T0, T0 + 900, 1),
        # the reverse: endpoints, interfaces, AS, masks swapped; reverse counters, flags, TOS; no next hop;
        # flowDirection ingress seen the other way is egress
        ("10.0.0.2", "10.0.0.1", 443, 40000, 64000, 50, 0x12, 0x20, 7, 3, 64501, 64500, 16, 24, 1,
         "::", T0, T0 + 900, 2),
        ("10.0.0.3", "10.0.0.9", 5353, 53, 80, 1, 0, 0x10, 3, 7, 64500, 64501, 24, 16, 0, nh,
         T0, T0 + 900, 1),
    ])
    assert set(b["protocol"].tolist()) == {6, 17} and set(b["exporter"].tolist()) == {addr.to_bytes("192.0.2.1")}
    st = stats_of(dec)
    assert st["flows"] == 2 and st["reverse_flows"] == 1  # records, and the reverse halves beyond them
    assert st["enterprise_fields"]["reverseOctetDeltaCount"] == 2


def test_reverse_totals_and_reverse_times_are_used_when_the_record_has_them():
    fields = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (85, 8), (86, 8), (152, 8), (153, 8),
              (85, 8, REV), (86, 8, REV), (152, 8, REV), (153, 8, REV)]
    rec = (v4("10.1.0.1") + v4("10.1.0.2") + be(1, 2) + be(2, 2) + be(17, 1) + be(500, 8) + be(5, 8)
           + be(T0, 8) + be(T0 + 10, 8) + be(7000, 8) + be(7, 8) + be(T0 + 3, 8) + be(T0 + 40, 8))
    dec = Decoder()
    b = dec.decode([ipfix_packet([set_(2, tmpl_ipfix(301, fields)), set_(301, rec)])], [EXP], 0)
    got = {int(x): (int(y), int(s), int(e), int(p)) for x, y, s, e, p in
           zip(b["biflow"], b["bytes"], b["time_start"], b["time_end"], b["src_port"])}
    assert got == {1: (500, T0, T0 + 10, 1), 2: (7000, T0 + 3, T0 + 40, 2)}


def test_one_way_templates_are_marked_zero():
    dec = Decoder()
    fields = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 4), (2, 4)]
    rec = v4("10.0.0.1") + v4("10.0.0.2") + be(1, 2) + be(2, 2) + be(6, 1) + be(9, 4) + be(1, 4)
    b = dec.decode([ipfix_packet([set_(2, tmpl_ipfix(302, fields)), set_(302, rec * 3)])], [EXP], 0)
    assert b["biflow"].tolist() == [0, 0, 0] and stats_of(dec)["reverse_flows"] == 0


def test_ipfixprobe_biflows_as_akvorado_decodes_them():
    # Akvorado's TestDecodeRFC5103 (outlet/flow/decoder/netflow/root_test.go) lists these six flows
    dec = Decoder()
    flows = []
    for d in load_datagrams("akvorado_ipfix_ipfixprobe"):
        b = dec.decode([d.payload], [(d.src, d.sport)], 1_000)
        c = b.columns
        src, dst = addr.column_to_text(c["src_addr"]), addr.column_to_text(c["dst_addr"])
        flows += [(src[i], dst[i], int(c["src_port"][i]), int(c["dst_port"][i]), int(c["protocol"][i]),
                   int(c["bytes"][i]), int(c["packets"][i]), int(c["input_if"][i]), int(c["output_if"][i]),
                   int(c["tcp_flags"][i]), int(c["biflow"][i])) for i in range(b.count)]
    m = ""
    assert sorted(flows) == sorted([
        (m + "10.10.1.4", m + "10.10.1.1", 56166, 53, 17, 62, 1, 10, 0, 0, 1),
        (m + "10.10.1.1", m + "10.10.1.4", 53, 56166, 17, 128, 1, 0, 10, 0, 2),
        (m + "10.10.1.20", m + "10.10.1.255", 138, 138, 17, 229, 1, 10, 0, 0, 1),
        (m + "10.10.1.4", m + "74.53.140.153", 1470, 25, 6, 21673, 28, 10, 0, 0x1b, 1),
        (m + "74.53.140.153", m + "10.10.1.4", 25, 1470, 6, 1546, 25, 0, 10, 0x1b, 2),
        (m + "192.168.1.1", m + "10.10.1.4", 0, 0, 1, 2304, 4, 10, 0, 0, 1),
    ])
    assert stats_of(dec)["reverse_flows"] == 2
