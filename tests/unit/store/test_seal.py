"""Sealing in bounded steps (warm.WarmWriter.seal_step): the partition is copied chunk by chunk into
``<name>_sealing`` (indexes built as it grows), swapped in when the copy has caught up, and the old
table deleted in chunks. The result must answer every query exactly as a partition sealed the old
way (three CREATE INDEX on the table itself), also with rows arriving mid-copy, across a restart
mid-copy, and while the copy is under way."""
import time

import numpy as np
import pytest

from flowlens_store.queries import QueryEngine
from flowlens_store.ring import Ring
from flowlens_store.warm import SEG_BITS, WarmWriter, partition_name
from flowlens_store.writer import Writer
from flowmodel.schema import FlowBatch
from support.services import wait_until

from store_testdata import with_seq
from test_planner import FILTERS, mask_for, page_keys, walk, walk_back, want_keys
from test_spans import BASE, HOUR, WINDOWS, shuffled_batches

NAME = partition_name((BASE // HOUR) * HOUR)
SEQ_STEP = 30_000  # batch i starts at seq 1 + i * SEQ_STEP: 24 batches cross about 11 index segments
SEALED_IDX = {f"{NAME}_te", f"{NAME}_sseg", f"{NAME}_dseg"}


def seq0(i: int) -> int:
    return 1 + i * SEQ_STEP


def write(w: WarmWriter, batches, idx) -> None:
    for i in idx:
        w.write_flows(with_seq(batches[i], seq0(i)))


def old_seal(w: WarmWriter, name: str) -> None:
    """What seal_due did before sealing in steps: three CREATE INDEX on the partition itself."""
    w.db.execute(f"CREATE INDEX {name}_time ON {name} (time_end)")
    w.db.execute(f"CREATE INDEX {name}_src ON {name} (src_addr, time_end)")
    w.db.execute(f"CREATE INDEX {name}_dst ON {name} (dst_addr, time_end)")
    w.db.execute("BEGIN")
    w.db.execute("UPDATE partitions SET sealed = 1 WHERE name = ?", (name,))
    w.db.execute("DELETE FROM spans WHERE part = ?", (name,))
    w.db.execute("COMMIT")
    w.partitions[name][5] = 1


def engine(path: str, flows: FlowBatch) -> QueryEngine:
    ring = Ring(10)
    ring.evicted_max_time_end = int(flows["time_end"].max())  # SQLite answers everything
    return QueryEngine(ring, path, 600_000, 10_000, 5.0, clock=lambda: BASE + 10 * HOUR)


def all_flows(batches, idx) -> FlowBatch:
    flows = FlowBatch.concat([batches[i] for i in idx])
    flows.columns["seq"] = np.concatenate([np.arange(seq0(i), seq0(i) + batches[i].count) for i in idx])
    return flows


def table_rows(w: WarmWriter, table: str = NAME) -> list[tuple]:
    return w.db.execute(f"SELECT * FROM {table} ORDER BY seq").fetchall()


def tables(w: WarmWriter) -> set[str]:
    return {r[0] for r in w.db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'flows_%'")}


def indexes(w: WarmWriter) -> set[str]:
    return {r[0] for r in w.db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", (NAME,))}


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


@pytest.fixture(scope="module")
def sealed_both(tmp_path_factory):
    """The same 24 batches in two files: one sealed the old way after all rows arrived, one sealed in
    300-row steps with the last 8 batches written after the copy had started."""
    batches = shuffled_batches()
    d = tmp_path_factory.mktemp("seal")
    old = WarmWriter(str(d / "old.db"), HOUR, 24, 64, span_rows=500)
    write(old, batches, range(24))
    old_seal(old, NAME)
    new = WarmWriter(str(d / "new.db"), HOUR, 24, 64, span_rows=500, seal_chunk_rows=300)
    write(new, batches, range(16))
    for _ in range(6):
        assert new.seal_step(BASE + 2 * HOUR)
    assert 0 < len(table_rows(new, f"{NAME}_sealing")) < 16 * 250
    write(new, batches, range(16, 24))  # rows arriving for the partition mid-copy
    assert new.seal_due(BASE + 2 * HOUR) == 1
    flows = all_flows(batches, range(24))
    yield old, new, flows
    old.close()
    new.close()


def test_chunked_seal_holds_the_same_rows_with_the_new_indexes(sealed_both):
    old, new, flows = sealed_both
    assert table_rows(new) == table_rows(old)
    assert len(table_rows(new)) == flows.count
    assert indexes(new) == SEALED_IDX
    assert indexes(old) == {f"{NAME}_time", f"{NAME}_src", f"{NAME}_dst"}
    assert tables(new) == {NAME} and not new.seal_pending()
    assert new.db.execute("SELECT sealed FROM partitions WHERE name = ?", (NAME,)).fetchone() == (1,)
    assert new.db.execute("SELECT count(*) FROM spans").fetchone() == (0,)
    segs = {int(s) >> SEG_BITS for s in flows["seq"]}
    assert len(segs) > 5  # the address indexes' segments are really exercised


@pytest.mark.parametrize("which", ["old", "new"])
def test_chunk_sealed_and_old_sealed_answer_every_query_alike(sealed_both, which):
    old, new, flows = sealed_both
    eng = engine((old if which == "old" else new).path, flows)
    answers(eng, flows)
    eng.close()


def test_address_filter_seeks_the_segmented_index(sealed_both):
    _old, new, flows = sealed_both
    eng = engine(new.path, flows)
    db = eng.db
    src = {"src": "10.0.3.0/24"}
    from flowlens_store import planner as P
    f = P.parse_filters(src, eng.clock())
    where, params = eng._where(db, NAME, True, f)
    assert f"(seq >> {SEG_BITS}) IN (" in where
    plan = " ".join(r[-1] for r in db.execute(f"EXPLAIN QUERY PLAN SELECT seq FROM {NAME} WHERE {where}", params))
    assert f"{NAME}_sseg" in plan
    eng.close()


def test_queries_during_the_copy_are_complete_and_a_restart_resumes_it(tmp_path):
    batches = shuffled_batches()
    path = str(tmp_path / "f.db")
    w = WarmWriter(path, HOUR, 24, 64, span_rows=500, seal_chunk_rows=400)
    write(w, batches, range(12))
    flows = all_flows(batches, range(12))
    eng = engine(path, all_flows(batches, range(24)))
    for _ in range(4):
        assert w.seal_step(BASE + 2 * HOUR)
    answers(eng, flows)  # half copied: queries still read the unsealed table through its spans
    copied = len(table_rows(w, f"{NAME}_sealing"))
    assert 0 < copied < flows.count
    w.close()  # a stop (or crash: each chunk is its own transaction) mid-copy

    w = WarmWriter(path, HOUR, 24, 64, span_rows=500, seal_chunk_rows=400)
    assert w.seal_pending() and len(table_rows(w, f"{NAME}_sealing")) == copied
    write(w, batches, range(12, 24))
    flows = all_flows(batches, range(24))
    while NAME not in {n for n, p in w.partitions.items() if p[5]}:
        w.seal_step(BASE + 2 * HOUR)
    assert f"{NAME}_old" in tables(w)  # swapped; the replaced table is deleted in later steps
    answers(eng, flows)
    w.close()  # stop before the old table is gone

    w = WarmWriter(path, HOUR, 24, 64, span_rows=500, seal_chunk_rows=400)
    assert w.seal_pending()
    assert w.seal_due(BASE + 2 * HOUR) == 0 and not w.seal_pending()
    assert tables(w) == {NAME} and indexes(w) == SEALED_IDX
    assert [r[0] for r in table_rows(w)] == flows["seq"].tolist()
    answers(eng, flows)
    eng.close()
    w.close()


def test_prune_mid_copy_drops_the_copy_and_deletes_the_table_in_chunks(tmp_path):
    batches = shuffled_batches()
    w = WarmWriter(str(tmp_path / "f.db"), HOUR, 24, 64, seal_chunk_rows=500)
    write(w, batches, range(8))
    assert w.seal_step(BASE + 2 * HOUR) and w.seal_step(BASE + 2 * HOUR)
    assert f"{NAME}_sealing" in tables(w)
    assert w.prune(BASE + 10 * HOUR, HOUR, HOUR, HOUR) == [NAME]
    assert tables(w) == {f"{NAME}_pruned"} and w.seal_pending()
    w.close()  # a restart before the pruned table is gone goes on deleting it
    w = WarmWriter(w.path, HOUR, 24, 64, seal_chunk_rows=500)
    assert w.seal_pending() and w.partitions == {}
    steps = 0
    while w.seal_step(BASE + 10 * HOUR):
        steps += 1
    assert tables(w) == set() and steps >= 2  # 2000 rows in 1000-row deletes, then the DROP
    w.close()


def test_writer_thread_seals_in_steps_while_rows_keep_arriving(tmp_path):
    """A real writer thread: the due partition (its hour is long past on the wall clock) is sealed in
    many steps between flow transactions that keep adding rows to it; every row ends in the sealed table."""
    batches = shuffled_batches()
    warm = WarmWriter(str(tmp_path / "f.db"), HOUR, 24, 64, seal_chunk_rows=500)
    write(warm, batches, range(12))
    wr = Writer(warm, 64, 50_000, 3600, 1000 * 86_400_000, 1000 * 86_400_000, 1000 * 86_400_000)
    wr._next_seal = time.monotonic()  # first seal check now, not 5 s after start
    wr.start()
    wait_until(lambda: warm.seal_pending() or wr.seal_steps > 0, 10)
    for i in range(12, 24):  # late rows for the partition while it is being copied
        assert wr.offer(with_seq(batches[i], seq0(i)))
    wait_until(lambda: wr.committed == 12 * 250 and warm.partitions[NAME][5] and not warm.seal_pending(), 20)
    wr.stop()
    assert wr.write_errors == 0 and wr.seal_steps >= 12
    assert wr.seal_step_max_s > 0
    w = WarmWriter(warm.path, HOUR, 24, 64)
    assert [r[0] for r in table_rows(w)] == all_flows(batches, range(24))["seq"].tolist()
    assert indexes(w) == SEALED_IDX and tables(w) == {NAME}
    w.close()


def test_older_layout_partition_with_a_time_index_seals_without_a_name_clash(tmp_path):
    """Versions before spans kept <name>_time on the unsealed partition: sealing copies it away and the
    replaced table takes that index with it."""
    batches = shuffled_batches()
    w = WarmWriter(str(tmp_path / "f.db"), HOUR, 24, 64, seal_chunk_rows=700)
    write(w, batches, range(6))
    w.db.execute(f"CREATE INDEX {NAME}_time ON {NAME} (time_end)")
    assert w.seal_due(BASE + 2 * HOUR) == 1
    assert indexes(w) == SEALED_IDX and tables(w) == {NAME}
    assert [r[0] for r in table_rows(w)] == all_flows(batches, range(6))["seq"].tolist()
    w.close()


def test_prune_drops_a_partition_sealed_the_old_way_at_once(tmp_path):
    batches = shuffled_batches()
    w = WarmWriter(str(tmp_path / "f.db"), HOUR, 24, 64)
    write(w, batches, range(4))
    old_seal(w, NAME)
    assert w.prune(BASE + 10 * HOUR, HOUR, HOUR, HOUR) == [NAME]
    assert tables(w) == set() and not w.seal_pending()
    w.close()
