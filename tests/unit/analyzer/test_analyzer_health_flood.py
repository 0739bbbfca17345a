"""Health under a flood of exporters (issue 13 item 5): many exporters going silent at once raise
one advisory naming the count and the first few; health events carrying only changed rows keep the
table; a full table drops the rows it lacks; a collector folding pairs into its overflow row says so."""
from flowlens_analyzer import health
from flowlens_analyzer.common import Context

from flows import config

S = 1000
CID = "collector@a/2055"


def row(i: int, last_seen: int, flows: int = 10, **kv) -> dict:
    return {"exporter": f"127.1.0.{i}", "observation_domain": i, "version": 9, "packets": 1, "flows": flows,
            "decode_errors": {}, "sequence_lost": 0, "pending_sets": 0, "pending_expired": 0,
            "last_seen": last_seen, **kv}


def event(seq: int, rows: list, full: bool = True) -> dict:
    return {"kind": "collector", "collector": CID, "source": CID, "seq": seq, "stats_interval": 1,
            "socket": [], "counters": {}, "exporters": rows, "exporters_full": full}


def test_many_exporters_going_silent_at_once_raise_one_advisory_with_the_count_and_the_first_few():
    ctx, st = Context(config(exporter_silence="2m")), health.HealthState()
    st.observe(event(1, [row(i, 100 * S) for i in range(1, 201)]), 400 * S)
    found = health.analyze(st, ctx, 400 * S, {})
    stopped = [f for f in found if f.subject.startswith("exporter")]
    assert len(stopped) == 1
    (f,) = stopped
    assert f.key == "health:exporter many exporters" and f.severity == "CRITICAL"
    assert f.title == "200 exporters stopped sending"
    assert f.description.startswith("200 exporters (observation domains, from 200 addresses) stopped sending")
    assert "127.1.0.1/1, 127.1.0.10/10, 127.1.0.100/100, 127.1.0.101/101, 127.1.0.102/102 and 195 more" in f.description
    assert f.evidence["exporters"] == 200 and len(f.evidence["named"]) == 5


def test_a_few_silent_exporters_keep_their_own_advisories():
    ctx, st = Context(config(exporter_silence="2m")), health.HealthState()
    st.observe(event(1, [row(i, 100 * S) for i in range(1, 4)]), 400 * S)
    keys = {f.key for f in health.analyze(st, ctx, 400 * S, {}) if f.subject.startswith("exporter")}
    assert keys == {"health:exporter 127.1.0.1/1", "health:exporter 127.1.0.2/2", "health:exporter 127.1.0.3/3"}


def test_changed_rows_update_the_table_and_a_full_table_drops_what_it_lacks():
    st = health.HealthState()
    st.observe(event(1, [row(1, 100 * S), row(2, 100 * S)]), 100 * S)
    st.observe(event(2, [row(2, 105 * S, flows=50)], full=False), 105 * S)
    assert {k[1]: v["flows"] for k, v in st.exporters.items()} == {"127.1.0.1": 10, "127.1.0.2": 50}
    assert st.deltas[("exporter", CID, "127.1.0.2", 2)]["flows"] == 40
    st.observe(event(3, [row(2, 110 * S, flows=60)]), 110 * S)  # full: 127.1.0.1 retired by the collector
    assert [k[1] for k in st.exporters] == ["127.1.0.2"]


def test_a_collector_folding_exporters_warns_while_it_folds():
    ctx, st = Context(config()), health.HealthState()
    other = {"exporter": "other", "observation_domain": 0, "overflow": True, "flows": 5000, "packets": 700,
             "folded_domains": 69_000, "folded_exporters": 9_000, "folded_capped": False, "max_exporters": 1000,
             "first_seen": 100 * S, "last_seen": 101 * S}
    st.observe(event(1, [row(1, 101 * S), other]), 101 * S)
    [f] = health.analyze(st, ctx, 102 * S, {})
    assert f.key == f"health:folded {CID}" and f.severity == "WARNING"
    assert ("keeps counters for 1,000 (exporter, observation domain) pairs (collector.max_exporters); "
            "69,000 more pairs from 9,000 addresses are counted together as exporter 'other': 5,000 flows") in f.description
    assert ("health", "other") not in {(k[0], k[1]) for k in st.exporters}  # not an exporter of its own
    st.observe(event(2, [], full=False), 103 * S)  # nothing more folded: the condition is gone
    assert health.analyze(st, ctx, 104 * S, {}) == []


def test_a_flood_trickling_in_over_several_analyses_is_grouped_once_many_were_seen():
    from flowmodel import addr
    ctx, st = Context(config(resolve_after="5m")), health.HealthState()
    late = {addr.to_bytes(f"127.2.0.{i}"): 10 for i in range(1, 4)}
    first = health.analyze(st, ctx, 100 * S, {}, dict(late))
    assert sorted(f.key for f in first) == ["health:late 127.2.0.1", "health:late 127.2.0.2", "health:late 127.2.0.3"]
    late.update({addr.to_bytes(f"127.2.0.{i}"): 10 for i in range(4, 7)})  # three more exporters, later
    (f,) = health.analyze(st, ctx, 160 * S, {}, dict(late))
    assert f.key == "health:late many exporters" and f.title == "6 exporters send late flows"
    assert f.description.startswith("6 exporters (observation domains, from 6 addresses) sent flows that arrived after their "
                                    "window was analysed (30 late flows): ")
    assert "127.2.0.4, 127.2.0.5, 127.2.0.6, 127.2.0.3, 127.2.0.2 and 1 more" in f.description
    late.update({addr.to_bytes("127.2.0.7"): 10})
    (f,) = health.analyze(st, ctx, 600 * S, {}, dict(late))  # the first six are older than resolve_after
    assert f.key == "health:late 127.2.0.7"
