from flowlens_analyzer.common import Finding
from flowlens_analyzer.lifecycle import AdvisoryBook
from flowmodel.events import ADVISORY_FIELDS

MIN = 60_000


def finding(ports=300, severity="CRITICAL", subject="172.16.0.55"):
    return Finding("scan", subject, severity, "Port scan", f"contacted {ports} ports", "block it",
                   {"ports": ports, "window_start": 0, "window_end": MIN}, {"src": subject}, figures={"ports": ports})


def book():
    return AdvisoryBook(resolve_after_ms=5 * MIN, update_every_ms=5 * MIN, update_change=0.25)


def test_raise_then_quiet_then_update_on_material_change_then_resolve():
    b = book()
    [e] = b.fold([finding()], 1 * MIN)
    assert e.keys() == ADVISORY_FIELDS.keys()
    assert (e["key"], e["state"], e["first_seen"], e["last_seen"]) == ("scan:172.16.0.55", "raised", MIN, MIN)
    assert b.fold([finding(310)], 2 * MIN) == []  # same condition, small change: nothing published
    [u] = b.fold([finding(600)], 3 * MIN)
    assert (u["state"], u["first_seen"], u["last_seen"], u["evidence"]["ports"]) == ("updated", MIN, 3 * MIN, 600)
    assert b.fold([], 4 * MIN) == []  # absent, not yet for resolve_after
    assert b.fold([], 7 * MIN) == []
    [r] = b.fold([], 8 * MIN)
    assert (r["state"], r["last_seen"]) == ("resolved", 3 * MIN)
    assert b.open == {}
    [again] = b.fold([finding()], 9 * MIN)
    assert again["state"] == "raised" and again["first_seen"] == 9 * MIN


def test_severity_change_is_an_update_and_last_seen_is_refreshed_periodically():
    b = book()
    b.fold([finding()], MIN)
    [u] = b.fold([finding(severity="WARNING")], 2 * MIN)
    assert u["state"] == "updated" and u["severity"] == "WARNING"
    assert b.fold([finding(severity="WARNING")], 3 * MIN) == []
    [refresh] = b.fold([finding(severity="WARNING")], 7 * MIN)
    assert refresh["state"] == "updated" and refresh["last_seen"] == 7 * MIN


def test_events_are_in_key_order_and_only_named_analyzers_resolve():
    b = book()
    events = b.fold([finding(subject="10.0.0.9"), finding(subject="10.0.0.1")], MIN)
    assert [e["key"] for e in events] == ["scan:10.0.0.1", "scan:10.0.0.9"]
    assert b.fold([], 10 * MIN, analyzers={"dns"}) == []
    assert len(b.fold([], 10 * MIN, analyzers={"scan"})) == 2


def stored(**over):
    """An advisory as the store's advisories query returns it (what an earlier run published)."""
    e = book().fold([finding()], MIN)[0]
    return {**e, "updates": 3, "source": "analyzer@old:1", **over}


def test_adopted_advisories_from_an_earlier_run_update_or_resolve():
    b = book()
    assert b.adopt([stored(), stored(key="scan:10.0.0.1", subject="10.0.0.1", last_seen=2 * MIN),
                    stored(key="scan:10.0.0.2", subject="10.0.0.2", state="resolved"),
                    stored(key="made:up", subject="10.0.0.3"),  # not a key this book would make
                    {"key": "scan:broken"}]) == 2
    assert sorted(b.open) == ["scan:10.0.0.1", "scan:172.16.0.55"]
    assert b.newest_last_seen() == 2 * MIN
    # Found again: an update of the same advisory (first_seen kept), not a second raise.
    [u] = b.fold([finding()], 3 * MIN)
    assert (u["key"], u["state"], u["first_seen"], u["last_seen"]) == ("scan:172.16.0.55", "updated", MIN, 3 * MIN)
    # Absent: resolved resolve_after after its stored last_seen, with what the store held.
    [r] = b.fold([finding()], 7 * MIN)
    assert (r["key"], r["state"], r["last_seen"], r["description"]) == ("scan:10.0.0.1", "resolved", 2 * MIN,
                                                                         "contacted 300 ports")
    assert b.adopt([stored()]) == 0  # already open here: kept as it is
    assert b.open["scan:172.16.0.55"].last_seen == 7 * MIN
