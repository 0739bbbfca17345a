"""Every NetFlow v9 and IPFIX capture of the corpus decodes to exactly its tshark ground truth."""
from __future__ import annotations

import json

import pytest

from collector_truth import DATA, captures, check_capture, reverse_records

TEMPLATED_FILES = captures((9, 10))


def test_templated_corpus_present():
    assert len(TEMPLATED_FILES) >= 36
    assert reverse_records("akvorado_ipfix_ipfixprobe") == 2  # its biflows with a reverse direction


@pytest.mark.parametrize("stem", TEMPLATED_FILES)
def test_capture_matches_tshark(stem):
    totals = json.loads((DATA / f"{stem}.totals.json").read_text())
    total, dec = check_capture(stem)
    stats = dec.exporter_stats()
    reverse = reverse_records(stem)  # RFC 5103 biflow records with reverse traffic: two flows each
    assert sum(s["reverse_flows"] for s in stats) == reverse
    assert total == totals["flow_records"] + reverse
    assert sum(s["packets"] for s in stats) == totals["export_packets"]
    assert sum(s["flows"] for s in stats) == totals["flow_records"]
    errors = {k: v for s in stats for k, v in s["decode_errors"].items()}  # no-time-base flows are time_unknown
    assert errors == {}
    assert all(s["pending_sets"] == 0 and s["pending_dropped"] == {} for s in stats)
