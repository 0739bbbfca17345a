"""keymerge.KeyMerge: sums per key over runs equal a plain group-by of all the rows, whether the runs
come sorted and unique (hourly rollups), unsorted with repeats, or with keys whose leading words
differ (the fallback)."""
import numpy as np
import pytest

from flowlens_store.keymerge import KeyMerge


def plain(runs, width):
    totals = {}
    for k, vals in runs:
        for i, row in enumerate(map(tuple, k.reshape(-1, width).tolist())):
            cur = totals.setdefault(row, [0] * len(vals))
            for j, v in enumerate(vals):
                cur[j] += int(v[i])
    return totals


def merged(runs, width, nvalues):
    acc = KeyMerge(width, nvalues)
    for k, vals in runs:
        acc.add(k, vals)
    keys, sums = acc.result()
    assert keys.shape == (len(sums[0]), width)
    rows = list(map(tuple, keys.tolist()))
    assert rows == sorted(rows), "keys come out ascending"
    return {row: [int(s[i]) for s in sums] for i, row in enumerate(rows)}


def sorted_runs(rng, width, prefix, count, keys_per_run):
    runs = []
    for _ in range(count):
        last = np.unique(rng.integers(0, 5000, keys_per_run).astype(np.uint64))
        k = np.concatenate([np.tile(np.array(prefix, np.uint64), (len(last), 1)), last[:, None]], axis=1) \
            if width > 1 else last[:, None]
        runs.append((k, [rng.integers(0, 1 << 40, len(last)).astype(np.uint64),
                         rng.integers(0, 9, len(last)).astype(np.uint64)]))
    return runs


@pytest.mark.parametrize("width", [1, 2])
def test_sorted_unique_runs_sum_like_a_group_by(width):
    rng = np.random.default_rng(7)
    runs = sorted_runs(rng, width, [0xFFFF] * (width - 1), 30, 800)
    assert merged(runs, width, 2) == plain(runs, width)


def test_unsorted_runs_with_repeats():
    rng = np.random.default_rng(8)
    runs = []
    for _ in range(20):
        n = 500
        k = np.stack([np.zeros(n, np.uint64), rng.integers(0, 300, n).astype(np.uint64)], axis=1)
        runs.append((k, [rng.integers(0, 1000, n).astype(np.uint64)]))
    assert merged(runs, 2, 1) == plain(runs, 2)


def test_keys_with_different_leading_words_fall_back_exactly():
    rng = np.random.default_rng(9)
    runs = sorted_runs(rng, 2, [0xFFFF], 10, 600)
    runs += sorted_runs(rng, 2, [1 << 60], 5, 600)          # IPv6 keys after IPv4 ones
    mixed = np.stack([rng.integers(0, 3, 400), rng.integers(0, 50, 400)], axis=1).astype(np.uint64)
    runs.append((mixed, [rng.integers(0, 1 << 30, 400).astype(np.uint64),
                         np.ones(400, np.uint64)]))          # several leading words in one run
    runs += sorted_runs(rng, 2, [0xFFFF], 10, 600)
    assert merged(runs, 2, 2) == plain(runs, 2)


def test_nothing_added_gives_no_keys():
    keys, sums = KeyMerge(2, 3).result()
    assert keys.shape == (0, 2) and [len(s) for s in sums] == [0, 0, 0]
