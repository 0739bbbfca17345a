"""Analyzer CPU: one analysis pass over a 60 s window of 1,000,000 synthetic flows, per analyzer
and in total (process CPU time), plus the cost of putting the flows into the window.

The mix: 20,000 inside hosts (10/8) talking to 200,000 outside hosts, HTTPS/HTTP/DNS/SSH/NTP and
random high ports, half the flows being replies, two exporters, plus one port scan and one DNS
flood so the analyzers have something to find. Flow count: FLOWLENS_BENCH_ANALYZER_FLOWS.
"""
from __future__ import annotations

import os
import time

import numpy as np

from flowlens_analyzer.engine import ANALYZERS, Engine
from flowmodel import addr
from flowmodel.config import load_config
from flowmodel.schema import FlowBatch

FLOWS = int(os.environ.get("FLOWLENS_BENCH_ANALYZER_FLOWS", "1000000"))
T0 = 1_700_000_040_000
# What the mix plants: a vertical scan 10.0.0.99 -> 10.0.0.5 (3,000 ports, SYN only) and a DNS flood
# from 10.0.0.100 (3,000 UDP flows to port 53 of ~500 packets each: thousands of queries per second).
PLANTED = ("scan:10.0.0.99", "dns:10.0.0.100")


def synthetic(n: int, seed: int = 7) -> FlowBatch:
    rng = np.random.default_rng(seed)
    inside = (10 << 24) + rng.integers(0, 20_000, n).astype(np.uint32)
    outside = (100 << 24) + rng.integers(0, 200_000, n).astype(np.uint32) * 7
    svc = rng.choice(np.array([443, 443, 443, 80, 53, 22, 123, 8443, 3306, 25], dtype=np.uint16), n)
    eph = rng.integers(32768, 61000, n).astype(np.uint16)
    reply = rng.random(n) < 0.5
    src = np.where(reply, outside, inside)
    dst = np.where(reply, inside, outside)
    # One vertical scan (3,000 ports) and one DNS flood in the mix.
    k = 3000
    src[:k], dst[:k] = (10 << 24) + 99, (10 << 24) + 5
    dport = np.where(reply, eph, svc)
    sport = np.where(reply, svc, eph)
    dport[:k] = np.arange(1, k + 1)
    sport[:k] = 40000
    src[k:2 * k], dst[k:2 * k], dport[k:2 * k], sport[k:2 * k] = (10 << 24) + 100, (10 << 24) + 53, 53, 5353
    proto = np.where(np.isin(dport, [53, 123]) | np.isin(sport, [53, 123]), 17, 6).astype(np.uint8)
    t_end = T0 + rng.integers(0, 60_000, n)
    exporters = addr.ipv4_column(np.where(rng.random(n) < 0.5, 0xC0000201, 0xC0000202).astype(np.uint32))
    return FlowBatch({
        "time_start": t_end - rng.integers(0, 30_000, n), "time_end": t_end,
        "src_addr": addr.ipv4_column(src), "dst_addr": addr.ipv4_column(dst),
        "src_port": sport, "dst_port": dport, "protocol": proto,
        "bytes": rng.integers(60, 1_500_000, n).astype(np.uint64), "packets": rng.integers(1, 1000, n).astype(np.uint64),
        "tcp_flags": np.where(np.arange(n) < k, 2, 0x1b).astype(np.uint8), "exporter": exporters,
    }, n)


def run(report) -> None:
    # The window must hold every flow of the minute (the default 600,000 would shed the oldest-arrived,
    # planted findings included); max_window_flows is raised to the flow count, as an operator would.
    cfg = load_config(None, env={}, overrides={"analysis.max_window_flows": max(FLOWS, 1)})
    batch = synthetic(FLOWS)
    engine = Engine(cfg)
    chunk = 4096
    t0 = time.process_time()
    for i in range(0, FLOWS, chunk):
        engine.add(batch.select(slice(i, i + chunk)), wall_ms=T0 + 120_000)
    add_cpu = time.process_time() - t0
    report("analyzer", f"window add, {FLOWS:,} flows in {chunk}-flow batches", add_cpu, "s CPU")
    t0 = time.process_time()
    view = engine.window.view(T0 + 60_000)
    report("analyzer", "window view (merge + select 60 s)", time.process_time() - t0, "s CPU", f"{view.count:,} flows")
    if view.count != FLOWS or engine.window.counters["overflow"]:
        raise RuntimeError(f"the window holds {view.count:,} of {FLOWS:,} flows "
                           f"({engine.window.counters['overflow']:,} shed): the bench would not measure them all")
    total = 0.0
    found = {}
    for name, fn in ANALYZERS.items():
        state = {}
        t0 = time.process_time()
        findings = fn(view, engine.ctx, state)
        cpu = time.process_time() - t0
        total += cpu
        found[name] = findings
        report("analyzer", f"{name}", cpu, "s CPU", f"{len(findings)} findings")
    report("analyzer", f"all analyzers, one pass over {view.count:,} flows", total, "s CPU",
           "address factorisation is counted in the first analyzer that needs it (top_talkers)")
    keys = {f.key for fs in found.values() for f in fs}
    missing = [k for k in PLANTED if k not in keys]
    report("analyzer", "planted findings found", len(PLANTED) - len(missing), f"of {len(PLANTED)}",
           ", ".join(PLANTED))
    if missing:
        raise RuntimeError(f"planted findings not found: {missing}; found {sorted(keys)[:20]}")
    wall = time.perf_counter()
    engine2 = Engine(cfg)
    engine2.add(batch, wall_ms=T0 + 120_000)
    t0 = time.process_time()
    events = engine2.run(T0 + 60_000)
    report("analyzer", "engine.run (view + analyzers + lifecycle)", time.process_time() - t0, "s CPU",
           f"{len(events)} advisories; {time.perf_counter() - wall:.2f} s wall incl. add")
