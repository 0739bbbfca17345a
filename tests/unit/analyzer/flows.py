"""Builders of FlowBatch columns for the analyzer's pure-function tests."""
from __future__ import annotations

import numpy as np

from flowmodel import addr
from flowmodel.config import load_config
from flowmodel.schema import FlowBatch

T0 = 1_700_000_040_000  # a minute boundary (ms)


def batch(src, dst, dst_port, *, src_port=40000, protocol=6, bytes=1000, packets=10, tcp_flags=0x1b,
          time_end=None, exporter="192.0.2.1", input_if=0, output_if=0, n=None) -> FlowBatch:
    """Flows as columns; every argument is a scalar or a sequence (broadcast to n rows)."""
    lens = [len(v) for v in (src, dst, dst_port, src_port, protocol, bytes, packets, tcp_flags, time_end, exporter)
            if isinstance(v, (list, tuple, np.ndarray))]
    n = n or (max(lens) if lens else 1)

    def col(v, dtype):
        return np.broadcast_to(np.asarray(v, dtype=dtype), (n,)).copy()

    def addrs(v):
        if isinstance(v, str):
            v = [v] * n
        return addr.from_texts(v)

    t = col(T0 + 30_000 if time_end is None else time_end, np.int64)
    return FlowBatch({
        "time_start": t - 100, "time_end": t, "src_addr": addrs(src), "dst_addr": addrs(dst),
        "src_port": col(src_port, np.uint16), "dst_port": col(dst_port, np.uint16), "protocol": col(protocol, np.uint8),
        "bytes": col(bytes, np.uint64), "packets": col(packets, np.uint64), "tcp_flags": col(tcp_flags, np.uint8),
        "exporter": addrs(exporter), "input_if": col(input_if, np.uint32), "output_if": col(output_if, np.uint32),
    }, n)


def normal_mix(seed: int = 1, n: int = 5000, t_end: int = T0 + 60_000) -> FlowBatch:
    """An ordinary office mix: 200 inside hosts, HTTPS/DNS/SSH/NTP to many outside servers and back."""
    rng = np.random.default_rng(seed)
    inside = [f"10.0.{i // 100}.{i % 100 + 1}" for i in range(200)]
    outside = [f"203.0.{i // 200}.{i % 200 + 1}" for i in range(600)]
    src = rng.choice(inside, n)
    dst = rng.choice(outside, n)
    svc = rng.choice([443, 443, 443, 80, 53, 22, 123, 993], n)
    proto = np.where(np.isin(svc, [53, 123]), 17, 6)
    b = rng.integers(500, 200_000, n)
    half = n // 2
    # The second half are the replies (outside -> inside, from the service port).
    s = np.concatenate([src[:half], dst[half:]])
    d = np.concatenate([dst[:half], src[half:]])
    sport = np.concatenate([rng.integers(32768, 60999, half), svc[half:]])
    dport = np.concatenate([svc[:half], rng.integers(32768, 60999, n - half)])
    t = rng.integers(t_end - 60_000, t_end, n)
    return batch(list(s), list(d), dport, src_port=sport, protocol=proto, bytes=b, packets=rng.integers(3, 50, n),
                 time_end=t)


def config(**analysis):
    return load_config(None, env={}, overrides={f"analysis.{k}": v for k, v in analysis.items()})
