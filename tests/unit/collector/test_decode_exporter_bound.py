"""The exporter table's bound (issue 13 item 5): at most max_exporters (exporter, domain) rows, the
rest decoded but counted on one overflow row that says how many pairs and addresses it folded; a
health event's table of changed rows; idle rows making room; per-session state bounded too."""
from __future__ import annotations

from flowlens_collector.decode import Decoder
from flowlens_collector.exporters import OVERFLOW

from packet_builders import BASIC_V4, basic_record, set_ as _set, tmpl_v9, v5_packet, v9_packet


def v9_from(domain: int, records: int, tid: int = 300) -> bytes:
    return v9_packet([_set(0, tmpl_v9(tid, BASIC_V4)), _set(tid, basic_record() * records)], source_id=domain)


def rows_of(dec: Decoder) -> dict:
    return {(r["exporter"], r["observation_domain"]): r for r in dec.exporter_stats()}


def test_pairs_beyond_the_bound_are_decoded_and_folded_into_one_counted_row():
    dec = Decoder(max_exporters=3)
    # 4 addresses x 2 domains, 2 records each, then the first pair again
    datagrams, sources = [], []
    for host in range(4):
        for domain in (1, 2):
            datagrams.append(v9_from(domain, 2))
            sources.append((f"10.0.0.{host + 1}", 2055))
    batch = dec.decode(datagrams, sources, 1_000)
    assert batch.count == 16  # every datagram decoded, tracked or not
    rows = rows_of(dec)
    assert set(rows) == {("10.0.0.1", 1), ("10.0.0.1", 2), ("10.0.0.2", 1), (OVERFLOW, 0)}
    other = rows[(OVERFLOW, 0)]
    assert other["overflow"] is True and other["flows"] == 10 and other["packets"] == 5
    assert (other["folded_domains"], other["folded_exporters"], other["folded_capped"]) == (5, 3, False)
    # sessions holding templates: max_exporters (3), the most recent; the folded pairs' count on the overflow row
    assert other["templates"] == 3 and sum(r["templates"] for r in rows.values()) == 3
    assert sum(r["flows"] for r in rows.values()) == 16
    dec.decode([v9_from(2, 1)], [("10.0.0.4", 2055)], 2_000)  # a pair folded before: not a new one
    assert rows_of(dec)[(OVERFLOW, 0)]["folded_domains"] == 5


def test_v5_engines_count_as_domains_against_the_bound():
    dec = Decoder(max_exporters=2)
    pkts = [v5_packet(3, seq=0) for _ in range(3)]
    dec.decode(pkts, [("10.0.0.1", 2055), ("10.0.0.2", 2055), ("10.0.0.3", 2055)], 0)
    rows = rows_of(dec)
    assert len(rows) == 3 and rows[(OVERFLOW, 0)]["flows"] == 3 and rows[(OVERFLOW, 0)]["folded_exporters"] == 1


def test_changed_only_carries_the_rows_changed_since_the_last_call():
    dec = Decoder(max_exporters=2)
    dec.decode([v9_from(1, 1), v9_from(1, 1)], [("10.0.0.1", 2055), ("10.0.0.2", 2055)], 0)
    assert len(dec.exporter_stats(changed_only=True)) == 2
    assert dec.exporter_stats(changed_only=True) == []  # nothing since
    dec.decode([v9_from(1, 1)], [("10.0.0.2", 2055)], 10)
    (row,) = dec.exporter_stats(changed_only=True)
    assert row["exporter"] == "10.0.0.2" and row["flows"] == 2
    dec.decode([v9_from(1, 1)], [("10.0.0.3", 2055)], 20)  # folded; its template evicts 10.0.0.1's (counted there)
    rows = {r["exporter"]: r for r in dec.exporter_stats(changed_only=True)}
    assert set(rows) == {"10.0.0.1", OVERFLOW} and rows[OVERFLOW]["flows"] == 1
    assert rows["10.0.0.1"]["templates_dropped"] == {"session_cap": 1}
    assert len(dec.exporter_stats()) == 3  # the whole table whenever asked


def test_a_full_table_lets_rows_silent_for_a_template_lifetime_make_room():
    dec = Decoder(max_exporters=2, template_lifetime_ms=60_000)
    dec.decode([v9_from(1, 1), v9_from(1, 1)], [("10.0.0.1", 2055), ("10.0.0.2", 2055)], 0)
    dec.decode([v9_from(1, 1)], [("10.0.0.2", 2055)], 50_000)
    dec.expire(70_000)  # 10.0.0.1 silent for 70 s: gone; 10.0.0.2 heard 20 s ago stays
    dec.decode([v9_from(1, 1)], [("10.0.0.3", 2055)], 70_000)
    rows = rows_of(dec)
    assert set(rows) == {("10.0.0.2", 1), ("10.0.0.3", 1)}  # nothing folded
    assert dec.exporters.retired == 1


def test_session_state_is_bounded_by_the_exporter_bound():
    dec = Decoder(max_exporters=5)  # sessions with templates: 5; sequence streams and caches: 4 x 5 = 20 at most
    datagrams = [v9_from(domain, 1, tid=256 + domain) for domain in range(100)]
    batch = dec.decode(datagrams, [("10.0.0.1", 2055)] * 100, 0)
    assert batch.count == 100  # each datagram's own template decodes it before it is evicted
    t = dec._templated
    assert len(t.store._session_tids) == 5 and len(t.templates) == 5
    assert len(dec.acct.seq.expected()) <= 20
    assert sum(r.get("templates_dropped", {}).get("session_cap", 0) for r in dec.exporter_stats()) == 95
