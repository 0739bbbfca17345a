"""One table picks the decoder of each datagram (decode.DECODERS): a group mixing NetFlow v5, v9,
IPFIX, sFlow and what is none of them is cut into runs of one protocol, each decoded by its own
decoder, and the rest counted on its source."""
from __future__ import annotations

import numpy as np

from flowlens_collector import decode
from flowlens_collector.decode import (DECODERS, IPFIX, SFLOW, TRUNCATED, V5, V9, Decoder, protocol_runs, protocols,
                                       runs)
from packet_builders import BASIC_V4, EXP, basic_record, ipfix_packet, set_, tmpl_ipfix, tmpl_v9, v5_packet, v9_packet

SFLOW_HEADER = bytes.fromhex("00000005" "00000001" "c0000201" "00000000" "00000001" "00000000" "00000000")


def _layout(grams):
    lengths = np.array([len(g) for g in grams], np.int64)
    return b"".join(grams) + bytes(64), np.cumsum(lengths) - lengths, lengths


def test_every_protocol_has_one_decoder_and_datagrams_are_told_apart():
    assert set(DECODERS) == {V5, V9, IPFIX, SFLOW} and all(hasattr(Decoder, m) for m in DECODERS.values())
    grams = [v5_packet(1, 0), v5_packet(1, 1), v9_packet([]), ipfix_packet([]), SFLOW_HEADER, b"\x00\x07rest", b"\x05"]
    codes = protocols(*_layout(grams))
    assert codes.tolist() == [V5, V5, V9, IPFIX, SFLOW, 7, TRUNCATED]
    assert runs(codes) == [(0, 2, V5), (2, 3, V9), (3, 4, IPFIX), (4, 5, SFLOW), (5, 6, 7), (6, 7, TRUNCATED)]
    assert runs(np.array([V9] * 5)) == [(0, 5, V9)]
    assert protocol_runs(*_layout(grams)) == runs(codes)
    assert protocol_runs(*_layout([SFLOW_HEADER] * 3)) == [(0, 3, SFLOW)]
    assert protocol_runs(*_layout([ipfix_packet([])] * 3)) == [(0, 3, IPFIX)]


def test_a_mixed_group_decodes_each_run_with_its_decoder(monkeypatch):
    called = []
    for name in ("v5_run", "sflow_run"):
        mod = getattr(decode, name)
        real = mod.decode_run
        monkeypatch.setattr(mod, "decode_run", lambda *a, _real=real, _n=name: (called.append(_n), _real(*a))[1])
    real_t = decode.templated_run.decode_run
    monkeypatch.setattr(decode.templated_run, "decode_run",
                        lambda *a: (called.append(f"templated{a[5]}"), real_t(*a))[1])
    v9 = v9_packet([set_(0, tmpl_v9(300, [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 4), (2, 4)])),
                    set_(300, basic_record(nbytes=90))])
    ipfix = ipfix_packet([set_(2, tmpl_ipfix(301, BASIC_V4)), set_(301, basic_record(nbytes=100))])
    grams = [v5_packet(2, 0), v9, ipfix, v5_packet(1, 2), b"\x00\x63junk", b"\x01"]
    dec = Decoder()
    b = dec.decode(grams, [EXP] * len(grams), 0)
    assert called == ["v5_run", "templated9", "templated10", "v5_run"]
    assert sorted(b["flow_version"].tolist()) == [5, 5, 5, 9, 10]
    (st,) = [s for s in dec.exporter_stats() if s["observation_domain"] == 0 and s["exporter"] == EXP[0]]
    assert st["decode_errors"] == {"unsupported_version": 1, "truncated_header": 1}
