"""`flowlens replay` sends sFlow v5 captures too, and still skips what only starts like sFlow."""
from __future__ import annotations

from pathlib import Path

import pytest

from flowmodel.pcap import read_datagrams
from flowmodel.replay import export_check

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.mark.parametrize("name", ["pmacct_sflow_dual", "akvorado_sflow_sflow-expanded-sample", "goflow2_sflow_expanded"])
def test_sflow_captures_are_exports(name):
    grams = list(read_datagrams(str(DATA / f"{name}.pcap")))
    assert grams and all(export_check(g.payload) is None for g in grams)


def test_what_only_starts_like_sflow_is_skipped():
    good = next(read_datagrams(str(DATA / "pmacct_sflow_dns.pcap"))).payload
    assert export_check(good[:20]) == "shorter than an sflow header"
    assert export_check(good[:-4]) == "sflow header does not fit the datagram"
    assert export_check(good + bytes(4)) is None  # trailing bytes after the samples: decoded all the same
    assert export_check(good[:4] + b"\0\0\0\x07" + good[8:]) == "not netflow/ipfix/sflow"
