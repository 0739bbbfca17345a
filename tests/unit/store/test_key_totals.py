"""histread.key_totals (a top's first pass, merged hour by hour) gives what the group-by fold over
histread.gather gives, on rollups capped to a few keys a bucket (so "other" rows are there) and on
windows cut into 1 h, 5 min and 1 min pieces."""
import numpy as np
import pytest

from flowlens_store import histread as H
from flowlens_store.histops import fold_values
from flowlens_store.layout import connect_reader
from flowlens_store.warm import WarmWriter

from store_testdata import T0, make_batch, with_seq

HOUR = 3_600_000
BASE = (T0 // HOUR) * HOUR


@pytest.fixture(scope="module", params=[200_000, 6])
def db(tmp_path_factory, request):
    path = str(tmp_path_factory.mktemp("keytotals") / "f.db")
    w = WarmWriter(path, HOUR, 24, 64, seal_chunk_rows=700)
    w.sealer.hist_max_keys = request.param
    for h in range(4):
        b = make_batch(1200, t0=BASE + h * HOUR + 999, spacing_ms=2950, seed=70 + h)
        cols = with_seq(b, 1 + h * 1200)
        w.write_flows(cols)
    assert w.seal_due(BASE + 4 * HOUR + 200_000) == 4
    reader = connect_reader(path)
    yield reader, request.param
    reader.close()
    w.close()


def as_dict(rows, names):
    k = rows["k"].reshape(len(rows["t"]), -1)
    return {(bool(o), *map(int, key)): tuple(int(rows[n][i]) for n in names)
            for i, (o, key) in enumerate(zip(rows["other"].tolist(), k.tolist()))}


@pytest.mark.parametrize("dim", ["src", "dst", "dst_port", "protocol"])
@pytest.mark.parametrize("window", [(BASE, BASE + 4 * HOUR), (BASE + 300_000, BASE + 3 * HOUR + 60_000),
                                    (BASE + 61_000, BASE + 2 * HOUR + 1_000)])
def test_key_totals_equal_the_gather_fold(db, dim, window):
    reader, max_keys = db
    names = ("sbytes", "flows")
    pl = H.plan(reader, dim, *window)
    assert pl.pieces
    want = H.gather(reader, dim, pl.pieces, fold=fold_values(names))
    got = H.key_totals(reader, dim, pl.pieces, names)
    assert as_dict(got, names) == as_dict(want, names)
    assert got["other"].any() == want["other"].any()
    if max_keys < 10 and dim in ("src", "dst"):
        assert got["other"].any(), "the capped rollups hold other rows"


@pytest.mark.parametrize("dim", ["src", "dst", "protocol"])
@pytest.mark.parametrize("window", [(BASE, BASE + 4 * HOUR), (BASE + 300_000, BASE + 3 * HOUR + 60_000),
                                    (BASE + 61_000, BASE + 2 * HOUR + 1_000)])
def test_key_totals_from_the_sealed_pieces_cache_are_the_same(db, dim, window):
    reader, _max_keys = db
    names = ("sbytes", "spackets", "flows")
    pl = H.plan(reader, dim, *window)
    assert any(p[2] == HOUR for p in pl.pieces), "the window holds whole hours"
    want = as_dict(H.key_totals(reader, dim, pl.pieces, names), names)
    cache = H.SealedTotals(8 << 20)
    first = H.key_totals(reader, dim, pl.pieces, names, cache=cache)
    again = H.key_totals(reader, dim, pl.pieces, names, cache=cache)
    assert cache.misses == cache.hits == (1 if window[0] % HOUR == window[1] % HOUR == 0 else 2), \
        "the hours and the edges are kept apart"
    assert as_dict(first, names) == want
    assert as_dict(again, names) == want


def test_sealed_pieces_cache_is_not_used_with_a_memo(db):
    reader, max_keys = db
    pl = H.plan(reader, "src", BASE, BASE + 4 * HOUR)
    cache, memo = H.SealedTotals(8 << 20), {}
    H.key_totals(reader, "src", pl.pieces, ("sbytes",), memo=memo, cache=cache)
    assert (cache.misses, cache.hits) == (0, 0)
    if max_keys > 1000:  # (hours with "other" rows are never remembered)
        assert len(memo) == 4, "explore's second pass still gets every hour remembered"


def test_sealed_pieces_cache_rereads_rewritten_blobs(db, tmp_path):
    """A blob written again (a new seal: a new rowid) is never answered from the old entry."""
    import sqlite3
    reader, _max_keys = db
    path = str(tmp_path / "copy.db")
    copy = sqlite3.connect(path, isolation_level=None)
    reader.backup(copy)
    names = ("sbytes", "flows")
    pl = H.plan(copy, "src", BASE, BASE + 4 * HOUR)
    cache = H.SealedTotals(8 << 20)
    before = as_dict(H.key_totals(copy, "src", pl.pieces, names, cache=cache), names)
    # hour 1's source rollup written again with hour 0's rows (their buckets outside hour 1): the sums change
    data = copy.execute("SELECT data FROM hists WHERE dim = 'src' AND step_ms = ? AND start_ms = ?",
                        (HOUR, BASE)).fetchone()[0]
    cur = copy.execute("SELECT * FROM hists WHERE dim = 'src' AND step_ms = ? AND start_ms = ?", (HOUR, BASE + HOUR))
    cols = [d[0] for d in cur.description]
    (old,) = cur.fetchall()
    copy.execute("DELETE FROM hists WHERE dim = 'src' AND step_ms = ? AND start_ms = ?", (HOUR, BASE + HOUR))
    copy.execute(f"INSERT INTO hists ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                 [data if c == "data" else v for c, v in zip(cols, old)])
    after = H.key_totals(copy, "src", pl.pieces, names, cache=cache)
    assert cache.misses == 2 and cache.hits == 0, "the rewritten blob's hours are merged again"
    assert as_dict(after, names) == as_dict(H.key_totals(copy, "src", pl.pieces, names), names)
    assert as_dict(after, names) != before
    # late rows unsealing and resealing a partition: its blobs may come back with the same rowids and
    # sizes, its row count has grown
    again = H.key_totals(copy, "src", pl.pieces, names, cache=cache)
    assert cache.hits == 1 and as_dict(again, names) == as_dict(after, names)
    copy.execute("UPDATE partitions SET rows = rows + 1 WHERE start_ms = ?", (BASE + 2 * HOUR,))
    H.key_totals(copy, "src", pl.pieces, names, cache=cache)
    assert cache.misses == 3 and cache.hits == 1, "a partition grown since is merged again"
    copy.close()


def test_sealed_pieces_cache_keeps_to_its_bound(db):
    reader, _max_keys = db
    cache = H.SealedTotals(1)  # smaller than any entry: nothing kept, every answer still right
    pl = H.plan(reader, "src", BASE, BASE + 4 * HOUR)
    names = ("sbytes",)
    got = H.key_totals(reader, "src", pl.pieces, names, cache=cache)
    H.key_totals(reader, "src", pl.pieces, names, cache=cache)
    assert cache.bytes == 0 and cache.misses == 2
    assert as_dict(got, names) == as_dict(H.key_totals(reader, "src", pl.pieces, names), names)


DAY = 86_400_000
MIDNIGHT = (T0 // DAY + 1) * DAY  # the UTC midnight after T0


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    """27 hourly partitions, 2 before a UTC midnight to 1 after the next: one whole day inside."""
    path = str(tmp_path_factory.mktemp("keytotaldays") / "f.db")
    w = WarmWriter(path, HOUR, 24, 64, seal_chunk_rows=700)
    first = MIDNIGHT - 2 * HOUR
    for h in range(27):
        w.write_flows(with_seq(make_batch(150, t0=first + h * HOUR + 999, spacing_ms=23_000, seed=300 + h), 1 + h * 150))
    assert w.seal_due(first + 27 * HOUR + 200_000) == 27
    reader = connect_reader(path)
    yield reader
    reader.close()
    w.close()


def test_a_whole_utc_day_is_cached_once_for_every_window_holding_it(days):
    names = ("sbytes", "spackets", "flows")
    cache = H.SealedTotals(8 << 20)
    windows = [(MIDNIGHT - 2 * HOUR, MIDNIGHT + 25 * HOUR), (MIDNIGHT - HOUR, MIDNIGHT + 24 * HOUR + 300_000),
               (MIDNIGHT, MIDNIGHT + 24 * HOUR)]
    for i, window in enumerate(windows):
        pl = H.plan(days, "src", *window)
        runs = H.day_runs([p for p in pl.pieces if p[2] == HOUR])
        assert [len(r) for r in runs] == [[2, 24, 1], [1, 24], [24]][i]
        hits = cache.hits
        got = H.key_totals(days, "src", pl.pieces, names, cache=cache)
        assert as_dict(got, names) == as_dict(H.key_totals(days, "src", pl.pieces, names), names)
        assert cache.hits - hits == (0 if i == 0 else 1), "the whole day is merged once, then found"
