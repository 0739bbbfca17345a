"""The sFlow v5 decoder on hand-built datagrams: packet headers, extended data, counters, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from flowlens_collector.decoders import sflow
from flowmodel import addr
from sflow_builders import (counter_sample, datagram, ethernet, expanded_flow_sample, extended_gateway,
                            extended_router, extended_switch, flow_sample, icmp, if_counters, ipv4, ipv6,
                            ipv6_extension, ipv6_fragment, mpls, raw_header, record, sampled_ethernet, sampled_ip,
                            tcp, u32, udp)

NOW = 1_700_000_000_000


def one(*records, **sample) -> dict:
    """The one flow of a datagram holding one flow sample of ``records``, as Python values."""
    result = sflow.decode_datagrams([datagram([flow_sample(list(records), **sample)])], NOW)
    assert result.datagrams["status"].tolist() == [sflow.OK]
    assert len(result.flow_datagram) == 1
    return {name: addr.to_text(bytes(col[0])) if col.dtype.kind == "V" else int(col[0])
            for name, col in result.batch().columns.items()}


def test_tcp_over_ipv4_over_ethernet():
    pkt = ethernet(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1234, 443, 0x12), tos=0xB8), 0x0800)
    f = one(raw_header(pkt, frame_length=1518), rate=2048, input_if=7, output_if=9)
    assert (f["src_addr"], f["dst_addr"], f["protocol"]) == ("10.0.0.1", "10.0.0.2", 6)
    assert (f["src_port"], f["dst_port"], f["tcp_flags"], f["tos"]) == (1234, 443, 0x12, 0xB8)
    assert (f["bytes"], f["packets"], f["sampling_rate"]) == (1518, 1, 2048)
    assert (f["input_if"], f["output_if"], f["exporter"], f["flow_version"]) == (7, 9, "192.0.2.1", 105)
    assert (f["time_start"], f["time_end"], f["direction"]) == (NOW, NOW, 255)


def test_ipv4_options_move_the_transport_header():
    pkt = ethernet(ipv4("10.0.0.1", "10.0.0.2", 17, udp(53, 5353), options=bytes(8)), 0x0800)
    f = one(raw_header(pkt))
    assert (f["src_port"], f["dst_port"]) == (53, 5353)


def test_qinq_keeps_the_inner_vlan():
    pkt = ethernet(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2)), 0x0800, tags=((0x88A8, 100), (0x8100, 2001)))
    f = one(raw_header(pkt))
    assert (f["vlan"], f["src_port"], f["dst_port"]) == (2001, 1, 2)


def test_extended_switch_vlan_wins_over_the_header_tag():
    pkt = ethernet(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2)), 0x0800, tags=((0x8100, 30),))
    assert one(raw_header(pkt), extended_switch(40, 50))["vlan"] == 40


def test_mpls_label_stack():
    pkt = ethernet(mpls(ipv4("10.1.0.1", "10.2.0.1", 6, tcp(80, 40000, 0x10)), [16, 17, 18]), 0x8847)
    f = one(raw_header(pkt))
    assert (f["src_addr"], f["dst_addr"], f["src_port"], f["dst_port"], f["tcp_flags"]) == \
        ("10.1.0.1", "10.2.0.1", 80, 40000, 0x10)


def test_mpls_over_ipv6():
    pkt = ethernet(mpls(ipv6("2001:db8::1", "2001:db8::2", 17, udp(5, 6)), [100]), 0x8847)
    f = one(raw_header(pkt))
    assert (f["src_addr"], f["dst_addr"], f["protocol"], f["src_port"]) == ("2001:db8::1", "2001:db8::2", 17, 5)


def test_ipv6_extension_headers_and_fragments():
    first = ipv6_extension(44, ipv6_fragment(6, tcp(22, 2222, 0x18), offset=0))
    f = one(raw_header(ethernet(ipv6("2001:db8::1", "2001:db8::2", 0, first, traffic_class=0x28), 0x86DD)))
    assert (f["protocol"], f["src_port"], f["dst_port"], f["tcp_flags"], f["tos"]) == (6, 22, 2222, 0x18, 0x28)
    later = ipv6_fragment(6, bytes(20), offset=100, more=False)
    f = one(raw_header(ethernet(ipv6("2001:db8::1", "2001:db8::2", 44, later), 0x86DD)))
    assert (f["protocol"], f["src_port"], f["dst_port"]) == (6, 0, 0)


def test_ipv4_later_fragment_has_no_ports():
    pkt = ethernet(ipv4("10.0.0.1", "10.0.0.2", 17, bytes(16), fragment_offset=185), 0x0800)
    f = one(raw_header(pkt))
    assert (f["protocol"], f["src_port"], f["dst_port"]) == (17, 0, 0)


@pytest.mark.parametrize("protocol, packet, src", [
    (11, ipv4("10.0.0.1", "10.0.0.2", 1, icmp(3, 3, bytes(28))), "10.0.0.1"),
    (12, ipv6("fe80::1", "ff02::1", 58, icmp(135, 0)), "fe80::1"),
])
def test_raw_ip_headers_and_icmp(protocol, packet, src):
    f = one(raw_header(packet, protocol=protocol, frame_length=len(packet)))
    assert (f["src_addr"], f["bytes"], f["src_port"], f["dst_port"]) == (src, len(packet), 0, 0)
    assert (f["icmp_type"], f["icmp_code"]) == ((3, 3) if protocol == 11 else (135, 0))


def test_vxlan_is_counted_as_its_outer_packet():
    inner = ethernet(ipv4("172.16.0.1", "172.16.0.2", 6, tcp(1, 2, 2)), 0x0800)
    outer = ethernet(ipv4("10.0.0.1", "10.0.0.2", 17, udp(50000, 4789, bytes(8) + inner)), 0x0800)
    f = one(raw_header(outer))
    assert (f["src_addr"], f["protocol"], f["dst_port"]) == ("10.0.0.1", 17, 4789)


def test_truncated_header_keeps_what_was_captured():
    pkt = ethernet(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1234, 443, 2)), 0x0800)[:14 + 20 + 2]
    f = one(raw_header(pkt, frame_length=60))
    assert (f["src_addr"], f["dst_addr"], f["src_port"], f["dst_port"], f["bytes"]) == \
        ("10.0.0.1", "10.0.0.2", 1234, 0, 60)
    cut = ethernet(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1234, 443, 2)), 0x0800)[:14 + 18]  # inside the destination
    f = one(raw_header(cut, frame_length=60))
    assert (f["src_addr"], f["dst_addr"], f["protocol"], f["src_port"]) == ("10.0.0.1", "0.0.0.0", 6, 0)
    cut6 = ethernet(ipv6("2001:db8::1", "2001:db8::2", 17, udp(1, 2)), 0x86DD)[:14 + 30]
    f = one(raw_header(cut6, frame_length=80))
    assert (f["src_addr"], f["dst_addr"], f["protocol"]) == ("2001:db8::1", "::", 17)


def test_sampled_ip_records_and_lengths():
    f = one(sampled_ip(1400, 17, "10.0.0.1", "10.0.0.2", 53, 5353, tos=0x20))
    assert (f["bytes"], f["protocol"], f["src_port"], f["dst_port"], f["tos"]) == (1400, 17, 53, 5353, 0x20)
    f = one(sampled_ethernet(1518), sampled_ip(1500, 6, "2001:db8::1", "2001:db8::2", 1, 2, tcp_flags=0x11))
    assert (f["bytes"], f["src_addr"], f["tcp_flags"]) == (1518, "2001:db8::1", 0x11)


def test_extended_router_and_gateway():
    path = [[65001, 65002], [65003, 65004, 65005]]
    f = one(sampled_ip(100, 6, "10.0.0.1", "10.0.0.2", 1, 2), extended_router("192.0.2.254", 24, 16),
            extended_gateway("198.51.100.1", 64500, 64496, 64497, path, communities=(1, 2)))
    assert (f["next_hop"], f["src_mask"], f["dst_mask"]) == ("192.0.2.254", 24, 16)
    assert (f["src_as"], f["dst_as"]) == (64496, 65005)
    f = one(sampled_ip(100, 6, "10.0.0.1", "10.0.0.2", 1, 2),
            extended_gateway("2001:db8::ff", 64500, 0, 0, []))
    assert (f["next_hop"], f["src_as"], f["dst_as"]) == ("2001:db8::ff", 64500, 64500)


@pytest.mark.parametrize("output_if, expected, note", [
    ((1 << 30) | 258, 0, "discarded"), ((2 << 30) | 7, 0, "multiple_outputs"), (0x3FFFFFFF, 0, None), (12, 12, None),
])
def test_output_interface_encodings(output_if, expected, note):
    result = sflow.decode_datagrams([datagram([flow_sample([sampled_ethernet(64)], output_if=output_if)])], NOW)
    assert int(result.columns["output_if"][0]) == expected
    assert set(result.notes) == ({note, "sample_without_ip"} if note else {"sample_without_ip"})


def test_expanded_local_interface_is_all_ones():
    """The sFlow v5 erratum: an expanded interface value of 0xFFFFFFFF is the agent itself."""
    sample = expanded_flow_sample([sampled_ethernet(64)], input_if=(0, 0xFFFFFFFF), output_if=(0, 0x3FFFFFFF))
    result = sflow.decode_datagrams([datagram([sample])], NOW)
    assert (int(result.columns["input_if"][0]), int(result.columns["output_if"][0])) == (0, 0)


def test_expanded_flow_sample():
    rec = raw_header(ethernet(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2, 2)), 0x0800))
    sample = expanded_flow_sample([rec], source_type=0, source_index=0x1234567, rate=512,
                                  input_if=(0, 0x50000000), output_if=(1, 258))
    result = sflow.decode_datagrams([datagram([sample], agent="2001:db8::7", sub_agent=3)], NOW)
    cols = result.columns
    assert (int(cols["input_if"][0]), int(cols["output_if"][0]), int(cols["sampling_rate"][0])) == \
        (0x50000000, 0, 512)
    assert addr.to_text(bytes(cols["exporter"][0])) == "2001:db8::7"
    assert int(cols["observation_domain"][0]) == 3
    assert int(result.samples["source_id"][0]) == 0x234567  # type 0, index masked to 24 bits
    assert result.notes["discarded"].tolist() == [0]


def test_counter_samples():
    c1 = counter_sample([if_counters(7, 2**40 + 5, 3, in_errors=9, out_discards=4)], sequence=11, source_id=7)
    c2 = counter_sample([if_counters(8, 1, 2**33, speed=10**10)], sequence=12, source_id=(1 << 24) | 8,
                        expanded=True)
    other = counter_sample([record(2, bytes(52))], sequence=13)  # Ethernet counters: not kept
    result = sflow.decode_datagrams([datagram([c1, flow_sample([sampled_ethernet(60)]), c2, other])], NOW)
    c = result.counters
    assert c["if_index"].tolist() == [7, 8]
    assert c["in_octets"].tolist() == [2**40 + 5, 1]
    assert c["out_octets"].tolist() == [3, 2**33]
    assert c["if_speed"].tolist() == [10**9, 10**10]
    assert (c["in_errors"].tolist(), c["out_discards"].tolist()) == ([9, 0], [4, 0])
    assert c["sequence"].tolist() == [11, 12]
    assert c["source_id"].tolist() == [7, (1 << 24) | 8]
    assert c["datagram"].tolist() == [0, 0]
    assert len(result.flow_datagram) == 1


def test_header_fields_sequences_and_order():
    d1 = datagram([flow_sample([sampled_ethernet(100)], sequence=5), flow_sample([sampled_ethernet(101)], sequence=6)],
                  sub_agent=1, sequence=40, uptime_ms=77)
    d2 = datagram([flow_sample([sampled_ethernet(200)], sequence=9)], agent=None, sub_agent=2, sequence=41)
    result = sflow.decode_datagrams([d1, d2], NOW)
    dg = result.datagrams
    assert dg["sequence"].tolist() == [40, 41] and dg["uptime_ms"].tolist() == [77, 1000]
    assert dg["flows"].tolist() == [2, 1] and dg["samples"].tolist() == [2, 1]
    assert result.columns["bytes"].tolist() == [100, 101, 200]
    assert result.flow_datagram.tolist() == [0, 0, 1]
    assert result.samples["sequence"].tolist() == [5, 6, 9]
    assert result.columns["observation_domain"].tolist() == [1, 1, 2]
    assert addr.to_text(bytes(result.columns["exporter"][2])) == "::"  # agent address type 0: unknown


def test_unknown_samples_and_records_are_skipped_and_noted():
    enterprise = u32((4413 << 12) | 1, 8) + bytes(8)
    unknown_rec = record(1036, u32(3))
    d = datagram([enterprise, flow_sample([unknown_rec, sampled_ethernet(80)])])
    result = sflow.decode_datagrams([d], NOW)
    assert result.datagrams["status"].tolist() == [sflow.OK]
    assert result.columns["bytes"].tolist() == [80]
    assert result.notes["sample_format_unknown"].tolist() == [0]
    assert result.notes["record_format_unknown"].tolist() == [0]


def test_header_protocol_without_ip_is_kept_and_noted():
    f_result = sflow.decode_datagrams([datagram([flow_sample([raw_header(bytes(40), protocol=2)])])], NOW)
    assert f_result.columns["bytes"].tolist() == [44]
    assert f_result.notes["header_without_ip"].tolist() == [0]
    assert f_result.notes["sample_without_ip"].tolist() == [0]


GOOD = datagram([flow_sample([sampled_ethernet(64)])])


@pytest.mark.parametrize("bad, reason", [
    (GOOD[:20], "truncated_header"),
    (datagram([], version=4), "bad_version"),
    (u32(5, 3) + bytes(40), "bad_agent_address"),
    (datagram([], agent="2001:db8::1")[:30], "truncated_header"),
    (datagram([], count=1000), "bad_sample_count"),
    (datagram([flow_sample([sampled_ethernet(64)], length=400)]), "truncated_sample"),
    (datagram([u32(1, 3) + bytes(4)]), "truncated_sample"),   # a length not a multiple of 4
    (datagram([u32(1, 8) + bytes(8)]), "short_sample"),       # a flow sample of 8 bytes
    (datagram([flow_sample([sampled_ethernet(64)], count=50)]), "bad_record_count"),
    (datagram([flow_sample([record(2, bytes(24), length=64) + bytes(8)])]), "truncated_record"),
    (datagram([flow_sample([record(3, bytes(20))])]), "short_record"),
    (datagram([flow_sample([record(1, u32(1, 64, 4, 200) + bytes(16))])]), "short_record"),
    (datagram([counter_sample([record(1, bytes(40))])]), "short_record"),
])
def test_malformed_datagram_is_dropped_with_its_reason(bad, reason):
    result = sflow.decode_datagrams([GOOD, bad, GOOD], NOW)
    assert [sflow.REASONS[s] for s in result.datagrams["status"]] == ["ok", reason, "ok"]
    assert result.flow_datagram.tolist() == [0, 2]  # its neighbours decode
    assert len(result.counters["datagram"]) == 0


def test_unaligned_datagram_length_decodes():
    result = sflow.decode_datagrams([GOOD + b"\x01", GOOD], NOW)
    assert result.datagrams["status"].tolist() == [sflow.OK, sflow.OK]
    assert result.flow_datagram.tolist() == [0, 1]


def test_decode_needs_aligned_offsets():
    buf, offsets, lengths = sflow.join([GOOD])
    with pytest.raises(ValueError):
        sflow.decode(b"\0\0" + buf, offsets + 2, lengths, NOW)


def test_empty_group():
    result = sflow.decode_datagrams([], NOW)
    assert len(result.datagrams) == 0 and len(result.flow_datagram) == 0
    assert result.batch().count == 0


def test_batch_hints():
    b = sflow.decode_datagrams([GOOD, GOOD], NOW).batch()
    assert b.hints.get("exporter") == "const" and b.hints.get("flow_version") == "const"
    other = datagram([flow_sample([sampled_ethernet(64)])], agent="192.0.2.2")
    assert "exporter" not in sflow.decode_datagrams([GOOD, other], NOW).batch().hints
    assert np.array_equal(b["packets"], np.ones(2, np.uint64))
