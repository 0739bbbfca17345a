"""Property-based fuzzing of the decoders with mutated real corpus packets.

Each example takes real export datagrams from tests/data (v5, v9, IPFIX), mutates one of them (bit
flips, truncation, a 16-bit length/count/id overwritten, a template-id flood, spliced tails) and
decodes it after the capture's first packets (so templates are known and the data paths run). The
decoder must never raise, never hit its internal-error path, and keep its state within its bounds.
``FLOWLENS_FUZZ_EXAMPLES`` sets the example count (``make fuzz`` runs 10,000; its 1,000,000 cases
per decoder come from the mutation driver, bench/fuzz.py).
"""
from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowlens_collector.decode import Decoder
from flowlens_collector.decoders.pending import PENDING_SET_OVERHEAD
from flowmodel.pcap import read_datagrams

DATA = Path(__file__).resolve().parents[1] / "data"
EXAMPLES = int(os.environ.get("FLOWLENS_FUZZ_EXAMPLES", "300"))
MAX_TEMPLATES = 64
PENDING_BYTES = 8192
PENDING_TOTAL_BYTES = 12288
TEMPLATE_FIELDS = 2048
LIMITS = dict(max_templates_per_exporter=MAX_TEMPLATES, pending_max_bytes=PENDING_BYTES, pending_max_age_ms=1_000,
              pending_total_max_bytes=PENDING_TOTAL_BYTES, template_fields_total_max=TEMPLATE_FIELDS)


def _load():
    caps = []
    for pcap in sorted(DATA.glob("*.pcap")):
        if not (DATA / (pcap.name[:-5] + ".totals.json")).exists():
            continue
        payloads = [d.payload for d in read_datagrams(str(pcap))][:12]
        if payloads and payloads[0][:2] in (b"\x00\x05", b"\x00\x09", b"\x00\x0a"):
            caps.append(payloads)
    return caps


CAPTURES = _load()
SOURCE = ("192.0.2.7", 2055)


def _flood(version: int, first_id: int, n: int) -> bytes:
    recs = b"".join(struct.pack(">HHHHHH", first_id + i, 2, 8, 4, 1, 4) for i in range(n))
    if version == 9:
        body = struct.pack(">HH", 0, 4 + len(recs)) + recs
        return struct.pack(">HHIIII", 9, n, 1, 1, 1, 0) + body
    body = struct.pack(">HH", 2, 4 + len(recs)) + recs
    return struct.pack(">HHIII", 10, 16 + len(body), 1, 1, 0) + body


@st.composite
def mutated(draw):
    cap = draw(st.sampled_from(CAPTURES))
    idx = draw(st.integers(0, len(cap) - 1))
    pkt = bytearray(cap[idx])
    kind = draw(st.sampled_from(["flip", "truncate", "word", "flood", "splice", "zero_run"]))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            pos = draw(st.integers(0, len(pkt) * 8 - 1))
            pkt[pos // 8] ^= 1 << (pos % 8)
    elif kind == "truncate":
        pkt = pkt[:draw(st.integers(0, len(pkt)))]
    elif kind == "word":
        for _ in range(draw(st.integers(1, 3))):
            pos = draw(st.integers(0, max(0, len(pkt) - 2)))
            value = draw(st.sampled_from([0, 1, 2, 3, 4, 255, 256, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF]) |
                         st.integers(0, 0xFFFF))
            pkt[pos:pos + 2] = struct.pack(">H", value)
    elif kind == "flood":
        version = 9 if pkt[:2] == b"\x00\x09" else 10
        pkt = bytearray(_flood(version, draw(st.integers(256, 65000)), draw(st.integers(1, 300))))
    elif kind == "splice":
        other = draw(st.sampled_from(CAPTURES))
        o = other[draw(st.integers(0, len(other) - 1))]
        cut = draw(st.integers(0, len(pkt)))
        pkt = pkt[:cut] + o[draw(st.integers(0, len(o))):]
    else:
        pos = draw(st.integers(0, len(pkt)))
        pkt[pos:pos + draw(st.integers(1, 64))] = bytes(draw(st.integers(1, 64)))
    return cap[:idx], bytes(pkt), draw(st.booleans()), cap[idx + 1:]


def _check_bounds(dec: Decoder) -> None:
    stats = dec.exporter_stats()
    for s in stats:
        assert "internal_error" not in s["decode_errors"], s
        assert s["templates"] <= MAX_TEMPLATES
    t = dec._templated
    assert all(v <= PENDING_BYTES for v in t.pending._bytes.values())
    held = [e for q in t.pending.queues.values() for e in q]
    charged = sum(len(e[0]) + PENDING_SET_OVERHEAD for e in held)
    assert charged == t.pending.total <= PENDING_TOTAL_BYTES and all(len(e[0]) for e in held)
    assert len(t.templates) <= MAX_TEMPLATES * 2
    assert sum(len(x.fields) for x in t.templates.values()) == t.store.total_fields <= TEMPLATE_FIELDS


@settings(max_examples=EXAMPLES, deadline=None, derandomize=False, database=None,
          suppress_health_check=list(HealthCheck))
@given(mutated())
def test_mutated_corpus_packets_never_raise_and_stay_bounded(case):
    before, pkt, same_call, after = case
    dec = Decoder(**LIMITS)
    if same_call:
        # repeated, so a mutated single-data-set datagram also goes through the array path for runs
        group = list(before) + [pkt] * 4 + list(after)
        batch = dec.decode(group, [SOURCE] * len(group), 1)
        # the same group read in place from receive slots, as the collector does: same result
        slot = max(map(len, group)) + 64
        buf = bytearray(slot * len(group))
        for k, d in enumerate(group):
            buf[k * slot:k * slot + len(d)] = d
        mv = memoryview(bytes(buf))
        in_place = Decoder(**LIMITS).decode(
            [mv[k * slot:k * slot + len(d)] for k, d in enumerate(group)], [SOURCE] * len(group), 1,
            (mv, np.arange(len(group), dtype=np.int64) * slot, np.array([len(d) for d in group], dtype=np.int64)))
        assert in_place.count == batch.count
        assert np.array_equal(np.sort(in_place["bytes"]), np.sort(batch["bytes"]))
    else:
        dec.decode(list(before), [SOURCE] * len(before), 1)
        batch = dec.decode([pkt, memoryview(pkt)], [SOURCE, ("2001:db8::7", 4739)], 2)
    assert all(len(col) == batch.count for col in batch.columns.values())
    dec.expire(10_000)
    _check_bounds(dec)
    state = dec.templates_state()
    assert Decoder(max_templates_per_exporter=MAX_TEMPLATES).load_templates_state(state) <= len(state["templates"])


def test_corpus_found():
    assert len(CAPTURES) >= 50, f"found {len(CAPTURES)} captures in {DATA}"
    print(f"fuzz examples: {EXAMPLES}", file=sys.stderr)
