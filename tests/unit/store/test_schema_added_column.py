"""Schema columns added after a file was written (``biflow``, then ``src_country`` and
``dst_country``): the file's row tables hold the shorter packed rests of before and its sealed
blocks have no blob for the columns. Opening the file widens the rows once (layout.widen_rows) and
old blocks read as the columns' defaults; every other column comes back bit-exact, and flows
written now keep their biflow marker and countries in rows and blocks."""
import numpy as np
import pytest

from flowlens_store import layout
from flowlens_store.blocks import decode_block
from flowlens_store.rowcodec import REST_DTYPE, SQL_COLUMNS, rows_to_columns
from flowlens_store.warm import WarmWriter
from flowmodel.geo import pack_country
from flowmodel.schema import FLOW_COLUMNS, FlowBatch

from store_testdata import make_batch, with_seq
from test_spans import BASE, HOUR

DUE = BASE + 2 * HOUR
# the columns each earlier schema lacked (appended in this order), and the bytes they take in a rest
BEFORE = {"biflow": ("biflow", "src_country", "dst_country"), "countries": ("src_country", "dst_country")}


def _batch(n: int, seed: int, biflow: int) -> FlowBatch:
    b = make_batch(n, t0=BASE, spacing_ms=7, seed=seed)
    b.columns["dst_mask"][:] = 24          # the column packed just before biflow: must survive widening
    b.columns["direction"][:] = 1
    b.columns["biflow"][:] = biflow
    return b


def _rows(db) -> dict:
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'flows_*'")]
    rows = [r for t in tables for r in db.execute(f"SELECT {', '.join(SQL_COLUMNS)} FROM {t} ORDER BY seq")]
    return rows_to_columns(rows)


def _block_columns(db) -> dict:
    out: dict = {}
    for block, rows in db.execute("SELECT id, rows FROM blocks ORDER BY id").fetchall():
        blobs = dict(db.execute("SELECT name, data FROM block_columns WHERE block = ?", (block,)).fetchall())
        cols = decode_block(blobs, list(FLOW_COLUMNS) + ["seq"], rows)
        for k, v in cols.items():
            out.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in out.items()}


def _same(got: dict, want: FlowBatch, seq: np.ndarray) -> None:
    order = np.argsort(got["seq"])
    assert got["seq"][order].tolist() == seq.tolist()
    for name in FLOW_COLUMNS:
        assert np.array_equal(got[name][order], want.columns[name]), name


@pytest.mark.parametrize("before", sorted(BEFORE))
def test_rows_and_blocks_of_a_file_from_before_the_column_read_with_its_default(tmp_path, before):
    missing = BEFORE[before]
    old_rest = REST_DTYPE.itemsize - sum(FLOW_COLUMNS[c][0].itemsize for c in missing)
    assert REST_DTYPE.names[-len(missing):] == missing   # appended last: the old rest is a prefix
    path = str(tmp_path / "old.db")
    w = WarmWriter(path, HOUR, 24, 64, seal_chunk_rows=200)
    marker = 0 if "biflow" in missing else 1   # a column the old file had keeps its values
    sealed, hot = _batch(500, 1, marker), _batch(300, 2, marker)
    w.write_flows(with_seq(sealed, 1))
    assert w.seal_due(DUE) == 1   # the first partition's rows become blocks
    w.write_flows(with_seq(hot, 1001))  # late rows: a new row table for the sealed partition
    # make it the file of before: rests without the columns, no blobs for them, no rest width recorded
    db = w.db
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'flows_*'")]
    assert tables
    for t in tables:
        db.execute(f"UPDATE {t} SET rest = substr(rest, 1, {old_rest})")
    for c in missing:
        assert db.execute("DELETE FROM block_columns WHERE name = ?", (c,)).rowcount > 0
    db.execute("DELETE FROM meta WHERE key = 'rest_bytes'")
    w.close()

    w = WarmWriter(path, HOUR, 24, 64, seal_chunk_rows=200)
    assert w.db.execute("SELECT value FROM meta WHERE key = 'rest_bytes'").fetchone() == (REST_DTYPE.itemsize,)
    assert layout.widen_rows(w.db) == 0   # once only
    rows, blocks = _rows(w.db), _block_columns(w.db)
    assert len(rows["seq"]) and len(blocks["seq"])   # both shapes are read
    _same({k: np.concatenate([blocks[k], rows[k]]) for k in rows}, FlowBatch.concat([sealed, hot]),
          np.concatenate([np.arange(1, 501), np.arange(1001, 1301)]))
    w.close()


def test_the_biflow_marker_and_countries_are_kept_in_rows_and_in_blocks(tmp_path):
    path = str(tmp_path / "new.db")
    w = WarmWriter(path, HOUR, 24, 64, seal_chunk_rows=200)
    b = _batch(400, 3, 2)
    b.columns["biflow"][::3] = 1
    b.columns["src_country"][:] = pack_country("US")
    b.columns["dst_country"][::2] = pack_country("XP")
    w.write_flows(with_seq(b, 1))
    rows, blocks = _rows(w.db), _block_columns(w.db)
    _same({k: np.concatenate([blocks[k], rows[k]]) for k in rows}, b, np.arange(1, 401))
    assert w.seal_due(DUE) == 1
    _same(_block_columns(w.db), b, np.arange(1, 401))
    w.close()
