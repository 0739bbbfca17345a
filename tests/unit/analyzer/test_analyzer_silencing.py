"""Silences in the analyzer: a silenced finding is not published; one the store already had resolves
as usual; one silenced from its start never reaches the store, nor its resolution; once the silence
ends, the next update is published."""
from flowlens_analyzer.silencing import Silencer

SCANNER = {"kind": "silence", "id": "s1", "address": "10.0.5.20", "created_at": 0, "expires_at": 100_000}


def event(key, state, subject):
    return {"key": key, "analyzer": "scan", "subject": subject, "state": state, "severity": "CRITICAL",
            "filter": {"src": subject}}


def test_silenced_findings_are_held_back_and_counted():
    s = Silencer()
    s.set_silences([SCANNER, {"kind": "ack", "id": "x", "episode": 1}])  # acks are not silences
    assert len(s.silences) == 1
    assert not s.admit(event("scan:10.0.5.20", "raised", "10.0.5.20"), 1000)
    assert not s.admit(event("scan:10.0.5.20", "updated", "10.0.5.20"), 2000)
    assert not s.admit(event("scan:10.0.5.20", "resolved", "10.0.5.20"), 3000)  # never shown: nor its end
    assert s.admit(event("scan:10.0.9.9", "raised", "10.0.9.9"), 1000)  # not matched
    assert s.silenced == 3


def test_an_advisory_open_before_the_silence_still_resolves_and_one_after_it_returns():
    s = Silencer()
    assert s.admit(event("scan:10.0.5.20", "raised", "10.0.5.20"), 1000)  # before any silence
    s.set_silences([SCANNER])
    assert not s.admit(event("scan:10.0.5.20", "updated", "10.0.5.20"), 2000)
    assert s.admit(event("scan:10.0.5.20", "resolved", "10.0.5.20"), 3000)  # the store's row must close
    assert not s.admit(event("scan:10.0.5.20", "raised", "10.0.5.20"), 4000)
    assert s.admit(event("scan:10.0.5.20", "updated", "10.0.5.20"), 100_000)  # expired: published again
    assert s.admit(event("scan:10.0.5.20", "resolved", "10.0.5.20"), 100_001)
