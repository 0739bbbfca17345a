"""Rollups of dimensions a partition was sealed without (a file from an older FlowLens) are built from its
blocks in the background: byte for byte the rollups sealing builds, only the missing ones, once."""
import sqlite3

import numpy as np

from flowlens_store.backfill import ROLLUP_DIMS_VERSION, RollupBackfill
from flowlens_store.warm import WarmWriter
from flowmodel import addr

from store_testdata import T0, make_batch, with_seq

HOUR = 3_600_000
BASE = (T0 // HOUR) * HOUR


def sealed_store(path: str) -> WarmWriter:
    w = WarmWriter(path, HOUR, 24, 64, seal_chunk_rows=500)
    seq = 1
    for h in range(3):
        b = make_batch(1800, t0=BASE + h * HOUR + 1000, spacing_ms=1900, seed=h)
        rng = np.random.default_rng(h)
        b.columns["src_as"][:] = rng.choice([0, 64500, 64501], b.count)
        b.columns["dst_as"][:] = rng.choice([15169, 13335], b.count)
        b.columns["output_if"][:] = rng.integers(0, 4, b.count)
        b.columns["tos"][:] = rng.choice([0, 46 << 2], b.count)
        b.columns["src_addr"][::97] = addr.from_texts(["10.9.9.9"])[0]
        b.columns["dst_addr"][::97] = addr.from_texts(["10.9.9.9"])[0]  # a few flows to themselves ("self")
        w.write_flows(with_seq(b, seq))
        seq += b.count
    while w.seal_due(BASE + 2 * HOUR + 200_000):
        pass
    return w


def hist_rows(db, where: str = "1") -> dict:
    return {r[:4]: r[4:] for r in db.execute(
        f"SELECT dim, step_ms, start_ms, chunk, end_ms, key_lo, key_hi, rows, data FROM hists WHERE {where}")}


def run(bf: RollupBackfill) -> int:
    steps = 0
    while bf.pending():
        bf.step()
        steps += 1
    return steps


def test_missing_dimensions_are_built_as_sealing_builds_them_and_only_those(tmp_path):
    w = sealed_store(str(tmp_path / "f.db"))
    try:
        db = w.db
        sealed = sorted(p[0] for p in w.partitions.values() if p[5])
        assert len(sealed) == 2
        want = hist_rows(db)
        assert {k[0] for k in want} >= {"if_pair", "as_pair", "tos", "in_if", "self"}
        # an older file: the first hour sealed without the pairs and ToS, the second without in_if
        db.execute("DELETE FROM hists WHERE start_ms = ? AND dim IN ('if_pair', 'as_pair', 'tos')", (sealed[0],))
        db.execute("DELETE FROM hists WHERE start_ms = ? AND dim = 'in_if'", (sealed[1],))
        db.execute("DELETE FROM meta WHERE key = 'rollup_dims'")
        kept = hist_rows(db)
        bf = RollupBackfill(db, w.partitions, 24, 64, w.sealer.hist_max_keys)
        bf.recover()
        assert [(n, set(d)) for n, d in bf.queue] == [(f"flows_{sealed[1]}", {"in_if"}),  # newest first
                                                      (f"flows_{sealed[0]}", {"if_pair", "as_pair", "tos"})]
        assert run(bf) >= 2 and bf.partitions_done == 2 and bf.blocks_read > 0
        assert hist_rows(db) == want  # the rollups deleted are back, byte for byte; the others untouched
        assert all(hist_rows(db)[k] == v for k, v in kept.items())
        assert db.execute("SELECT value FROM meta WHERE key = 'rollup_dims'").fetchone()[0] == ROLLUP_DIMS_VERSION
        again = RollupBackfill(db, w.partitions, 24, 64, w.sealer.hist_max_keys)
        again.recover()
        assert not again.pending()  # once per version
    finally:
        w.close()


def test_an_up_to_date_file_is_not_scanned_and_late_rows_drop_a_partition_from_the_list(tmp_path):
    w = sealed_store(str(tmp_path / "f.db"))
    try:
        db = w.db
        sealed = sorted(p[0] for p in w.partitions.values() if p[5])
        db.execute("DELETE FROM hists WHERE dim = 'as_pair'")
        bf = RollupBackfill(db, w.partitions, 24, 64, w.sealer.hist_max_keys)
        bf.recover()  # the file says its rollups are up to date (sealed by this version): nothing listed
        assert not bf.pending()
        db.execute("DELETE FROM meta WHERE key = 'rollup_dims'")
        bf.recover()
        assert len(bf.queue) == 2
        # late rows for the older hour: it is row-shaped again and its next seal builds every dimension
        late = make_batch(10, t0=sealed[0] + 5000, spacing_ms=10, seed=9)
        w.write_flows(with_seq(late, 100_000))
        assert not w.partitions[f"flows_{sealed[0]}"][5]
        run(bf)
        assert bf.partitions_done == 1
        assert {r[0] for r in db.execute("SELECT DISTINCT start_ms FROM hists WHERE dim = 'as_pair'")} == {sealed[1]}
    finally:
        w.close()


def test_the_writer_builds_them_on_start_and_a_restart_midway_finishes_what_is_left(tmp_path):
    path = str(tmp_path / "f.db")
    w = sealed_store(path)
    want = hist_rows(w.db)
    sealed = sorted(p[0] for p in w.partitions.values() if p[5])
    w.db.execute("DELETE FROM hists WHERE dim IN ('if_pair', 'as_pair')")
    w.db.execute("DELETE FROM meta WHERE key = 'rollup_dims'")  # as a file sealed before the pairs existed
    w.close()
    now = BASE + 2 * HOUR + 200_000
    w = WarmWriter(path, HOUR, 24, 64, seal_chunk_rows=500)
    try:
        bf = w.sealer.backfill
        assert bf.stats()["partitions_left"] == 2 and w.seal_pending()  # the writer's idle steps will build them
        while bf.partitions_done < 1:
            w.seal_step(now)
    finally:
        w.close()  # stopped after the newest hour's pairs were written: the older hour's are lost with the process
    db = sqlite3.connect(path)
    assert {r[0] for r in db.execute("SELECT DISTINCT start_ms FROM hists WHERE dim = 'if_pair'")} == {sealed[1]}
    db.close()
    w = WarmWriter(path, HOUR, 24, 64, seal_chunk_rows=500)
    try:
        assert [n for n, _d in w.sealer.backfill.queue] == [f"flows_{sealed[0]}"]  # only what is still missing
        while w.seal_step(now):
            pass
        assert hist_rows(w.db) == want and w.sealer.backfill.stats()["partitions_left"] == 0
    finally:
        w.close()
