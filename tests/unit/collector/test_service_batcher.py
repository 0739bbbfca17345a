"""Batcher: cut by size or age, split by export version, bounded batch size."""
import numpy as np

from flowlens_collector.batcher import Batcher, split_by_version
from flowmodel.schema import FlowBatch


def batch(n: int, version: int = 5, start: int = 0) -> FlowBatch:
    b = FlowBatch.empty(n)
    b.columns["flow_version"][:] = version
    b.columns["bytes"][:] = np.arange(start, start + n)
    return b


def test_nothing_pending_is_never_due():
    b = Batcher(max_flows=10, max_age_ms=200)
    assert not b.due(10**12)
    assert b.ms_until_due(0) is None
    assert b.take() == []


def test_due_by_size():
    b = Batcher(max_flows=10, max_age_ms=10_000)
    b.add(batch(6), now_ms=1000)
    assert not b.due(1001)
    b.add(batch(4), now_ms=1002)
    assert b.due(1002)


def test_due_by_age_of_the_oldest_flow():
    b = Batcher(max_flows=1000, max_age_ms=200)
    b.add(batch(1), now_ms=1000)
    b.add(batch(1), now_ms=1150)
    assert b.ms_until_due(1100) == 100
    assert not b.due(1199)
    assert b.due(1200)


def test_take_keeps_order_and_empties():
    b = Batcher(max_flows=100, max_age_ms=200)
    b.add(batch(3, start=0), 0)
    b.add(batch(2, start=3), 1)
    (version, parts), = b.take()
    assert version == 5
    assert FlowBatch.concat(parts)["bytes"].tolist() == [0, 1, 2, 3, 4]
    assert b.count == 0 and b.ms_until_due(5) is None


def test_take_splits_by_version_and_bounds_the_size():
    b = Batcher(max_flows=4, max_age_ms=200)
    b.add(batch(5, version=9, start=0), 0)
    b.add(batch(3, version=10, start=5), 0)
    out = [(v, FlowBatch.concat(parts)) for v, parts in b.take()]
    assert [(v, p.count) for v, p in out] == [(9, 4), (9, 1), (10, 3)]
    assert [p["bytes"].tolist() for _v, p in out] == [[0, 1, 2, 3], [4], [5, 6, 7]]


def test_empty_batches_are_ignored():
    b = Batcher(max_flows=4, max_age_ms=200)
    b.add(FlowBatch.empty(0), 0)
    assert b.count == 0 and not b.due(10**9)


def test_split_by_version_one_version_is_the_same_batch():
    one = batch(3, version=10)
    assert split_by_version(one) == [(10, one)]


def test_batches_end_where_parts_end_and_parts_are_not_joined():
    b = Batcher(max_flows=4, max_age_ms=200)
    for start, n in ((0, 3), (3, 3), (6, 1), (7, 9)):
        b.add(batch(n, start=start), 0)
    out = b.take()
    # 3 | 3+1 | 9 cut into 4+4+1: only the part larger than a batch is cut
    assert [[p.count for p in parts] for _v, parts in out] == [[3], [3, 1], [4], [4], [1]]
    assert [x for _v, parts in out for x in FlowBatch.concat(parts)["bytes"].tolist()] == list(range(16))


def test_mixed_versions_inside_one_part_keep_their_order():
    b = Batcher(max_flows=100, max_age_ms=200)
    part = batch(4)
    part.columns["flow_version"][:] = [9, 10, 9, 10]
    b.add(part, 0)
    b.add(batch(2, version=10, start=4), 0)
    out = {v: FlowBatch.concat(parts)["bytes"].tolist() for v, parts in b.take()}
    assert out == {9: [0, 2], 10: [1, 3, 4, 5]}
