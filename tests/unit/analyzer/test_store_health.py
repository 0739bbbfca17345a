"""The store's write health (kind=store health events) as a CRITICAL advisory in words, resolved
when its writes commit again; an earlier process of the same store is replaced by its restart."""
from flowlens_analyzer import health
from flowlens_analyzer.common import Context

from flows import config

S = 1000
T = 1_790_000_000_000  # 14:13:20 UTC


def store_event(source, seq, *, failing_since=None, waiting=0):
    return {"kind": "store", "source": source, "collector": source, "seq": seq, "stats_interval": 5.0,
            "counters": {"write_failing_since": failing_since, "last_write_error": "database or disk is full",
                         "rows_waiting": waiting, "write_errors": 7, "sqlite_path": "/data/flowlens.db",
                         "filesystem": "/data", "free_bytes": 0}}


def test_store_that_cannot_write_is_critical_in_words_until_it_writes_again():
    ctx, st = Context(config()), health.HealthState()
    st.observe(store_event("store@h:1", 1, failing_since=T, waiting=120_000), T + 5 * S)
    found = [f for f in health.analyze(st, ctx, T + 6 * S, {}) if f.subject.startswith("store write")]
    assert len(found) == 1 and found[0].severity == "CRITICAL"
    assert found[0].description == ("The store cannot write to its SQLite file since 14:13: database or disk is "
                                    "full; 120,000 flows wait in memory and collectors hold the rest")
    assert found[0].action.startswith("Free space on /data (the file system of /data/flowlens.db, 0 bytes free)")
    st.observe(store_event("store@h:1", 2), T + 10 * S)
    assert not [f for f in health.analyze(st, ctx, T + 11 * S, {}) if f.subject.startswith("store write")]


def test_a_restarted_store_replaces_the_failing_report_of_its_earlier_process():
    ctx, st = Context(config()), health.HealthState()
    st.observe(store_event("store@h:1", 1, failing_since=T, waiting=10), T)
    st.observe(store_event("store@h:2", 1), T + 20 * S)
    assert not [f for f in health.analyze(st, ctx, T + 21 * S, {}) if f.subject.startswith("store write")]
    assert list(st.stores) == ["store@h:2"]
