"""Every sFlow capture in tests/data decodes, flow sample by flow sample, to its tshark ground truth.

The truth (X.sflow.jsonl, written by tests/data/sflow_truth.py from tshark's dissection) is
compared with the decoder's columns datagram by datagram (as the collector receives them) and
with one decode of the whole capture at once (the array path over many datagrams).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flowlens_collector.decoders import sflow
from flowmodel import addr
from flowmodel.pcap import read_datagrams

DATA = Path(__file__).resolve().parents[2] / "data"
CAPTURES = sorted(p.name[: -len(".sflow.jsonl")] for p in DATA.glob("*.sflow.jsonl"))
COLUMNS = ("exporter", "observation_domain", "sampling_rate", "input_if", "output_if", "bytes", "src_addr",
           "dst_addr", "protocol", "src_port", "dst_port", "tcp_flags", "tos", "icmp_type", "icmp_code", "vlan",
           "next_hop", "src_mask", "dst_mask", "src_as", "dst_as")
ADDRESSES = ("exporter", "src_addr", "dst_addr", "next_hop")
NOW_MS = 1_700_000_000_000


def _truth(stem: str) -> list[dict]:
    rows = [json.loads(line) for line in (DATA / f"{stem}.sflow.jsonl").read_text().splitlines()]
    return [{c: (r.get(c) or "::") if c in ADDRESSES else r.get(c, 0) for c in COLUMNS} | {"frame": r["frame"]}
            for r in rows]


def _rows(result: sflow.SflowResult, frames: list[int]) -> list[dict]:
    cols = result.columns
    out = []
    for i in range(len(result.flow_datagram)):
        row = {c: addr.to_text(bytes(cols[c][i])) if c in ADDRESSES else int(cols[c][i]) for c in COLUMNS}
        row["frame"] = frames[int(result.flow_datagram[i])]
        out.append(row)
    return out


def _normal(rows: list[dict]) -> list[dict]:
    return [{k: addr.to_text(addr.to_bytes(v)) if k in ADDRESSES else v for k, v in r.items()} for r in rows]


def test_sflow_captures_present():
    assert len([c for c in CAPTURES if c.startswith("pmacct_sflow")]) == 10
    assert len([c for c in CAPTURES if c.startswith("akvorado_sflow")]) == 11
    assert len([c for c in CAPTURES if c.startswith("goflow2_sflow")]) == 2


@pytest.mark.parametrize("stem", CAPTURES)
def test_capture_matches_tshark(stem):
    datagrams = list(read_datagrams(str(DATA / f"{stem}.pcap")))
    frames = [d.frame for d in datagrams]
    truth = _normal(_truth(stem))
    assert truth, "a capture without flow samples proves nothing"
    one_by_one = []
    for d in datagrams:
        result = sflow.decode_datagrams([d.payload], NOW_MS)
        assert result.datagrams["status"].tolist() == [sflow.OK]
        one_by_one += _rows(result, [d.frame])
    assert one_by_one == truth
    whole = sflow.decode_datagrams([d.payload for d in datagrams], NOW_MS)
    assert (whole.datagrams["status"] == sflow.OK).all()
    assert _rows(whole, frames) == truth
    batch = whole.batch()
    assert (batch["packets"] == 1).all()
    assert (batch["flow_version"] == sflow.FLOW_VERSION).all()
    assert (batch["time_start"] == NOW_MS).all() and (batch["time_end"] == NOW_MS).all()


@pytest.mark.parametrize("stem", [c for c in CAPTURES if c.startswith("pmacct_sflow")])
def test_pmacct_sequences_and_samples(stem):
    """pmacct numbers its datagrams 1, 2, ... and its samples of one source likewise, none lost."""
    datagrams = [d.payload for d in read_datagrams(str(DATA / f"{stem}.pcap"))]
    result = sflow.decode_datagrams(datagrams, NOW_MS)
    truth = _truth(stem)
    assert result.datagrams["sequence"].tolist() == list(range(1, len(datagrams) + 1))
    assert int(result.datagrams["flows"].sum()) == len(truth)
    seq = result.samples["sequence"].astype(np.int64)
    assert (np.diff(seq) == 1).all() and seq[0] == 1
    assert set(result.samples["source_id"].tolist()) == {1}  # pmacct's data source: class 0, index 1
    assert set(result.columns["sampling_rate"].tolist()) == ({4} if "sampled" in stem else {1})
    assert set(result.columns["input_if"].tolist()) == {3}  # sfprobe_ifindex: 3


def test_goflow2_drop_samples():
    """goflow2's drop-sample datagrams (sample format 5, not decoded into flows): the two whose XDR
    holds together are skipped and noted; the third pads neither its string nor its sample length
    to 4 bytes (a sample length of 50), which XDR requires, and is rejected whole."""
    datagrams = [d.payload for d in read_datagrams(str(DATA / "goflow2_sflow_drops.pcap"))]
    result = sflow.decode_datagrams(datagrams, NOW_MS)
    assert [sflow.REASONS[s] for s in result.datagrams["status"]] == ["ok", "ok", "truncated_sample"]
    assert len(result.flow_datagram) == 0
    assert result.notes["sample_format_unknown"].tolist() == [0, 1]
