"""Property-based fuzzing of the sFlow v5 decoder with mutated real sFlow datagrams.

Each example takes a real datagram of the sFlow captures in tests/data (pmacct's and Akvorado's),
mutates it (bit flips, truncation, a 32-bit word overwritten -- lengths, counts, formats, address
types all sit in such words --, spliced tails, zero runs) and decodes it between two good datagrams.
The decoder must never raise; its columns must agree in length; a malformed datagram must not
change what its neighbours decode; and decoding the group at once must give what decoding its
datagrams one by one gives (the array walk over many datagrams equals the walk over one).
``FLOWLENS_FUZZ_EXAMPLES`` sets the example count (``make fuzz`` runs 10,000; its 1,000,000 cases
per decoder come from the mutation driver, bench/fuzz.py).
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowlens_collector.decode import Decoder
from flowlens_collector.decoders import sflow
from flowmodel.pcap import read_datagrams

DATA = Path(__file__).resolve().parents[1] / "data"
EXAMPLES = int(os.environ.get("FLOWLENS_FUZZ_EXAMPLES", "300"))
NOW = 1_700_000_000_000


def _load() -> list[bytes]:
    out = []
    for truth in sorted(DATA.glob("*.sflow.jsonl")):
        pcap = DATA / (truth.name[: -len(".sflow.jsonl")] + ".pcap")
        out += [d.payload for d in read_datagrams(str(pcap))][:6]
    return out


DATAGRAMS = _load()
V5 = next(read_datagrams(str(DATA / "softflowd_v5_dns.pcap"))).payload
WORDS = [0, 1, 2, 3, 4, 5, 8, 12, 16, 0x3FFFFFFF, 0x40000000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFC, 0xFFFFFFFF]


@st.composite
def mutated(draw):
    pkt = bytearray(draw(st.sampled_from(DATAGRAMS)))
    kind = draw(st.sampled_from(["flip", "truncate", "word", "word", "splice", "zero_run"]))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            pos = draw(st.integers(0, len(pkt) * 8 - 1))
            pkt[pos // 8] ^= 1 << (pos % 8)
    elif kind == "truncate":
        pkt = pkt[:draw(st.integers(0, len(pkt)))]
    elif kind == "word":
        for _ in range(draw(st.integers(1, 3))):
            pos = 4 * draw(st.integers(0, max(0, len(pkt) // 4 - 1)))
            pkt[pos:pos + 4] = struct.pack(">I", draw(st.sampled_from(WORDS) | st.integers(0, 0xFFFFFFFF)))
    elif kind == "splice":
        other = draw(st.sampled_from(DATAGRAMS))
        pkt = pkt[:draw(st.integers(0, len(pkt)))] + other[draw(st.integers(0, len(other))):]
    else:
        pos = draw(st.integers(0, len(pkt)))
        pkt[pos:pos + draw(st.integers(1, 64))] = bytes(draw(st.integers(1, 64)))
    return draw(st.sampled_from(DATAGRAMS)), bytes(pkt), draw(st.sampled_from(DATAGRAMS))


def _flows(result: sflow.SflowResult) -> dict[str, np.ndarray]:
    return result.batch().columns


@settings(max_examples=EXAMPLES, deadline=None, derandomize=False, database=None,
          suppress_health_check=list(HealthCheck))
@given(mutated())
def test_mutated_sflow_datagrams_never_raise_and_stay_apart(case):
    before, pkt, after = case
    group = [before, pkt, after]
    result = sflow.decode_datagrams(group, NOW)
    n = len(result.flow_datagram)
    assert all(len(col) == n for col in result.columns.values())
    assert all(len(col) == n for col in result.samples.values())
    assert ((result.flow_datagram >= 0) & (result.flow_datagram < 3)).all()
    assert (np.diff(result.flow_datagram) >= 0).all()  # flows in datagram order
    status = result.datagrams["status"]
    assert status[0] == sflow.OK and status[2] == sflow.OK and status[1] < len(sflow.REASONS)
    assert result.datagrams["flows"].tolist() == np.bincount(result.flow_datagram, minlength=3).tolist()
    assert (status[result.counters["datagram"]] == sflow.OK).all()
    for notes in result.notes.values():
        assert (status[notes] == sflow.OK).all()
    # one at a time: the same flows, and the good neighbours untouched by the bad datagram
    parts = [sflow.decode_datagrams([d], NOW) for d in group]
    whole = _flows(result)
    for name, col in whole.items():
        assert np.array_equal(col, np.concatenate([_flows(p)[name] for p in parts])), name
    assert [int(p.datagrams["status"][0]) for p in parts] == status.tolist()
    counters = [p.counters for p in parts]
    for name, col in result.counters.items():
        if name != "datagram":
            assert np.array_equal(col, np.concatenate([c[name] for c in counters])), name
    # through the collector's decoder (with a NetFlow v5 datagram in the group): the same flows,
    # each datagram booked once, no internal error
    dec = Decoder()
    batch = dec.decode([V5, *group], [("192.0.2.8", 2055)] + [("192.0.2.7", 6343)] * 3, NOW)
    assert int((batch["flow_version"] == sflow.FLOW_VERSION).sum()) == n
    stats = dec.exporter_stats()
    assert all("internal_error" not in s["decode_errors"] for s in stats)
    booked = sum(s["packets"] for s in stats if s["version"] == sflow.FLOW_VERSION)
    assert booked == int((status == sflow.OK).sum())
    errors = sum(sum(s["decode_errors"].values()) for s in stats)
    assert sum(s["packets"] for s in stats) + errors == 4  # each datagram booked once, decoded or refused
    if pkt[:2] == b"\0\0":  # an sFlow version word: the collector's sFlow decoder refuses what this one does
        assert errors == int((status != sflow.OK).sum())
    # else a NetFlow/IPFIX version field (a mutation made it 00 05 00 05, say): that protocol's decoder
    # has it, and a well-formed v5 header there is a v5 datagram, not an sFlow error


def test_sflow_corpus_found():
    assert len(DATAGRAMS) >= 40, f"found {len(DATAGRAMS)} sFlow datagrams in {DATA}"
