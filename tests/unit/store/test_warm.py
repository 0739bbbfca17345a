"""The SQLite tier: partitions by time_end, sealing, DROP-based pruning, rollups, round trips."""
import sqlite3

import numpy as np
import pytest

from flowmodel import addr
from flowmodel.schema import COLUMN_NAMES
from flowlens_store.warm import WarmWriter, partition_name, rows_to_columns, SQL_COLUMNS

from store_testdata import T0, make_batch, with_seq

HOUR = 3_600_000


def tables(path):
    with sqlite3.connect(path) as db:
        return sorted(r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'flows_%'"))


def test_rows_round_trip_every_column(tmp_path):
    w = WarmWriter(str(tmp_path / "f.db"), HOUR, 24, 64)
    b = make_batch(500)
    w.write_flows(with_seq(b, 1))
    start = (T0 // HOUR) * HOUR
    rows = w.db.execute(f"SELECT {', '.join(SQL_COLUMNS)} FROM {partition_name(start)} ORDER BY seq").fetchall()
    cols = rows_to_columns(rows)
    for name in COLUMN_NAMES:
        assert np.array_equal(cols[name], b[name]), name
    assert cols["seq"].tolist() == list(range(1, 501))
    w.close()


def test_rows_round_trip_with_gaps_in_seq_and_wide_integers(tmp_path):
    """seq with gaps (a shed batch between two coalesced ones) takes the digit path, not k + first;
    bytes/packets above 2**32 take the uint64 digit path; both read back exactly."""
    w = WarmWriter(str(tmp_path / "f.db"), HOUR, 24, 64)
    b = make_batch(300)
    b.columns["bytes"][:100] = (1 << 40) + np.arange(100)
    b.columns["packets"][100:200] = (1 << 33) + 7
    cols = dict(b.columns)
    cols["seq"] = np.concatenate([np.arange(5, 155), np.arange(4_000, 4_150)]).astype(np.int64)
    w.write_flows(cols)
    rows = w.db.execute(f"SELECT {', '.join(SQL_COLUMNS)} FROM {partition_name((T0 // HOUR) * HOUR)} ORDER BY seq").fetchall()
    back = rows_to_columns(rows)
    for name in COLUMN_NAMES:
        assert np.array_equal(back[name], b[name]), name
    assert back["seq"].tolist() == cols["seq"].tolist()
    w.close()


def test_partitions_by_time_end_and_prune_drops_old_tables(tmp_path):
    path = str(tmp_path / "f.db")
    w = WarmWriter(path, HOUR, 24, 64)
    base = (T0 // HOUR) * HOUR
    seq = 1
    for h in range(5):  # one batch per hour, the last one straddling into hour 5
        b = make_batch(100, t0=base + h * HOUR + HOUR - 500, spacing_ms=10)
        w.write_flows(with_seq(b, seq))
        seq += 100
    assert tables(path) == sorted(partition_name(base + h * HOUR) for h in range(6))
    assert sum(p[2] for p in w.partitions.values()) == 500
    spans = w.db.execute("SELECT part, sum(rows) FROM spans GROUP BY part").fetchall()
    assert dict(spans) == {n: p[2] for n, p in w.partitions.items()}  # every row of every hot partition in a span
    # now = base + 8h, retention 4h: partitions that ended at or before base + 4h go (hours 0..3)
    dropped = w.prune(base + 8 * HOUR, 4 * HOUR, 100 * HOUR, 100 * HOUR)
    assert sorted(dropped) == sorted(partition_name(base + h * HOUR) for h in range(4))
    # small row tables are dropped in the prune itself
    assert tables(path) == sorted(partition_name(base + h * HOUR) for h in (4, 5))
    assert {r[0] for r in w.db.execute("SELECT part FROM spans")} == {partition_name(base + h * HOUR) for h in (4, 5)}
    assert w.db.execute("SELECT count(*) FROM partitions").fetchone()[0] == 2
    # next_seq survives a reopen
    w.close()
    w2 = WarmWriter(path, HOUR, 24, 64)
    assert w2.next_seq == 501
    w2.close()


def test_seal_turns_rows_into_blocks_once_partition_is_past(tmp_path):
    path = str(tmp_path / "f.db")
    w = WarmWriter(path, HOUR, 24, 64)
    w.write_flows(with_seq(make_batch(100), 1))
    name = partition_name((T0 // HOUR) * HOUR)
    assert w.seal_due(T0) == 0
    assert w.db.execute("SELECT count(*) FROM blocks").fetchone() == (0,)
    assert w.seal_due(T0 + 2 * HOUR) == 1
    assert w.db.execute("SELECT part, rows FROM blocks").fetchall() == [(name, 100)]
    tables = {r[0] for r in w.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert name not in tables  # the row table goes with its last rows
    assert w.db.execute("SELECT sealed, hot_rows, rows FROM partitions WHERE name = ?", (name,)).fetchone() == (1, 0, 100)
    assert w.db.execute("SELECT count(*) FROM spans").fetchone() == (0,)
    assert not w.seal_pending()
    w.close()


@pytest.mark.parametrize("p4,p6", [(24, 64), (20, 48), (32, 128), (0, 0), (8, 100)])
def test_prefix_words_equal_mask_column(p4, p6):
    from flowlens_store.hists import prefix_words as _prefix_words
    rng = np.random.default_rng(p4 * 1000 + p6)
    raw = rng.integers(0, 256, (400, 16), dtype=np.uint8)
    raw[::2, :10] = 0
    raw[::2, 10:12] = 0xFF  # every other row IPv4-mapped
    col = raw.view("V16").ravel()
    hi, lo = _prefix_words(col, p4, p6)
    words = np.empty((400, 2), ">u8")
    words[:, 0], words[:, 1] = hi, lo
    assert words.view("V16").ravel().tolist() == addr.mask_column(col, p4, p6).tolist()
