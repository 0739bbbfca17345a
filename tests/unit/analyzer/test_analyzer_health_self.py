"""The analyzer's own losses in words: advisories its outbox dropped before the store confirmed them."""
from flowmodel.eventbox import EventOutbox

from flowlens_analyzer.health import HealthState, analyze

CTX = {"analysis.exporter_silence": 120.0, "analysis.resolve_after": 300.0, "analysis.max_window_flows": 1000,
       "analysis.watermark": 30.0}


def test_a_dropped_advisory_is_told_once_with_its_count():
    ob = EventOutbox("analyzer@h/1", max_events=3, resend_after_ms=3000)
    state = HealthState(outbox=ob)
    assert analyze(state, CTX, 1_000, {}) == []
    for i in range(8):  # the store never confirms: five fall past the bound of three
        ob.add(b"advisory", {"key": f"scan:{i}"}, lambda body: repr(body).encode())
    found = [f for f in analyze(state, CTX, 2_000, {}) if f.subject == "advisories lost"]
    assert len(found) == 1 and found[0].severity == "WARNING"
    assert found[0].evidence["lost_advisories"] == 5 and "dropped 5 advisories" in found[0].description
    # nothing new lost: the finding is absent (its advisory resolves after analysis.resolve_after)
    assert [f for f in analyze(state, CTX, 3_000, {}) if f.subject == "advisories lost"] == []
