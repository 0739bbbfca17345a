"""A broken exporter clock cannot grow the SQLite schema without end: past storage.max_partitions, flows
that would open a table outside [now - retention, now + 1 day] are dropped and counted per exporter."""
import time

import numpy as np

from flowmodel import addr
from flowlens_store.warm import WarmWriter

from store_testdata import make_batch, with_seq

HOUR = 3_600_000


def test_out_of_range_hours_stop_opening_tables_at_the_cap(tmp_path):
    w = WarmWriter(str(tmp_path / "f.db"), HOUR, 24, 64)
    w.max_partitions, w.retention_ms = 5, 3 * 24 * HOUR
    now = int(time.time() * 1000)
    seq = 1
    written = []
    # one flow per hour, ten years ago: a clock stuck in the past, every datagram a new hour
    for i in range(12):
        b = make_batch(10, t0=now - 10 * 365 * 24 * HOUR + i * HOUR, spacing_ms=1, seed=i)
        b.columns["exporter"][:] = addr.from_texts(["192.0.2.9"] * 10)
        written.append(w.write_flows(with_seq(b, seq)))
        seq += 10
    assert written == [10] * 5 + [0] * 7  # kept under the cap (a replayed old capture), dropped past it
    assert len(w.partitions) == 5
    assert w.out_of_range_flows == 70 and w.out_of_range_by_exporter == {addr.to_bytes("192.0.2.9"): 70}
    # flows of the present still open their table past the cap: the cap never loses current traffic
    b = make_batch(10, t0=now - 1000, spacing_ms=1, seed=99)
    assert w.write_flows(with_seq(b, seq)) == 10
    assert len(w.partitions) == 6
    # a batch mixing both keeps the in-range rows
    b = make_batch(10, t0=now - 1000, spacing_ms=1, seed=98)
    b.columns["time_end"][:5] = now + 40 * 24 * HOUR  # a clock weeks ahead
    assert w.write_flows(with_seq(b, seq + 10)) == 5
    assert w.out_of_range_flows == 75
    rows = w.db.execute("SELECT sum(rows) FROM partitions").fetchone()[0]
    assert rows == 5 * 10 + 10 + 5
    assert int(np.sum(list(w.out_of_range_by_exporter.values()))) == 75
    w.close()


def test_an_advisory_raised_again_after_it_resolved_is_a_new_episode(tmp_path):
    w = WarmWriter(str(tmp_path / "f.db"), HOUR, 24, 64)
    base = {"key": "scan:10.0.0.9", "analyzer": "scan", "subject": "10.0.0.9", "severity": "CRITICAL"}
    w.write_events([("advisory", {**base, "state": "raised", "first_seen": 1000, "last_seen": 2000}, 2000),
                    ("advisory", {**base, "state": "updated", "first_seen": 1000, "last_seen": 3000}, 3000),
                    ("advisory", {**base, "state": "resolved", "first_seen": 1000, "last_seen": 4000}, 4000)])
    row = lambda: w.db.execute("SELECT state, first_seen, last_seen, updates FROM advisories").fetchone()
    assert row() == ("resolved", 1000, 4000, 3)
    w.write_events([("advisory", {**base, "state": "raised", "first_seen": 90_000, "last_seen": 91_000}, 91_000)])
    assert row() == ("raised", 90_000, 91_000, 1)
    w.write_events([("advisory", {**base, "state": "updated", "first_seen": 90_000, "last_seen": 95_000}, 95_000)])
    assert row() == ("updated", 90_000, 95_000, 2)
    w.close()


def test_each_rollup_step_has_its_own_retention(tmp_path):
    w = WarmWriter(str(tmp_path / "f.db"), HOUR, 24, 64)
    now = int(time.time() * 1000)
    # 100 s of flows inside one hour five days back: one partition to seal, whatever the clock says
    b = make_batch(100, t0=(now - 5 * 24 * HOUR) // HOUR * HOUR + 60_000, spacing_ms=1000, seed=3)
    w.write_flows(with_seq(b, 1))
    assert w.seal_due(now) == 1
    count = lambda step: w.db.execute("SELECT count(*) FROM hists WHERE step_ms = ?", (step,)).fetchone()[0]
    assert count(60_000) and count(300_000) and count(3_600_000)
    keep = {60_000: 2 * 24 * HOUR, 300_000: 30 * 24 * HOUR, 3_600_000: 365 * 24 * HOUR}
    w.prune(now, 30 * 24 * HOUR, 2 * 24 * HOUR, 30 * 24 * HOUR, 15 * 24 * HOUR, hist_retention_ms=keep)
    assert count(60_000) == 0 and count(300_000) and count(3_600_000)
    w.prune(now, 30 * 24 * HOUR, 2 * 24 * HOUR, 30 * 24 * HOUR, 15 * 24 * HOUR,
            hist_retention_ms={**keep, 300_000: 4 * 24 * HOUR})
    assert count(300_000) == 0 and count(3_600_000)
    w.close()
