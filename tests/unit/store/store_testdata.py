"""Store unit-test helpers: synthetic flow batches with known sums (imported by the store tests)."""
from __future__ import annotations

import numpy as np

from flowmodel import addr
from flowmodel.schema import FlowBatch

T0 = 1_790_000_000_000  # a fixed flow time (ms), far from any real clock


def make_batch(n: int, t0: int = T0, spacing_ms: int = 10, seed: int = 0) -> FlowBatch:
    rng = np.random.default_rng(seed)
    b = FlowBatch.empty(n)
    te = t0 + np.arange(n, dtype=np.int64) * spacing_ms
    b.columns["time_end"][:] = te
    b.columns["time_start"][:] = te - 1000
    v4 = rng.integers(0, 256, (n, 2))
    b.columns["src_addr"][:] = addr.from_texts([f"10.0.{a}.{c}" for a, c in v4])
    dst = [f"192.168.{i % 4}.{i % 250 + 1}" if i % 5 else f"2001:db8::{i % 7:x}" for i in range(n)]
    b.columns["dst_addr"][:] = addr.from_texts(dst)
    b.columns["src_port"][:] = rng.integers(1024, 65535, n)
    b.columns["dst_port"][:] = rng.choice([53, 80, 443, 22], n)
    b.columns["protocol"][:] = rng.choice([6, 17], n)
    b.columns["bytes"][:] = rng.integers(40, 100_000, n)
    b.columns["packets"][:] = rng.integers(1, 100, n)
    b.columns["exporter"][:] = addr.from_texts([f"127.0.0.{1 + i % 2}" for i in range(n)])
    b.columns["tcp_flags"][:] = rng.integers(0, 64, n)
    b.columns["input_if"][:] = rng.integers(0, 10, n)
    b.columns["next_hop"][:] = addr.from_texts(["10.255.0.1"] * n)
    b.columns["flow_version"][:] = 9
    return b


def with_seq(batch: FlowBatch, seq0: int) -> dict:
    cols = dict(batch.columns)
    cols["seq"] = np.arange(seq0, seq0 + batch.count, dtype=np.int64)
    return cols


