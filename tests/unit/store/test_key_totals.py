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
