"""Sealing in bounded steps (sealer.py): a partition's rows become column blocks, BLOCK_ROWS at a time,
each move one transaction. Every query must answer exactly as over the plain rows: mid-move, with rows
arriving for the partition while it is moved and after it was sealed, across a restart or a SIGKILL
mid-move, after a prune, and for a file of the older layout (indexed sealed tables), migrated on open."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from flowlens_store.queries import QueryEngine
from flowlens_store.ring import Ring
from flowlens_store.warm import WarmWriter, partition_name
from flowlens_store.writer import Writer
from flowmodel.schema import FlowBatch
from support.services import wait_until

from store_testdata import with_seq
from test_planner import FILTERS, mask_for, page_keys, walk, walk_back, want_keys
from test_spans import BASE, HOUR, WINDOWS, shuffled_batches

NAME = partition_name((BASE // HOUR) * HOUR)
SEQ_STEP = 30_000  # batch i starts at seq 1 + i * SEQ_STEP: seq has gaps, as after late rows
DUE = BASE + 2 * HOUR


def seq0(i: int) -> int:
    return 1 + i * SEQ_STEP


def write(w: WarmWriter, batches, idx) -> None:
    for i in idx:
        w.write_flows(with_seq(batches[i], seq0(i)))


def engine(path: str, flows: FlowBatch) -> QueryEngine:
    ring = Ring(10)
    ring.evicted_max_time_end = int(flows["time_end"].max())  # SQLite answers everything
    return QueryEngine(ring, path, 600_000, 10_000, 5.0, clock=lambda: BASE + 10 * HOUR)


def all_flows(batches, idx) -> FlowBatch:
    flows = FlowBatch.concat([batches[i] for i in idx])
    flows.columns["seq"] = np.concatenate([np.arange(seq0(i), seq0(i) + batches[i].count) for i in idx])
    return flows


def tables(w: WarmWriter) -> set[str]:
    return {r[0] for r in w.db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'flows_%'")}


def blocks(w: WarmWriter) -> list[tuple]:
    return w.db.execute("SELECT rows, seq_lo, seq_hi FROM blocks WHERE part = ? ORDER BY id", (NAME,)).fetchall()


def answers(eng: QueryEngine, flows: FlowBatch) -> None:
    """Every page walk, top and series over the partition equals what the input rows give."""
    for window in WINDOWS:
        for filters in FILTERS:
            f = {**window, **filters}
            m = mask_for(flows, f)
            pages = walk(eng, f, 150)
            assert page_keys(pages) == want_keys(flows, m), f
            back = walk_back(eng, f, pages[-1], 150)
            assert [page_keys([p]) for p in back] == [page_keys([p]) for p in pages], f
        m = mask_for(flows, window)
        args = {"since": BASE - HOUR, **window}
        top = eng.top({**args, "by": "dst_port", "metric": "flows", "limit": 10})
        assert {r["key"]: r["flows"] for r in top["rows"]} == \
            {str(p): int(((flows["dst_port"] == p) & m).sum()) for p in np.unique(flows["dst_port"][m])}, window
        top = eng.top({**args, "by": "src", "metric": "bytes", "limit": 10})
        want: dict = {}
        for a, b in zip(flows["src_addr"][m].tolist(), flows["bytes"][m].tolist()):
            want[a] = want.get(a, 0) + b
        assert [r["bytes"] for r in top["rows"]] == sorted(want.values(), reverse=True)[:10], window
        assert top["totals"]["flows"] == int(m.sum()), window
        ser = eng.series({**args, "until": window.get("until", BASE + HOUR), "step": 5})
        assert sum(p[3] for p in ser["points"]) == int(m.sum()), window
        assert sum(p[1] for p in ser["points"]) == int(flows["bytes"][m].sum()), window
        spread = eng.series({**args, "until": window.get("until", BASE + HOUR), "step": 5, "spread": True,
                             "scaled": True})
        assert sum(p[3] for p in spread["points"]) == int(m.sum()), window


def reopened(path: str, batches, idx, chunk: int, **kw) -> WarmWriter:
    """Rows written by a writer that cuts no block, then a writer opened on them (as after a restart):
    its row table is not mirrored in memory, so sealing reads the rows back from SQLite."""
    w = WarmWriter(path, HOUR, 24, 64, seal_chunk_rows=1 << 20, **kw)
    write(w, batches, idx)
    w.close()
    return WarmWriter(path, HOUR, 24, 64, seal_chunk_rows=chunk, **kw)


@pytest.fixture(scope="module", params=["moved", "streamed"])
def sealed_both(request, tmp_path_factory):
    """The same 24 batches in two files: one left as rows, one in 300-row blocks with the last 8
    batches written after blocks were made. moved: the rows were read back from SQLite in steps (a
    restart lost the mirror); streamed: blocks were cut from memory as the rows arrived."""
    batches = shuffled_batches()
    d = tmp_path_factory.mktemp("seal")
    rows = WarmWriter(str(d / "rows.db"), HOUR, 24, 64, span_rows=500)
    write(rows, batches, range(24))
    if request.param == "moved":
        new = reopened(str(d / "blocks.db"), batches, range(16), 300, span_rows=500)
        for _ in range(6):
            assert new.seal_step(DUE)
    else:
        new = WarmWriter(str(d / "blocks.db"), HOUR, 24, 64, span_rows=500, seal_chunk_rows=300)
        write(new, batches, range(16))
    assert 0 < sum(b[0] for b in blocks(new)) < 16 * 250
    write(new, batches, range(16, 24))  # rows arriving for the partition after blocks were made
    assert new.seal_due(DUE) == 1
    flows = all_flows(batches, range(24))
    yield rows, new, flows
    rows.close()
    new.close()


def test_sealed_partition_holds_every_row_once_in_blocks(sealed_both):
    _rows, new, flows = sealed_both
    got = blocks(new)
    assert sum(b[0] for b in got) == flows.count
    assert all(r <= 300 for r, _lo, _hi in got) and len(got) == -(-flows.count // 300)
    assert tables(new) == set() and not new.seal_pending()
    assert new.db.execute("SELECT sealed, hot_rows FROM partitions WHERE name = ?", (NAME,)).fetchone() == (1, 0)
    assert new.db.execute("SELECT count(*) FROM spans").fetchone() == (0,)
    names = {r[0] for r in new.db.execute("SELECT DISTINCT name FROM block_columns")}
    assert names == set(flows.columns)  # every schema column and seq


@pytest.mark.parametrize("which", ["rows", "blocks"])
def test_rows_and_blocks_answer_every_query_alike(sealed_both, which):
    rows, new, flows = sealed_both
    eng = engine((rows if which == "rows" else new).path, flows)
    answers(eng, flows)
    if which == "blocks":
        assert eng.blocks.read > 0
    eng.close()


def test_host_query_reads_a_small_fraction_of_the_blocks(sealed_both):
    _rows, new, flows = sealed_both
    eng = engine(new.path, flows)
    host = flows["src_addr"][17]
    from flowmodel import addr
    text = addr.to_text(host)
    pages = walk(eng, {"addr": text}, 500)
    m = (flows["src_addr"] == host) | (flows["dst_addr"] == host)
    assert page_keys(pages) == want_keys(flows, m)
    listed, pruned = eng.blocks.listed, eng.blocks.pruned
    assert listed == len(blocks(new)) and pruned / listed > 0.5, (listed, pruned)
    eng.close()


def test_queries_mid_move_are_complete_and_a_restart_resumes_it(tmp_path):
    batches = shuffled_batches()
    path = str(tmp_path / "f.db")
    w = reopened(path, batches, range(12), 400, span_rows=500)
    flows = all_flows(batches, range(12))
    eng = engine(path, all_flows(batches, range(24)))
    for _ in range(4):
        assert w.seal_step(DUE)
    answers(eng, flows)  # part blocks, part rows
    moved = sum(b[0] for b in blocks(w))
    assert 0 < moved < flows.count
    w.close()  # a stop mid-move

    w = WarmWriter(path, HOUR, 24, 64, span_rows=500, seal_chunk_rows=400)
    assert sum(b[0] for b in blocks(w)) == moved and w.partitions[NAME][6] == flows.count - moved
    write(w, batches, range(12, 24))
    flows = all_flows(batches, range(24))
    answers(eng, flows)
    assert w.seal_due(DUE) == 1 and tables(w) == set()
    answers(eng, flows)
    eng.close()
    w.close()


def test_late_rows_after_sealing_are_read_and_sealed_again(tmp_path):
    batches = shuffled_batches()
    path = str(tmp_path / "f.db")
    w = WarmWriter(path, HOUR, 24, 64, seal_chunk_rows=1500)
    write(w, batches, range(20))
    assert w.seal_due(DUE) == 1
    write(w, batches, range(20, 24))  # late: the partition was sealed (1000 rows: under a block)
    assert tables(w) == {NAME} and w.partitions[NAME][5] == 0 and w.partitions[NAME][6] == 4 * 250
    flows = all_flows(batches, range(24))
    eng = engine(path, flows)
    answers(eng, flows)
    assert w.seal_due(DUE) == 1 and tables(w) == set()
    assert sum(b[0] for b in blocks(w)) == flows.count
    answers(eng, flows)
    eng.close()
    w.close()


def test_prune_drops_blocks_at_once_and_their_columns_in_chunks(tmp_path):
    batches = shuffled_batches()
    w = WarmWriter(str(tmp_path / "f.db"), HOUR, 24, 64, seal_chunk_rows=20)
    write(w, batches, range(12))
    assert w.seal_due(DUE) == 1
    n_blocks = len(blocks(w))
    assert n_blocks == 150
    assert w.prune(BASE + 10 * HOUR, HOUR, HOUR, HOUR) == [NAME]
    assert blocks(w) == [] and w.seal_pending()
    w.close()  # a restart before the columns are gone finds them and goes on
    w = WarmWriter(w.path, HOUR, 24, 64)
    assert w.seal_pending() and len(w.sealer.doomed_blocks) == n_blocks
    steps = 0
    while w.seal_step(BASE + 10 * HOUR):
        steps += 1
    assert w.db.execute("SELECT count(*) FROM block_columns").fetchone() == (0,) and steps >= 2
    assert w.db.execute("SELECT count(*) FROM block_stats").fetchone() == (0,)
    w.close()


def test_size_cap_drops_the_oldest_partitions_first(tmp_path):
    w = WarmWriter(str(tmp_path / "f.db"), HOUR, 24, 64, seal_chunk_rows=500)
    batches = shuffled_batches()
    seq = 1
    for h in range(6):  # six hours, one batch-set each
        for b in batches[:4]:
            moved = FlowBatch({**b.columns, "time_end": b["time_end"] + h * HOUR,
                               "time_start": b["time_start"] + h * HOUR})
            w.write_flows(with_seq(moved, seq))
            seq += moved.count
    w.seal_due(BASE + 8 * HOUR)
    used = w.used_bytes()
    names = sorted(w.partitions, key=lambda n: w.partitions[n][0])
    cap = used - 1  # just under: the oldest partition or two must go
    dropped = w.prune(BASE + 8 * HOUR, 1000 * HOUR, 1000 * HOUR, 1000 * HOUR, max_bytes=cap)
    assert dropped and dropped == names[:len(dropped)] and len(dropped) < 6
    assert w.size_pruned_partitions == len(dropped) and w.size_pruned_flows == 1000 * len(dropped)
    # nothing left to do under a cap the file already meets
    assert w.prune(BASE + 8 * HOUR, 1000 * HOUR, 1000 * HOUR, 1000 * HOUR, max_bytes=1 << 40) == []
    w.close()


def test_writer_thread_seals_in_steps_while_rows_keep_arriving(tmp_path):
    """A real writer thread: the due partition (its hour is long past on the wall clock) is moved in many
    steps between flow transactions that keep adding rows to it; every row ends in a block."""
    batches = shuffled_batches()
    warm = reopened(str(tmp_path / "f.db"), batches, range(12), 250)
    wr = Writer(warm, 64, 50_000, 3600, 1000 * 86_400_000, 1000 * 86_400_000, 1000 * 86_400_000)
    wr._next_seal = time.monotonic()  # first seal check now, not 5 s after start
    wr.start()
    wait_until(lambda: warm.seal_pending() or wr.seal_steps > 0, 10)
    for i in range(12, 24):  # late rows for the partition while it is being moved
        assert wr.offer(with_seq(batches[i], seq0(i)))
    wait_until(lambda: wr.committed == 12 * 250 and warm.partitions[NAME][5] and not warm.seal_pending(), 20)
    wr.stop()
    assert wr.write_errors == 0 and wr.maintain_errors == 0 and wr.seal_steps >= 1
    w = WarmWriter(warm.path, HOUR, 24, 64)
    seqs = sorted(s for _r, lo, hi in blocks(w) for s in (lo, hi))
    assert sum(b[0] for b in blocks(w)) == 24 * 250 and seqs[0] == 1 and tables(w) == set()
    w.close()


OLD_HOUR = (BASE // HOUR) * HOUR - 100 * HOUR
LEGACY_HOURLY = [("exporter", OLD_HOUR, "127.0.0.1", 1000, 10, 3, 5000, 50),
                 ("exporter", OLD_HOUR, "2001:db8::7", 7, 1, 1, 7, 1),
                 ("dst_prefix", OLD_HOUR, "192.168.4.0/24", 600, 6, 2, 600, 6),
                 ("dst_prefix", OLD_HOUR + HOUR, "2001:db8::/64", 900, 9, 3, 900, 9)]


def _layout1(w: WarmWriter) -> None:
    """Make the file what the previous layout left: indexed sealed row tables, no blocks, no hot_rows."""
    db = w.db
    db.execute(f"CREATE INDEX {NAME}_te ON {NAME} (time_end)")
    db.execute(f"CREATE INDEX {NAME}_sseg ON {NAME} (seq >> 16, src_addr, time_end)")
    db.execute(f"CREATE INDEX {NAME}_dseg ON {NAME} (seq >> 16, dst_addr, time_end)")
    db.execute("UPDATE partitions SET sealed = 1")
    db.execute("DELETE FROM spans")
    db.execute("DELETE FROM meta WHERE key = 'layout'")
    for t in ("blocks", "block_stats", "block_columns", "hists"):
        db.execute(f"DROP TABLE {t}")
    db.execute("ALTER TABLE partitions DROP COLUMN hot_rows")
    # its SQL rollup tables, with an hour whose flows were pruned long ago
    db.execute("CREATE TABLE rollups (kind TEXT NOT NULL, minute_ms INTEGER NOT NULL, key TEXT NOT NULL, "
               "bytes INTEGER NOT NULL, packets INTEGER NOT NULL, flows INTEGER NOT NULL, sbytes INTEGER NOT NULL "
               "DEFAULT 0, spackets INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (kind, minute_ms, key)) WITHOUT ROWID")
    db.execute("CREATE TABLE rollups_hourly (kind TEXT NOT NULL, hour_ms INTEGER NOT NULL, key TEXT NOT NULL, "
               "bytes INTEGER NOT NULL, packets INTEGER NOT NULL, flows INTEGER NOT NULL, sbytes INTEGER NOT NULL, "
               "spackets INTEGER NOT NULL, PRIMARY KEY (kind, hour_ms, key)) WITHOUT ROWID")
    db.executemany("INSERT INTO rollups_hourly VALUES (?, ?, ?, ?, ?, ?, ?, ?)", LEGACY_HOURLY)


def test_file_of_the_older_layout_is_migrated_and_sealed_into_blocks(tmp_path):
    batches = shuffled_batches()
    path = str(tmp_path / "f.db")
    w = WarmWriter(path, HOUR, 24, 64)
    write(w, batches, range(24))
    _layout1(w)
    w.close()
    flows = all_flows(batches, range(24))
    w = WarmWriter(path, HOUR, 24, 64, seal_chunk_rows=1000)
    idx = {r[0] for r in w.db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", (NAME,))}
    assert idx == set() and w.partitions[NAME][5:] == [0, flows.count]
    assert w.db.execute("SELECT value FROM meta WHERE key = 'layout'").fetchone() == (2,)
    assert not {"rollups", "rollups_hourly"} & {r[0] for r in w.db.execute("SELECT name FROM sqlite_master")}
    eng = engine(path, flows)
    old = {kind: eng.rollups({"kind": kind, "since": OLD_HOUR, "until": OLD_HOUR + 2 * HOUR, "step": 3600,
                              "scaled": scaled})["rows"] for kind in ("exporter", "dst_prefix") for scaled in (False,)}
    assert list(zip(old["exporter"]["minute"], old["exporter"]["key"], old["exporter"]["bytes"])) == \
        [(OLD_HOUR, "127.0.0.1", 1000), (OLD_HOUR, "2001:db8::7", 7)]
    assert list(zip(old["dst_prefix"]["minute"], old["dst_prefix"]["key"], old["dst_prefix"]["flows"])) == \
        [(OLD_HOUR, "192.168.4.0/24", 2), (OLD_HOUR + HOUR, "2001:db8::/64", 3)]
    scaled = eng.rollups({"kind": "exporter", "since": OLD_HOUR, "until": OLD_HOUR + HOUR, "step": 3600,
                          "scaled": True})["rows"]
    assert scaled["bytes"] == [5000, 7]
    answers(eng, flows)  # migrated, still rows
    assert w.seal_due(DUE) == 1 and sum(b[0] for b in blocks(w)) == flows.count and tables(w) == set()
    answers(eng, flows)
    eng.close()
    w.close()


SEAL_FOREVER = """
import sys
sys.path[:0] = {paths!r}
from test_seal import *
batches = shuffled_batches()
w = WarmWriter({path!r}, HOUR, 24, 64, seal_chunk_rows=37)
print("ready", flush=True)
while w.seal_step(DUE) or w.sealer.due(DUE):
    pass
print("done", flush=True)
"""


def test_sigkill_mid_seal_leaves_a_readable_file_that_is_finished_on_restart(tmp_path):
    batches = shuffled_batches()
    path = str(tmp_path / "f.db")
    w = WarmWriter(path, HOUR, 24, 64)
    write(w, batches, range(24))
    w.close()
    flows = all_flows(batches, range(24))
    here = os.path.dirname(__file__)
    code = SEAL_FOREVER.format(paths=[here, os.path.join(here, "..", "..")], path=path)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    probe = WarmWriter.__new__(WarmWriter)  # count blocks from a reader connection while it runs
    import sqlite3
    db = sqlite3.connect(path, timeout=10)
    wait_until(lambda: db.execute("SELECT count(*) FROM blocks").fetchone()[0] >= 20, 30, 0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    moved = db.execute("SELECT sum(rows) FROM blocks").fetchone()[0]
    db.close()
    del probe
    assert 0 < moved < flows.count, "killed after the seal finished: the test needs a slower step"
    eng = engine(path, flows)
    answers(eng, flows)  # every flow once: blocks and what is left of the rows
    w = WarmWriter(path, HOUR, 24, 64, seal_chunk_rows=500)
    assert w.db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert w.partitions[NAME][6] == flows.count - moved
    assert w.seal_due(DUE) == 1 and tables(w) == set()
    answers(eng, flows)
    eng.close()
    w.close()


def test_blocks_are_cut_from_memory_as_rows_arrive_and_equal_the_rows(tmp_path):
    """A partition written from empty is mirrored in memory: every block_rows rows become a block
    before the hour ends (without reading the rows back), the rest when it is due; rollups are summed
    as the blocks are cut. The answers equal a file of plain rows, and a restart (mirror lost) goes on
    from the row table."""
    batches = shuffled_batches()
    path = str(tmp_path / "f.db")
    w = WarmWriter(path, HOUR, 24, 64, seal_chunk_rows=600)
    write(w, batches, range(10))  # 2500 rows
    w.seal_step(BASE)  # not due yet: the full mirror is cut anyway
    while w.seal_pending():
        w.seal_step(BASE)
    assert [b[0] for b in blocks(w)] == [600] * 4 and w.partitions[NAME][6] == 100
    assert w.sealer.mirrors[NAME].rows == 100 and w.sealer.mirrors[NAME].fed == 4
    w.close()
    w = WarmWriter(path, HOUR, 24, 64, seal_chunk_rows=600)  # restart: the row table is read instead
    assert NAME not in w.sealer.mirrors
    write(w, batches, range(10, 24))
    flows = all_flows(batches, range(24))
    eng = engine(path, flows)
    answers(eng, flows)
    assert w.seal_due(DUE) == 1 and tables(w) == set()
    assert sum(b[0] for b in blocks(w)) == flows.count
    answers(eng, flows)
    assert w.db.execute("SELECT count(*) FROM hists WHERE start_ms = ?", (w.partitions[NAME][0],)).fetchone()[0] > 5
    eng.close()
    w.close()


def test_a_past_partition_still_receiving_rows_waits_until_they_stop(tmp_path):
    """A replay of a past hour keeps writing to a partition that is already due: it is sealed once
    quiet_s passed without rows, not after each batch (which would rebuild its rollups every time)."""
    batches = shuffled_batches()
    w = WarmWriter(str(tmp_path / "f.db"), HOUR, 24, 64, seal_chunk_rows=400, seal_quiet_s=0.5)
    write(w, batches, range(8))
    assert w.sealer.due(DUE) == []  # rows came just now
    w.seal_step(DUE)
    assert w.partitions[NAME][5] == 0 and NAME in tables(w)
    wait_until(lambda: w.sealer.due(DUE) == [NAME], 5, 0.05)
    assert w.seal_due(DUE) == 1 and tables(w) == set()
    w.close()
