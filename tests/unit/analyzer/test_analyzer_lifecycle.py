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
