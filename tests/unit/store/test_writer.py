"""The writer's queue is bounded in rows (queue_batches full 4096-row batches), with a looser bound on
the number of batches; what it accepts is committed by stop(), what it sheds is counted."""
import sqlite3

from flowlens_store.warm import WarmWriter
from flowlens_store.writer import FULL_BATCH_ROWS, MAX_BATCHES_PER_FULL, Writer

from store_testdata import make_batch, with_seq

HOUR = 3_600_000
DAY = 86_400_000


def writer(tmp_path, queue_batches: int) -> Writer:
    return Writer(WarmWriter(str(tmp_path / "f.db"), HOUR, 24, 64), queue_batches, 50_000, 3600, DAY, DAY, DAY)


def test_small_batches_fill_the_row_bound_not_a_batch_count(tmp_path):
    w = writer(tmp_path, 2)  # 8192 rows, at most 32 batches
    b = make_batch(100)
    seq, accepted = 1, []
    for _ in range(40):  # not started: nothing drains
        accepted.append(w.offer(with_seq(b, seq)))
        seq += 100
    assert accepted == [True] * (2 * MAX_BATCHES_PER_FULL) + [False] * 8
    assert w.queued_rows == 3200 and w.shed_batches == 8 and w.shed_flows == 800
    w.start()
    w.stop()
    assert w.committed == 3200 and w.queued_rows == 0


def test_rows_over_the_bound_are_shed_and_a_huge_batch_fits_an_empty_queue(tmp_path):
    w = writer(tmp_path, 1)  # 4096 rows
    big = make_batch(FULL_BATCH_ROWS + 500)
    assert w.offer(with_seq(big, 1))  # larger than the bound, but the queue is empty
    assert not w.offer(with_seq(make_batch(1), 5000))
    w.start()
    w.stop()
    assert w.committed == FULL_BATCH_ROWS + 500 and w.shed_flows == 1
    w2 = writer(tmp_path / "two", 1)
    assert w2.offer(with_seq(make_batch(3000), 1))
    assert w2.offer(with_seq(make_batch(1096), 3001))   # exactly 4096
    assert not w2.offer(with_seq(make_batch(1), 4097))
    assert w2.queued_rows == 4096 and w2.queued_batches == 2
    w2.start()
    w2.stop()
    assert w2.committed == 4096 and w2.queued_rows == 0 and w2.shed_flows == 1


def test_an_events_wake_marker_takes_no_batchs_place(tmp_path):
    """An event offered to an idle writer queues a marker that wakes it at once; the queue's bounds
    count batches and rows, so the marker never makes a batch be shed."""
    w = writer(tmp_path, 2)  # 8192 rows, at most 32 batches
    base = {"key": "scan:10.0.0.9", "analyzer": "scan", "severity": "WARNING", "state": "new", "subject": "10.0.0.9",
            "title": "t", "description": "d", "first_seen": 1, "last_seen": 1}
    assert w.offer_event("advisory", base)
    assert w.flows.qsize() == 1 and w.queued_batches == 0  # the marker alone
    assert w.offer_event("advisory", {**base, "key": "scan:10.0.0.8"})
    assert w.flows.qsize() == 1  # one marker at most: the queue was not empty
    b = make_batch(100)
    accepted = [w.offer(with_seq(b, 1 + i * 100)) for i in range(40)]
    assert accepted == [True] * (2 * MAX_BATCHES_PER_FULL) + [False] * 8
    assert w.queued_batches == 2 * MAX_BATCHES_PER_FULL and w.shed_batches == 8
    w.start()
    w.stop()
    assert w.committed == 3200 and w.queued_rows == 0 and w.queued_batches == 0
    db = sqlite3.connect(str(tmp_path / "f.db"))
    try:
        assert db.execute("SELECT count(*) FROM advisories").fetchone()[0] == 2
    finally:
        db.close()
