"""Cisco ASA NSEL flow events (review 3, finding 9).

No ASA capture is in the corpus or tests/data, so the records are built to the layout of an ASA 9.x
NetFlow v9 event template as Cisco's ASA NetFlow implementation guide lists it: connection id (148),
addresses/ports/interfaces, protocol, ICMP type/code (176/177), NAT addresses/ports (225-228),
NF_F_FW_EVENT (233), NF_F_FW_EXT_EVENT (33002), event time ms (323), initiator/responder octets
(231/232), and on later releases initiator/responder packets (298/299).

Policy (as nfdump's users found: create events carry no counters and the teardown carries the totals,
so keeping both doubles flow counts): create events are dropped when the template carries 231/232,
counted per exporter; denied events stay flows (they matter for scan detection); without 298/299 the
packets column is a lower bound (1 per direction that carried bytes, 1 for a denied attempt), counted.
"""
from __future__ import annotations

import numpy as np

from packet_builders import EXP, EXPORT_S, be, set_, stats_of, tmpl_v9, v4, v9_packet
from flowlens_collector.decode import Decoder
from flowlens_collector.decoders.stats import ExporterStats
from flowlens_collector.decoders.templates import Template

ASA = [(148, 4), (8, 4), (7, 2), (10, 2), (12, 4), (11, 2), (14, 2), (4, 1), (176, 1), (177, 1),
       (225, 4), (226, 4), (227, 2), (228, 2), (233, 1), (33002, 2), (323, 8), (231, 4), (232, 4)]
ASA_PACKETS = ASA + [(298, 8), (299, 8)]
EV_MS = EXPORT_S * 1000 - 500
CREATE, TEARDOWN, DENIED, UPDATE = 1, 2, 3, 5


def _rec(conn: int, event: int, fwd: int = 0, rev: int = 0, pkts=None, xevent: int = 0, sport: int = 40000) -> bytes:
    r = (be(conn, 4) + v4("10.0.0.5") + be(sport, 2) + be(3, 2) + v4("198.51.100.7") + be(443, 2) + be(4, 2)
         + be(6, 1) + be(0, 1) + be(0, 1) + v4("203.0.113.5") + v4("198.51.100.7") + be(sport, 2) + be(443, 2)
         + be(event, 1) + be(xevent, 2) + be(EV_MS, 8) + be(fwd, 4) + be(rev, 4))
    if pkts is not None:
        r += be(pkts[0], 8) + be(pkts[1], 8)
    return r


def _decode(fields, records, tid=263):
    dec = Decoder()
    body = b"".join(records)
    body += bytes(-len(body) % 4)
    b = dec.decode([v9_packet([set_(0, tmpl_v9(tid, fields)), set_(tid, body)])], [EXP], 0)
    return b, dec


def _template(fields) -> Template:
    return Template(9, 263, [(ie, ln, 0) for ie, ln in fields])


def test_template_account_drops_creates_and_counts_events():
    t = _template(ASA)
    recs = [_rec(1, CREATE), _rec(2, DENIED, xevent=1001), _rec(1, TEARDOWN, 600, 1400), _rec(3, UPDATE, 10, 0)]
    rec = np.frombuffer(b"".join(recs), dtype=t.dtype, count=4)
    st = ExporterStats("192.0.2.1", 0, 0)
    st.flows = 4  # as the walk counted them
    keep = t.account(rec, st)
    assert keep.tolist() == [False, True, True, True]
    assert st.flows == 3
    assert st.nsel_events == {"create": 1, "denied": 1, "teardown": 1, "update": 1, "create_dropped": 1,
                              "packets_lower_bound": 3}


def test_create_events_kept_when_the_template_has_no_counters():
    fields = [f for f in ASA if f[0] not in (231, 232)]
    t = _template(fields)
    rec = np.frombuffer(_rec(1, CREATE)[:-8], dtype=t.dtype, count=1)
    st = ExporterStats("192.0.2.1", 0, 0)
    assert t.account(rec, st) is None and st.nsel_events == {"create": 1}


def test_packets_lower_bound_without_298_299():
    b, _ = _decode(ASA, [_rec(1, TEARDOWN, 600, 1400), _rec(2, TEARDOWN, 80, 0), _rec(3, DENIED),
                         _rec(4, TEARDOWN, 0, 0)])
    # create/teardown/denied decoded as columns: bytes are initiator + responder octets
    assert b["bytes"].tolist()[-4:] == [2000, 80, 0, 0]
    assert b["packets"].tolist()[-4:] == [2, 1, 1, 0]
    assert b["time_end"].tolist()[-1] == EV_MS


def test_packets_from_298_299_when_present():
    b, _ = _decode(ASA_PACKETS, [_rec(1, TEARDOWN, 600, 1400, pkts=(4, 6)), _rec(3, DENIED, pkts=(1, 0))])
    assert b["bytes"].tolist() == [2000, 0] and b["packets"].tolist() == [10, 1]


def test_create_and_teardown_of_one_connection_is_one_flow():
    recs = [_rec(1, CREATE, sport=40001), _rec(2, CREATE, sport=40002), _rec(1, TEARDOWN, 600, 1400, sport=40001),
            _rec(9, DENIED, xevent=1001, sport=40009), _rec(2, TEARDOWN, 50, 70, sport=40002)]
    b, dec = _decode(ASA, recs)
    assert b.count == 3
    assert sorted(b["src_port"].tolist()) == [40001, 40002, 40009]
    assert int(b["bytes"].sum()) == 2000 + 120
    assert sorted(b["packets"].tolist()) == [1, 2, 2]
    st = stats_of(dec)
    assert st["flows"] == 3
    assert st["nsel_events"] == {"create": 2, "teardown": 2, "denied": 1, "create_dropped": 2,
                                 "packets_lower_bound": 3}


def test_only_creates_in_a_message_gives_an_empty_batch_and_no_flows():
    b, dec = _decode(ASA_PACKETS, [_rec(1, CREATE, pkts=(0, 0)), _rec(2, CREATE, pkts=(0, 0))])
    assert b.count == 0
    st = stats_of(dec)
    assert st["flows"] == 0 and st["nsel_events"] == {"create": 2, "create_dropped": 2}
