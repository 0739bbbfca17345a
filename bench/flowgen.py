"""Realistic synthetic flows of a medium enterprise site, as FLOW_COLUMNS numpy columns.

Shared by the block codec and history benchmarks: ~5,000 inside hosts in 10.0.0.0/16 talking to
~20,000 outside hosts (Zipf-weighted, so a few hosts carry most flows), weighted service ports with
ephemeral client ports, TCP 80 % / UDP 18 % / ICMP 2 %, lognormal bytes, packets ~ bytes / 600,
durations 0-120 s, 1-3 exporters with interfaces 1-48, sampling 1. Deterministic for a seed; built
column by column (no Python object per flow), so tens of millions of flows take seconds per million.
"""
from __future__ import annotations

import numpy as np

from flowmodel import addr
from flowmodel.schema import FLOW_COLUMNS

# (port, weight) of the services clients reach, per protocol
TCP_SERVICES = [(443, 55), (80, 12), (22, 4), (25, 3), (993, 3), (8080, 3), (3389, 2), (445, 2), (587, 1),
                (5222, 1), (8443, 2), (3306, 1), (143, 1), (110, 1)]
UDP_SERVICES = [(53, 60), (123, 12), (443, 15), (500, 3), (4500, 3), (161, 2), (514, 2), (1194, 2), (3478, 1)]
ICMP_TYPES = [(8, 0, 45), (0, 0, 45), (3, 3, 6), (3, 1, 2), (11, 0, 2)]
TCP_FLAGS = np.array([0x1B, 0x1B, 0x1B, 0x1F, 0x18, 0x10, 0x02, 0x12, 0x14, 0x19], np.uint8)
TOS = np.array([0] * 17 + [0x28, 0xB8, 0x48], np.uint8)
MAX_DURATION_MS = 120_000


def generate(n: int, start_ms: int, end_ms: int, seed: int = 1, inside_hosts: int = 5000,
             outside_hosts: int = 20000, exporters: int | None = None) -> dict[str, np.ndarray]:
    """n flows with time_end in [start_ms, end_ms), sorted by time_end; every FLOW_COLUMNS column.

    The host populations (addresses, popularity, AS) depend only on the seed and the host counts, so
    consecutive windows generated with the same seed describe the same site. ``exporters`` (1-3 by
    default, picked from the seed) sets how many routers export."""
    site = np.random.default_rng([seed, 0])
    rng = np.random.default_rng([seed, 1, start_ms & 0xFFFFFFFF, n])
    # the site: host addresses, popularity (Zipf-like), outside hosts' AS and prefix length
    inside_addr = (10 << 24) + site.choice(1 << 16, inside_hosts, replace=False).astype(np.uint32)
    outside_addr = _public_ipv4(site, outside_hosts)
    inside_cum = _zipf_cum(site, inside_hosts, 0.9)
    outside_cum = _zipf_cum(site, outside_hosts, 1.0)
    outside_as = site.choice(site.integers(1_000, 65_000, 2_000), outside_hosts).astype(np.uint32)
    outside_mask = site.choice(np.array([16, 20, 22, 24, 24, 24], np.uint8), outside_hosts)
    n_exp = exporters if exporters is not None else int(site.integers(1, 4))
    exporter_addr = (192 << 24 | 168 << 16 | 255 << 8) + np.arange(1, n_exp + 1, dtype=np.uint32)

    te = np.sort(rng.integers(start_ms, end_ms, n, dtype=np.int64)) if n else np.zeros(0, np.int64)
    duration = np.minimum(rng.exponential(12_000, n), MAX_DURATION_MS).astype(np.int64)
    duration[rng.random(n) < 0.2] = 0  # single-packet flows (DNS, ICMP, SYN scans)

    proto_pick = rng.random(n)
    protocol = np.where(proto_pick < 0.80, 6, np.where(proto_pick < 0.98, 17, 1)).astype(np.uint8)
    service = np.zeros(n, np.uint16)
    for proto, table in ((6, TCP_SERVICES), (17, UDP_SERVICES)):
        rows = protocol == proto
        service[rows] = _weighted(rng, table, int(rows.sum()))
    ephemeral = rng.integers(32_768, 61_000, n).astype(np.uint16)
    icmp = protocol == 1
    ephemeral[icmp] = 0
    icmp_type = np.zeros(n, np.uint8)
    icmp_code = np.zeros(n, np.uint8)
    picks = _weighted(rng, [(i, w) for i, (_t, _c, w) in enumerate(ICMP_TYPES)], int(icmp.sum()))
    icmp_type[icmp] = np.array([t for t, _c, _w in ICMP_TYPES], np.uint8)[picks]
    icmp_code[icmp] = np.array([c for _t, c, _w in ICMP_TYPES], np.uint8)[picks]

    # who is client: inside hosts reach out (85 %), outside hosts reach inside servers (10 %), inside to inside (5 %)
    inside = inside_addr[_draw(rng, inside_cum, n)]
    out_idx = _draw(rng, outside_cum, n)
    kind = rng.random(n)
    peer = np.where(kind < 0.95, outside_addr[out_idx], inside_addr[_draw(rng, inside_cum, n)])
    client_inside = (kind < 0.85) | (kind >= 0.95)
    client = np.where(client_inside, inside, peer)
    server = np.where(client_inside, peer, inside)
    reply = rng.random(n) < 0.5  # the answer direction of a connection is its own flow
    src = np.where(reply, server, client)
    dst = np.where(reply, client, server)
    src_port = np.where(reply, service, ephemeral)
    dst_port = np.where(reply, ephemeral, service)
    src_port[icmp] = 0
    dst_port[icmp] = 0

    bytes_ = np.maximum(rng.lognormal(7.0, 2.2, n), 28).astype(np.uint64)
    packets = np.maximum(1, (bytes_ // 600) + rng.integers(0, 3, n).astype(np.uint64))
    outside_is_src = (kind < 0.95) & (reply == client_inside)
    remote_as = outside_as[out_idx]
    remote_mask = outside_mask[out_idx]
    exp_idx = rng.integers(0, n_exp, n)
    input_if = rng.integers(1, 49, n).astype(np.uint32)
    output_if = rng.integers(1, 49, n).astype(np.uint32)
    local = kind >= 0.95
    cols = {
        "time_start": te - duration, "time_end": te,
        "src_addr": addr.ipv4_column(src), "dst_addr": addr.ipv4_column(dst),
        "src_port": src_port, "dst_port": dst_port, "protocol": protocol,
        "bytes": bytes_, "packets": packets,
        "sampling_rate": np.ones(n, np.uint32),
        "tcp_flags": np.where(protocol == 6, rng.choice(TCP_FLAGS, n), 0).astype(np.uint8),
        "tos": rng.choice(TOS, n),
        "input_if": input_if, "output_if": output_if,
        "src_as": np.where(outside_is_src & ~local, remote_as, 0).astype(np.uint32),
        "dst_as": np.where(~outside_is_src & ~local, remote_as, 0).astype(np.uint32),
        "exporter": addr.ipv4_column(exporter_addr[exp_idx]),
        "observation_domain": exp_idx.astype(np.uint32) + 256,
        "flow_version": np.full(n, 9, np.uint8),
        "next_hop": addr.ipv4_column(np.where(reply == client_inside, 0, (10 << 24) + 1 + exp_idx).astype(np.uint32)),
        "icmp_type": icmp_type, "icmp_code": icmp_code,
        "vlan": np.where(client_inside | reply, 100 + (inside & 0xF), 0).astype(np.uint16),
        "direction": np.zeros(n, np.uint8),
        "src_mask": np.where(outside_is_src & ~local, remote_mask, 16).astype(np.uint8),
        "dst_mask": np.where(~outside_is_src & ~local, remote_mask, 16).astype(np.uint8),
        "biflow": np.zeros(n, np.uint8),
        "src_country": np.zeros(n, np.uint16),
        "dst_country": np.zeros(n, np.uint16),
    }
    return {name: np.ascontiguousarray(cols[name], dtype=dt) for name, (dt, _doc) in FLOW_COLUMNS.items()}


def _public_ipv4(rng: np.random.Generator, count: int) -> np.ndarray:
    """Distinct addresses outside 0/8, 10/8, 127/8, 172.16/12, 192.168/16 and multicast."""
    out = np.zeros(0, np.uint32)
    while len(out) < count:
        cand = rng.integers(1 << 24, 224 << 24, count * 2, dtype=np.uint32)
        first = cand >> 24
        ok = (first != 10) & (first != 127) & ((cand >> 20) != 0xAC1) & ((cand >> 16) != 0xC0A8)
        out = np.unique(np.concatenate([out, cand[ok]]))
    return rng.permutation(out)[:count]


def _zipf_cum(rng: np.random.Generator, count: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, count + 1) ** exponent
    weights = weights[rng.permutation(count)]
    cum = np.cumsum(weights)
    return cum / cum[-1]


def _draw(rng: np.random.Generator, cum: np.ndarray, n: int) -> np.ndarray:
    return np.minimum(np.searchsorted(cum, rng.random(n), side="right"), len(cum) - 1)


def _weighted(rng: np.random.Generator, table, n: int) -> np.ndarray:
    values = np.array([v for v, _w in table])
    weights = np.array([w for _v, w in table], float)
    return values[_draw(rng, np.cumsum(weights) / weights.sum(), n)]
