"""The decode benchmark's sFlow rates count what they say (bench/decode.py): flow samples decoded
into flow rows, through the Decoder and the pure decoder alike, and ``flow_samples`` (its plain
walk of the sample headers) finds each datagram's flow samples and nothing else."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from flowlens_collector.decoders import sflow
from flowmodel.pcap import read_datagrams

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from bench import decode as bench_decode  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "data"


def test_synthetic_switch_datagrams_carry_six_flow_samples_each():
    packets = bench_decode.sflow_packets(600, np.random.default_rng(1))
    assert len(packets) == 100
    assert [bench_decode.flow_samples(p) for p in packets] == [6] * 100
    assert np.array_equal(sflow.decode_datagrams(packets, 0).datagrams["flows"], np.full(100, 6))


def test_flow_samples_matches_the_decoder_on_captures_with_other_samples():
    # counter samples only (built), a sample of another kind among flow samples (pmacct sampled http)
    for stem in ("pmacct_sflow_dual", "pmacct_sflow-sampled_http", "built_sflow_if-counters",
                 "akvorado_sflow_sflow-expanded-sample"):
        datagrams = [d.payload for d in read_datagrams(str(DATA / f"{stem}.pcap"))]
        result = sflow.decode_datagrams(datagrams, 0)
        assert (result.datagrams["status"] == sflow.OK).all(), stem
        assert [bench_decode.flow_samples(d) for d in datagrams] == result.datagrams["flows"].tolist(), stem
    counters_only = [d.payload for d in read_datagrams(str(DATA / "built_sflow_if-counters.pcap"))]
    assert sum(map(bench_decode.flow_samples, counters_only)) == 0


def test_both_rates_count_flow_rows_not_datagrams():
    packets = bench_decode.sflow_packets(1200, np.random.default_rng(2))  # 200 datagrams
    for pure in (False, True):
        _seconds, samples = bench_decode.sflow_rate(packets, pure)
        assert samples == 1200, pure
