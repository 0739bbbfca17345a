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


def test_flows_per_address_past_the_bound_count_under_other():
    from flowlens_store.exporter_table import OTHER, OTHER_KEY, add_flows, address_text
    from flowmodel import addr
    table: dict = {}
    keys = [addr.to_bytes(f"10.0.0.{i}") for i in range(1, 6)]
    add_flows(table, keys, [1, 2, 3, 4, 5], 100, 3)
    add_flows(table, keys[:1] + keys[4:], [10, 20], 200, 3)  # a known address, and one beyond
    assert len(table) == 4 and table[OTHER_KEY] == [4 + 5 + 20, 200]
    assert {address_text(k): v[0] for k, v in table.items()} == {"10.0.0.1": 11, "10.0.0.2": 2, "10.0.0.3": 3, OTHER: 29}
