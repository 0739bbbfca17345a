"""Interface names from options data (IE 82/83 keyed by IE 10/14 or a v9 Interface scope): real
Cisco IOS-XR captures decode to the names tshark shows; hand-built v9 and variable-length IPFIX
records too; the table is bounded and says when to publish."""
from __future__ import annotations

import struct
from pathlib import Path

from flowmodel.pcap import read_datagrams

from flowlens_collector.decode import Decoder
from flowlens_collector.decoders.ifnames import InterfaceTable, layout, records
from packet_builders import EXP, be, ipfix_packet, options_ipfix, set_, v9_packet

DATA = Path(__file__).resolve().parents[2] / "data"

# tshark -r F -d udp.port==9992,cflow -V | grep -B2 -A1 IfDescr: (InputInt, IfDescr = IE 83, IfName = IE 82);
# the scope is INPUT_SNMP and OUTPUT_SNMP, equal in every record
TSHARK_SRV6_500 = {42: ("TenGigE0_0_0_0", "TenGigE0/0/0/0"), 69: ("TenGigE0_0_0_0.516", "TenGigE0/0/0/0.516"),
                   70: ("TenGigE0_0_0_0.523", "TenGigE0/0/0/0.523"), 71: ("TenGigE0_0_0_0.524", "TenGigE0/0/0/0.524")}
TSHARK_MPLS_501 = {55: ("HundredGigE0_0_0_11", "HundredGigE0/0/0/11"), 87: ("TenGigE0_0_0_12", "TenGigE0/0/0/12"),
                   89: ("TenGigE0_0_0_14", "TenGigE0/0/0/14"), 90: ("TenGigE0_0_0_15", "TenGigE0/0/0/15"),
                   155: ("TenGigE0_0_0_16.12", "TenGigE0/0/0/16.12")}


def decode_capture(name: str) -> Decoder:
    dec = Decoder()
    for d in read_datagrams(str(DATA / name)):
        dec.decode([d.payload], [(d.src, d.sport)], now_ms=1_000)
    return dec


def test_ipfix_capture_names_match_tshark():
    dec = decode_capture("pmacct-ta_ipfix_cisco-srv6-500.pcap")
    assert dec.interfaces.tables == {"198.51.100.54": TSHARK_SRV6_500}
    assert dec.interfaces.dropped == 0
    assert all("interface_names_cap" not in s["decode_errors"] for s in dec.exporter_stats())


def test_ipv6_exporter_capture_names_match_tshark():
    dec = decode_capture("pmacct-ta_ipfix_cisco-v6exporter-mpls-501.pcap")
    assert dec.interfaces.tables == {"2001:db8:90::1": TSHARK_MPLS_501}


def test_softflowd_v9_names_its_capture_interface():
    # softflowd -r dns.pcap: a v9 options record with an Interface scope (0) and IE 82 = the -r file
    # (tshark: ScopeInterface: 0, IfName: dns.pcap)
    assert decode_capture("softflowd_v9_dns.pcap").interfaces.tables == {"127.0.0.1": {0: ("dns.pcap", "")}}
    # its IPFIX export sends IE 82 with no ifIndex beside it: nothing to name
    assert decode_capture("softflowd_ipfix_dns.pcap").interfaces.tables == {}


def test_capture_without_interface_options_names_nothing():
    dec = decode_capture("pmacct-ta_ipfix_cisco-100.pcap")
    assert dec.interfaces.tables == {}


def test_v9_interface_scope_and_fixed_strings():
    # RFC 3954 options template: scope type 2 (Interface, 4 bytes), options IE 82 (16 bytes), IE 83 (32 bytes)
    tmpl = struct.pack(">HHH", 300, 4, 8) + struct.pack(">HH", 2, 4) + struct.pack(">HHHH", 82, 16, 83, 32)
    rec = lambda i, n, d: be(i, 4) + n.encode().ljust(16, b"\0") + d.encode().ljust(32, b"\0")
    pkt = v9_packet([set_(1, tmpl), set_(300, rec(3, "ge-0/0/3", "to core") + rec(4, "ge-0/0/4", ""), pad_to=4)])
    dec = Decoder()
    dec.decode([pkt], [EXP], now_ms=1_000)
    assert dec.interfaces.tables == {"192.0.2.1": {3: ("ge-0/0/3", "to core"), 4: ("ge-0/0/4", "")}}


def test_ipfix_variable_length_name_with_egress_option_field():
    # softflowd-like: scope meteringProcessId (143), options egressInterface (14, 2 bytes) and IE 82 variable
    tmpl = options_ipfix(400, [(143, 4)], [(14, 2), (82, 0xFFFF)])
    long_name = "x" * 300  # three-byte length form, cut to 128 characters
    body = be(1, 4) + be(9, 2) + bytes([4]) + b"eth9" + be(1, 4) + be(10, 2) + b"\xff" + be(300, 2) + long_name.encode()
    pkt = ipfix_packet([set_(3, tmpl), set_(400, body)])
    dec = Decoder()
    dec.decode([pkt], [("::ffff:192.0.2.9", 4000)], now_ms=1_000)
    assert dec.interfaces.tables == {"192.0.2.9": {9: ("eth9", ""), 10: ("x" * 128, "")}}


def test_layout_needs_an_ifindex_and_a_name():
    assert layout(((10, 4, 0), (82, 32, 0)), 1) == (0, 1, -1)
    assert layout(((149, 4, 0), (82, 32, 0)), 1) is None        # a name, but of no interface
    assert layout(((10, 4, 0), (34, 4, 0)), 1) is None          # an interface, but no name
    assert layout(((10, 4, 0), (82, 32, 9)), 1) is None         # enterprise 9's element 82 is not IANA's
    # scope before option field: a record about egress 7 that also carries ingress 3 names 7
    assert records(((14, 4, 0), (10, 4, 0), (82, 4, 0)), layout(((14, 4, 0), (10, 4, 0), (82, 4, 0)), 1),
                   be(7, 4) + be(3, 4) + b"ab\0\0") == [(7, "ab", "")]


def test_table_bounds_and_publication():
    table = InterfaceTable(max_interfaces=2, max_exporters=1, republish_ms=60_000)
    assert table.learn("192.0.2.1", [(1, "a", ""), (2, "b", ""), (3, "c", "")]) == 1
    assert table.learn("192.0.2.2", [(1, "a", "")]) == 1
    assert table.dropped == 2
    events = table.due(1_000)
    assert [e["exporter"] for e in events] == ["192.0.2.1"]
    assert events[0]["origin"] == "options" and events[0]["learnt_at"] == 1_000
    assert events[0]["interfaces"] == [{"ifindex": 1, "name": "a", "description": "", "speed_bps": 0},
                                       {"ifindex": 2, "name": "b", "description": "", "speed_bps": 0}]
    assert table.due(2_000) == []                       # unchanged, not yet due again
    table.learn("192.0.2.1", [(2, "b", "")])
    assert table.due(3_000) == []                       # the same name again is no change
    table.learn("192.0.2.1", [(2, "b2", "")])
    assert [e["interfaces"][1]["name"] for e in table.due(4_000)] == ["b2"]
    assert len(table.due(4_000 + 60_000)) == 1          # republished after republish_ms
    table.republish_all()
    assert len(table.due(64_001)) == 1
