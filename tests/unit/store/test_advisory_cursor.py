"""The advisories op's reader cursor (``after``, ``after_key``): rows the store received later, resolved
ones too, oldest first, each with its received_at, so a reader (the notifier) pages through every change."""
import pytest

from flowmodel.protocol import QueryError
from flowlens_store.queries import QueryEngine
from flowlens_store.ring import Ring
from flowlens_store.warm import WarmWriter

HOUR = 3_600_000


def advisory(key: str, state: str, severity: str = "WARNING") -> dict:
    return {"key": key, "analyzer": "scan", "subject": key, "severity": severity, "state": state,
            "first_seen": 1000, "last_seen": 2000, "title": key}


@pytest.fixture()
def engine(tmp_path):
    path = str(tmp_path / "f.db")
    w = WarmWriter(path, HOUR, 24, 64)
    w.write_events([("advisory", advisory("a", "raised"), 5000), ("advisory", advisory("b", "raised"), 5000),
                    ("advisory", advisory("c", "raised"), 6000)])
    w.write_events([("advisory", advisory("a", "resolved"), 7000)])
    eng = QueryEngine(Ring(10), path, 600_000, 10_000, 5.0, clock=lambda: 10_000)
    yield eng
    eng.close()
    w.close()


def test_after_gives_later_rows_oldest_first_resolved_too(engine):
    rows = engine.advisories({"after": 0})["advisories"]
    assert [(r["key"], r["state"], r["received_at"]) for r in rows] == [
        ("b", "raised", 5000), ("c", "raised", 6000), ("a", "resolved", 7000)]
    assert [r["key"] for r in engine.advisories({"after": 5000})["advisories"]] == ["c", "a"]
    # without a cursor the listing is as before: open ones only, by severity
    assert sorted(r["key"] for r in engine.advisories({})["advisories"]) == ["b", "c"]


def test_after_key_pages_within_one_millisecond(engine):
    page = engine.advisories({"after": 0, "limit": 1})["advisories"]
    assert [r["key"] for r in page] == ["b"]
    rest = engine.advisories({"after": page[-1]["received_at"], "after_key": page[-1]["key"]})["advisories"]
    assert [r["key"] for r in rest] == ["c", "a"]
    assert [r["key"] for r in engine.advisories({"after": 4999, "after_key": "zzz"})["advisories"]] == ["b", "c", "a"]


def test_a_bad_cursor_is_an_error_reply(engine):
    with pytest.raises(QueryError):
        engine.advisories({"after": "yesterday"})
    with pytest.raises(QueryError):
        engine.advisories({"after": -1})
