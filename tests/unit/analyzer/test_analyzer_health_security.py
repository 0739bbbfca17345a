"""Refused CURVE peers in the store's health event become one WARNING advisory per address."""
from flowlens_analyzer.health import HealthState, _store_findings
from flowlens_analyzer.health_security import REFUSED_RECENT_MS

NOW = 1_800_000_000_000


def store_event(peers):
    return {"kind": "store", "source": "store@box:1", "seq": 3,
            "counters": {"flows_in": 0, "write_failing_since": None, "refused_peers": peers}}


def test_refused_peer_is_a_warning_naming_its_address():
    state = HealthState()
    state.observe(store_event([
        {"address": "198.18.0.2", "count": 12, "first_at": NOW - 5000, "last_at": NOW - 1000,
         "sockets": {"bus-publish": 12}, "reason": "unknown client key abc"},
        {"address": "203.0.113.9", "count": 1, "first_at": NOW - REFUSED_RECENT_MS - 10, "last_at": NOW - REFUSED_RECENT_MS - 1,
         "sockets": {"query": 1}, "reason": "unknown client key def"}]), NOW)
    findings = _store_findings(state, NOW, 120_000)
    assert [f.subject for f in findings] == ["refused peer 198.18.0.2"]
    f = findings[0]
    assert f.severity == "WARNING"
    assert "198.18.0.2" in f.description and "12 times" in f.description and "bus-publish" in f.description
    assert f.evidence["address"] == "198.18.0.2" and f.evidence["refused"] == 12


def test_no_refusals_no_advisory():
    state = HealthState()
    state.observe(store_event([]), NOW)
    assert _store_findings(state, NOW, 120_000) == []
