"""The store's interface counter rows: checked events, minutes summed, retention and row bound."""
import sqlite3

import pytest

from flowlens_store import ifcounters


def row(minute: int, **kw):
    base = {"exporter": "192.0.2.1", "ifindex": 3, "time_ms": minute * 60_000 + 5, "interval_ms": 20_000,
            "speed_bps": 10**9, "in_octets": 100, "out_octets": 10, "in_packets": 1, "out_packets": 1,
            "in_errors": 0, "out_errors": 0, "in_discards": 0, "out_discards": 0, "resets": 0}
    return {**base, **kw}


def test_rows_of_a_minute_add_up(tmp_path):
    db = sqlite3.connect(tmp_path / "s.db")
    ifcounters.save(db, ifcounters.check_event({"rows": [row(5), row(5, in_octets=50, resets=1), row(6)]}))
    got = db.execute("SELECT minute_ms, in_octets, resets FROM if_counters ORDER BY minute_ms").fetchall()
    assert got == [(300_000, 150, 1), (360_000, 100, 0)]


@pytest.mark.parametrize("bad, name", [({"ifindex": -1}, "ifindex"), ({"in_octets": "x"}, "in_octets"),
                                       ({"exporter": "nope"}, "exporter")])
def test_a_bad_row_names_its_field(bad, name):
    with pytest.raises(ValueError, match=name):
        ifcounters.check_event({"rows": [row(1, **bad)]})


def test_prune_keeps_the_retention_then_the_newest_rows(tmp_path):
    db = sqlite3.connect(tmp_path / "s.db")
    ifcounters.save(db, ifcounters.check_event({"rows": [row(m) for m in range(10)]}))
    assert ifcounters.prune(db, now_ms=10 * 60_000, retention_ms=8 * 60_000, max_rows=5) == 2 + 3
    assert [m for (m,) in db.execute("SELECT minute_ms / 60000 FROM if_counters ORDER BY 1")] == [5, 6, 7, 8, 9]
