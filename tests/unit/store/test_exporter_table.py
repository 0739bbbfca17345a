"""The store's copy of a collector's exporter table (issue 13 item 5): events with only the changed
rows fold into the last whole table; a whole table, or another run of the collector, replaces it."""
from flowlens_store.exporter_table import merge_health


def ev(rows, full, started=1):
    return {"kind": "collector", "source": "collector@a/2055", "process": {"pid": 7, "started_at": started},
            "exporters": [{"exporter": e, "observation_domain": d, "flows": f} for e, d, f in rows], "exporters_full": full}


def table(h):
    return sorted((r["exporter"], r["observation_domain"], r["flows"]) for r in h["exporters"])


def test_changed_rows_fold_into_the_whole_table():
    h = merge_health(None, ev([("10.0.0.1", 0, 5), ("10.0.0.2", 0, 6)], True))
    h = merge_health(h, ev([("10.0.0.2", 0, 9), ("10.0.0.3", 1, 1)], False))
    assert table(h) == [("10.0.0.1", 0, 5), ("10.0.0.2", 0, 9), ("10.0.0.3", 1, 1)] and h["exporters_full"] is True


def test_a_whole_table_or_a_new_run_replaces_the_old_one():
    h = merge_health(None, ev([("10.0.0.1", 0, 5), ("10.0.0.2", 0, 6)], True))
    assert table(merge_health(h, ev([("10.0.0.2", 0, 7)], True))) == [("10.0.0.2", 0, 7)]
    assert table(merge_health(h, ev([("10.0.0.2", 0, 1)], False, started=2))) == [("10.0.0.2", 0, 1)]


def test_events_of_an_older_release_and_other_kinds_are_kept_as_they_come():
    old = {"kind": "collector", "source": "c", "exporters": [{"exporter": "10.0.0.9", "observation_domain": 0}]}
    assert merge_health({"exporters": []}, old) == old
    store = {"kind": "store", "source": "store@x:1", "counters": {}}
    assert merge_health(None, store) == store
