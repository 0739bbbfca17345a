"""A SQLite file written before the collector refused far-future flow times may hold a partition in the
year 291,690,302: the store drops it at start (WarmWriter.prune_future) and keeps everything else."""
import time

from flowmodel import addr
from flowlens_store.warm import WarmWriter

from store_testdata import make_batch, with_seq

HOUR = 3_600_000
FAR_FUTURE_MS = 9_151_314_449_241_600_000  # flowEndMilliseconds of a spoofed IPFIX record


def _write(w, t0, seq, n=10):
    b = make_batch(n, t0=t0, spacing_ms=1, seed=seq)
    b.columns["time_start"][:] = t0
    b.columns["exporter"][:] = addr.from_texts(["192.0.2.7"] * n)
    return w.write_flows(with_seq(b, seq))


def test_far_future_partitions_are_pruned_at_start_and_the_rest_kept(tmp_path):
    path = str(tmp_path / "f.db")
    now = int(time.time() * 1000)
    w = WarmWriter(path, HOUR, 24, 64)  # no max_partitions: what a store before the fix wrote
    assert _write(w, FAR_FUTURE_MS, 1) == 10
    assert _write(w, now + 3 * 24 * HOUR, 11) == 10   # three days ahead: a clock that is wrong, not real
    assert _write(w, now - 1000, 21) == 10             # now
    assert _write(w, 0, 31) == 10                      # the corpus's records at time 0 are legitimate
    assert _write(w, now + HOUR, 41) == 10             # an hour ahead: within a day, kept
    assert len(w.partitions) == 5
    w.close()

    w = WarmWriter(path, HOUR, 24, 64)
    pruned = w.prune_future(now)
    far = (FAR_FUTURE_MS // HOUR) * HOUR
    assert sorted(pruned) == sorted([f"flows_{far}", f"flows_{((now + 3 * 24 * HOUR) // HOUR) * HOUR}"])
    assert w.future_pruned_partitions == 2 and w.future_pruned_flows == 20
    assert w.db.execute("SELECT count(*) FROM partitions WHERE start_ms > ?", (now + 86_400_000,)).fetchone()[0] == 0
    tables = {r[0] for r in w.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert f"flows_{far}" not in tables
    assert w.db.execute("SELECT count(*) FROM hists WHERE start_ms > ?", (now + 86_400_000,)).fetchone()[0] == 0
    assert w.db.execute("SELECT sum(rows) FROM partitions").fetchone()[0] == 30
    assert w.prune_future(now) == []  # nothing left to prune; counters unchanged
    assert w.future_pruned_partitions == 2
    w.close()
