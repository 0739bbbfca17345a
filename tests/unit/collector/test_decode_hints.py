"""FlowBatch.hints are promises the bus codec trusts without looking: every hint a decoder gives
must hold for the columns it gave it with, on every real exporter's packets in the corpus."""
from __future__ import annotations

import numpy as np
import pytest

from collector_truth import captures, load_datagrams
from flowlens_collector.decode import Decoder
from flowmodel import bus
from flowmodel.schema import FLOW_COLUMNS, HINT_CONST, HINT_IPV4, FlowBatch

ALL_CAPTURES = captures((5, 9, 10))
MAPPED_PREFIX = bytes(10) + b"\xff\xff"


def check_hints(batch: FlowBatch, where: str) -> int:
    """Assert every hint of ``batch``; returns how many were checked."""
    for name, hint in batch.hints.items():
        col = batch.columns[name]
        if hint == HINT_CONST:
            assert (col == col[0]).all(), f"{where}: {name} hinted const, holds {len(np.unique(col))} values"
        elif hint == HINT_IPV4:
            raw = col.view(np.uint8).reshape(len(col), 16)
            assert (raw[:, :12] == np.frombuffer(MAPPED_PREFIX, np.uint8)).all(), f"{where}: {name} not IPv4-mapped"
        else:
            pytest.fail(f"{where}: unknown hint {hint!r} on {name}")
    return len(batch.hints)


def decode_in_groups(stem: str, group: int):
    datagrams = load_datagrams(stem)
    dec = Decoder()
    for i in range(0, len(datagrams), group):
        chunk = datagrams[i:i + group]
        batch = dec.decode([d.payload for d in chunk], [(d.src, d.sport) for d in chunk], now_ms=1_000)
        if batch.count:
            yield i, batch


def test_corpus_has_captures_of_every_version():
    assert len(ALL_CAPTURES) >= 40


@pytest.mark.parametrize("stem", ALL_CAPTURES)
def test_hints_hold_and_survive_the_bus(stem):
    checked = flows = 0
    for group in (1, 64):
        for i, batch in decode_in_groups(stem, group):
            flows += batch.count
            checked += check_hints(batch, f"{stem} group {group} at {i}")
            if batch.count >= bus.PACK_MIN_FLOWS or group == 64:
                _env, out = bus.decode_batch(bus.encode_batch(batch, bus.Sequencer("t")))
                for name in FLOW_COLUMNS:
                    assert np.array_equal(out[name], batch[name]), f"{stem}: {name} changed on the bus"
    assert checked > 0 or flows == 0, f"{stem}: {flows} flows and no hinted column at all"


def test_v5_hints_name_the_ipv4_address_columns():
    stem = next(s for s in ALL_CAPTURES if "v5" in s)
    _i, batch = next(decode_in_groups(stem, 64))
    assert {"src_addr", "dst_addr", "next_hop", "flow_version"} <= {k for k, v in batch.hints.items()}
    assert batch.hints["src_addr"] == HINT_IPV4 and batch.hints["flow_version"] == HINT_CONST
