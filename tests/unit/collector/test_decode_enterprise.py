"""Enterprise-specific IPFIX fields (review 3, finding 10): skipped by their length, counted per exporter
by name where we know them (fields.ENTERPRISE_FIELDS), else by "PEN/id"."""
from __future__ import annotations


from packet_builders import BASIC_V4, EXP, basic_record, be, ipfix_packet, set_, stats_of, tmpl_ipfix
from collector_truth import load_datagrams
from flowlens_collector.decode import Decoder
from flowlens_collector.decoders.fields import enterprise_field_name
from flowlens_collector.decoders.stats import ExporterStats
from flowlens_collector.decoders.templates import Template

# BASIC_V4 plus VMware tenantProtocol, Cisco connectionId, a field of a PEN not in the table, and an
# RFC 5103 reverse element that makes no flow column (reverseFlowEndReason; reverse counters do:
# test_decode_biflow.py)
FIELDS = BASIC_V4 + [(880, 1, 6876), (12242, 4, 9), (1001, 4, 25461), (136, 1, 29305)]


def _record(i: int) -> bytes:
    return basic_record(nbytes=100 + i) + be(17, 1) + be(4242, 4) + be(7, 4) + be(3, 1)


def test_names_known_fields_vendor_ids_and_unknown_pens():
    assert enterprise_field_name(6876, 880) == "vmware.tenantProtocol"
    assert enterprise_field_name(9, 12235) == "cisco.appHTTPHost"
    assert enterprise_field_name(9, 1) == "cisco/1"
    assert enterprise_field_name(29305, 1) == "reverseOctetDeltaCount"
    assert enterprise_field_name(29305, 6) == "reverseTcpControlBits"
    assert enterprise_field_name(25461, 1001) == "25461/1001"


def test_template_accounts_enterprise_fields_per_record():
    t = Template(10, 300, [(ie, ln, f[2] if len(f) == 3 else 0) for f in FIELDS for ie, ln in [f[:2]]])
    assert t.enterprise == {"vmware.tenantProtocol": 1, "cisco.connectionId": 1, "25461/1001": 1,
                            "reverseFlowEndReason": 1}
    st = ExporterStats("192.0.2.1", 0, 0)
    import numpy as np
    rec = np.frombuffer(b"".join(_record(i) for i in range(3)), dtype=t.dtype, count=3)
    assert t.account(rec, st) is None
    assert st.enterprise_fields == {"vmware.tenantProtocol": 3, "cisco.connectionId": 3, "25461/1001": 3,
                                    "reverseFlowEndReason": 3}
    plain = Template(10, 301, [(ie, ln, 0) for ie, ln in BASIC_V4])
    assert plain.enterprise == {} and plain.account(rec[:0], st) is None


def test_enterprise_keys_are_bounded_per_exporter():
    st = ExporterStats("192.0.2.1", 0, 0)
    for i in range(ExporterStats.MAX_KEYS + 10):
        st.count_into("enterprise_fields", {f"1234/{i}": 1}, 2)
    assert len(st.enterprise_fields) == ExporterStats.MAX_KEYS + 1
    assert st.enterprise_fields["other"] == 20


def test_enterprise_fields_skipped_by_length_and_flows_decode():
    dec = Decoder()
    pkt = ipfix_packet([set_(2, tmpl_ipfix(300, FIELDS)), set_(300, b"".join(_record(i) for i in range(3)))])
    b = dec.decode([pkt], [EXP], 0)
    assert b["bytes"].tolist() == [100, 101, 102] and b["packets"].tolist() == [5, 5, 5]
    assert b["protocol"].tolist() == [6, 6, 6]  # tenantProtocol 17 is not the flow's protocol


def test_exporter_stats_count_enterprise_fields_by_name():
    dec = Decoder()
    t = set_(2, tmpl_ipfix(300, FIELDS))
    dec.decode([ipfix_packet([t, set_(300, b"".join(_record(i) for i in range(3)))])], [EXP], 0)
    dec.decode([ipfix_packet([set_(300, _record(9))], seq=3)], [EXP], 0)
    st = stats_of(dec)
    assert st["enterprise_fields"] == {"vmware.tenantProtocol": 4, "cisco.connectionId": 4, "25461/1001": 4,
                                       "reverseFlowEndReason": 4}
    assert st["flows"] == 4


def test_softflowd_biflow_capture_counts_its_reverse_fields():
    # softflowd -b: reverse octets/packets/TOS/TCP flags with PEN 29305 (corpus README)
    dec = Decoder()
    for d in load_datagrams("softflowd_ipfix-biflow_dns"):
        dec.decode([d.payload], [(d.src, d.sport)], 1_000)
    (st,) = [s for s in dec.exporter_stats() if s["flows"]]
    ent = dec.stats(st["exporter"], st["observation_domain"], 1_000).enterprise_fields
    assert set(ent) >= {"reverseOctetDeltaCount", "reversePacketDeltaCount"}
    assert ent["reverseOctetDeltaCount"] == st["flows"]
    assert all(k.startswith("reverse") for k in ent)
