"""Every NetFlow v9 and IPFIX capture of the corpus decodes to exactly its tshark ground truth."""
from __future__ import annotations

import json

import pytest

from collector_truth import DATA, captures, expected_by_frame, flow_tuples, load_datagrams
from flowlens_collector.decode import Decoder

TEMPLATED_FILES = captures((9, 10))


def check_capture(stem: str) -> tuple[int, Decoder]:
    datagrams = load_datagrams(stem)
    expected = expected_by_frame(stem, datagrams)
    dec = Decoder()
    total = 0
    for d in datagrams:
        batch = dec.decode([d.payload], [(d.src, d.sport)], now_ms=1_000)
        exp = expected.get(d.frame, {})
        has_times = not exp or next(iter(exp))[14] is not None
        got = flow_tuples(batch, has_times)
        assert got == exp, f"{stem} frame {d.frame}: missing {exp - got}, extra {got - exp}"
        total += batch.count
    return total, dec


def test_templated_corpus_present():
    assert len(TEMPLATED_FILES) >= 35


@pytest.mark.parametrize("stem", TEMPLATED_FILES)
def test_capture_matches_tshark(stem):
    totals = json.loads((DATA / f"{stem}.totals.json").read_text())
    total, dec = check_capture(stem)
    assert total == totals["flow_records"]
    stats = dec.exporter_stats()
    assert sum(s["packets"] for s in stats) == totals["export_packets"]
    assert sum(s["flows"] for s in stats) == totals["flow_records"]
    errors = {k: v for s in stats for k, v in s["decode_errors"].items() if k != "time_base_unknown"}
    assert errors == {}
    assert all(s["pending_records"] == 0 for s in stats)
