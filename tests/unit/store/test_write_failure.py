"""A flow transaction that fails (here a real SQLite error raised by a trigger on the transaction's
last statement, as a full disk fails a COMMIT) leaves the partition counters, row tables and
delivery marks as they were; the writer keeps the chunk, retries it, and commits it in order."""
from __future__ import annotations

import sqlite3
import time

import numpy as np

from flowlens_store.warm import WarmWriter
from flowlens_store.writer import MARK, Writer

from store_testdata import T0, make_batch, with_seq

HOUR = 3_600_000
DAY = 86_400_000
FAIL = ("CREATE TRIGGER inject_failure BEFORE INSERT ON meta WHEN NEW.key = 'next_seq' "
        "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")


def other_connection(path) -> sqlite3.Connection:
    return sqlite3.connect(str(path), isolation_level=None, timeout=10)


def stored(path) -> tuple[dict, int]:
    """(partition -> rows) as the partitions table says, and the rows the row tables hold."""
    db = other_connection(path)
    try:
        parts = dict(db.execute("SELECT name, rows FROM partitions"))
        held = sum(db.execute(f"SELECT count(*) FROM {n}").fetchone()[0] for n in parts)
        return parts, held
    finally:
        db.close()


def wait_until(cond, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_failed_transaction_leaves_counters_true_and_a_retry_writes_every_row(tmp_path):
    path = tmp_path / "f.db"
    w = WarmWriter(str(path), HOUR, 24, 64)
    inject = other_connection(path)
    inject.execute(FAIL)
    # the very first transaction fails: it created temp.nums, a row table and a partition
    first = with_seq(make_batch(500, t0=T0), 1)
    try:
        w.write_flows(first)
        raise AssertionError("the injected error did not fail the transaction")
    except sqlite3.Error as e:
        assert "disk is full" in str(e)
    assert w.partitions == {} and not w.row_tables and w.next_seq == 1
    inject.execute("DROP TRIGGER inject_failure")
    assert w.write_flows(first) == 500
    parts_before = {k: list(v) for k, v in w.partitions.items()}
    tables_before = set(w.row_tables)
    # rows for the same partition and for a new one an hour later, failing at the last statement
    second = with_seq(make_batch(300, t0=T0 + HOUR - 1500, spacing_ms=10), 501)
    inject.execute(FAIL)
    for _ in range(3):  # failed more than once: nothing accumulates
        try:
            w.write_flows(second)
            raise AssertionError("the injected error did not fail the transaction")
        except sqlite3.Error:
            pass
    assert w.partitions == parts_before and w.row_tables == tables_before and w.next_seq == 501
    parts, held = stored(path)
    assert parts == {n: p[2] for n, p in w.partitions.items()} and held == 500
    inject.execute("DROP TRIGGER inject_failure")
    assert w.write_flows(second) == 300
    parts, held = stored(path)
    assert held == 800 and sum(parts.values()) == 800 == sum(p[2] for p in w.partitions.values())
    assert parts == {n: p[2] for n, p in w.partitions.items()} and len(parts) == 2
    inject.close()
    w.close()


def test_writer_keeps_a_failed_chunk_retries_it_and_confirms_only_what_committed(tmp_path):
    path = tmp_path / "f.db"
    w = Writer(WarmWriter(str(path), HOUR, 24, 64), 1, 50_000, 3600, DAY, DAY, DAY)  # 4096 rows queued at most
    w.start()
    inject = other_connection(path)
    try:
        seq, batch_seq, offered = 1, 0, 0

        def offer(n: int) -> bool:
            nonlocal seq, batch_seq, offered
            cols = with_seq(make_batch(n, t0=T0 + seq * 10, seed=batch_seq), seq)
            cols[MARK] = ("s", batch_seq + 1, offered + n, 0)
            if not w.offer(cols):
                return False
            seq, batch_seq, offered = seq + n, batch_seq + 1, offered + n
            return True

        assert offer(1000)
        wait_until(lambda: w.committed == 1000)
        assert w.stream_committed == {"s": 1}
        inject.execute(FAIL)
        assert offer(1000)
        wait_until(lambda: w.write_errors >= 1)
        assert w.write_failing_since is not None and "disk is full" in w.last_write_error
        assert w.failed_rows == 1000
        accepted = sum(offer(1000) for _ in range(8))  # the queue fills while the chunk waits: then it sheds
        assert accepted == 4 and w.shed_flows == 4000 and w.rows_waiting == 5000
        wait_until(lambda: w.write_errors >= 2)  # retried
        assert w.committed == 1000 and w.stream_committed == {"s": 1}  # nothing confirmed past the failure
        parts, held = stored(path)
        assert held == 1000 and sum(parts.values()) == 1000 == sum(p[2] for p in w.warm.partitions.values())
        inject.execute("DROP TRIGGER inject_failure")
        wait_until(lambda: w.committed == 6000)
        assert w.stream_committed == {"s": 6} and w.write_failing_since is None and w.rows_waiting == 0
        parts, held = stored(path)
        assert held == 6000 and sum(parts.values()) == 6000 == sum(p[2] for p in w.warm.partitions.values())
        db = other_connection(path)
        assert db.execute("SELECT batch_seq, flows FROM streams WHERE stream = 's'").fetchone() == (6, 6000)
        seqs = np.array([r[0] for n in parts for r in db.execute(f"SELECT seq FROM {n}")])
        db.close()
        assert sorted(seqs.tolist()) == list(range(1, 6001))
    finally:
        inject.close()
        w.stop()


def test_stop_gives_up_on_a_chunk_that_keeps_failing_and_counts_it(tmp_path):
    path = tmp_path / "f.db"
    w = Writer(WarmWriter(str(path), HOUR, 24, 64), 4, 50_000, 3600, DAY, DAY, DAY)
    inject = other_connection(path)
    inject.execute(FAIL)
    w.start()
    try:
        assert w.offer(with_seq(make_batch(700), 1))
        wait_until(lambda: w.write_errors >= 1)
        assert w.offer(with_seq(make_batch(300), 701))
    finally:
        t = time.monotonic()
        w.stop()
        inject.close()
    assert time.monotonic() - t < 15
    assert w.unwritten_at_stop == 1000 and w.committed == 0
