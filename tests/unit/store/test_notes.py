"""Operators' notes in the store: written in the event transaction, a later note of the same kind and
id replacing the earlier one, read back by the notes op (silences in force by default)."""
import pytest

from flowmodel.protocol import QueryError
from flowlens_store.queries import QueryEngine
from flowlens_store.ring import Ring
from flowlens_store.warm import WarmWriter

HOUR = 3_600_000


def test_notes_are_kept_replaced_and_read_back(tmp_path):
    path = str(tmp_path / "f.db")
    w = WarmWriter(path, HOUR, 24, 64)
    clock = {"now": 5000}
    eng = QueryEngine(Ring(10), path, 600_000, 10_000, 5.0, clock=lambda: clock["now"])
    try:
        assert eng.notes({}) == {"ok": True, "notes": []}  # before any note: no table yet, no error
        s1 = {"kind": "silence", "id": "s1", "analyzer": "scan", "created_at": 1000, "expires_at": 9000, "by": "ann",
              "comment": "our Nessus scanner", "schema": 2, "seq": 7, "event_stream": "cli/1", "event_seq": 1}
        ack = {"kind": "ack", "id": "scan:10.0.5.20", "episode": 100, "created_at": 2000, "by": "bob"}
        w.write_events([("note", s1, 3000), ("note", ack, 3000)])
        got = eng.notes({})["notes"]
        assert [n["id"] for n in got] == ["scan:10.0.5.20", "s1"]
        assert got[1]["comment"] == "our Nessus scanner" and "event_seq" not in got[1]  # the body, not the envelope
        assert [n["id"] for n in eng.notes({"kind": "silence"})["notes"]] == ["s1"]
        w.write_events([("note", {**s1, "expires_at": 4000}, 4000)])  # lifted: sent again, expiring now
        assert [n["id"] for n in eng.notes({"kind": "silence"})["notes"]] == []
        assert [n["expires_at"] for n in eng.notes({"kind": "silence", "active": False})["notes"]] == [4000]
        with pytest.raises(QueryError):
            eng.notes({"kind": "mute"})
    finally:
        eng.close()
        w.close()
