"""Store: rows committed per second into SQLite by the store's own writer thread (in-process, a
1M-flow stream of 4096-flow batches, zero shed), the cost of sealing a partition (its address
indexes), and query latency of flows/top/series over those 1M rows from the ring and from SQLite.

Flows are realistic in shape: 20,000 inside hosts, 5,000 outside peers, common service ports, two
exporters, time_end spread over the last 5 minutes. Flow count: FLOWLENS_BENCH_STORE_FLOWS.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time

import numpy as np

from flowmodel import addr
from flowmodel.schema import FlowBatch
from flowlens_store.queries import QueryEngine
from flowlens_store.ring import Ring
from flowlens_store.warm import WarmWriter, file_size, now_ms
from flowlens_store.writer import Writer

FLOWS = int(os.environ.get("FLOWLENS_BENCH_STORE_FLOWS", "1000000"))
BATCH = 4096
HOUR_MS = 3_600_000


def synthetic(n: int, now: int, seed: int = 3) -> FlowBatch:
    rng = np.random.default_rng(seed)
    inside = (10 << 24) + rng.integers(0, 20_000, n).astype(np.uint32)
    outside = (100 << 24) + rng.integers(0, 5_000, n).astype(np.uint32) * 7
    reply = rng.random(n) < 0.5
    svc = rng.choice(np.array([443, 443, 80, 53, 22, 123, 3306], np.uint16), n)
    eph = rng.integers(32768, 61000, n).astype(np.uint16)
    te = np.sort(now - rng.integers(0, 300_000, n))
    return FlowBatch({
        "time_end": te, "time_start": te - rng.integers(0, 30_000, n),
        "src_addr": addr.ipv4_column(np.where(reply, outside, inside)),
        "dst_addr": addr.ipv4_column(np.where(reply, inside, outside)),
        "src_port": np.where(reply, svc, eph), "dst_port": np.where(reply, eph, svc),
        "protocol": np.where(svc == 53, 17, 6).astype(np.uint8),
        "bytes": rng.integers(60, 1_500_000, n).astype(np.uint64), "packets": rng.integers(1, 1000, n).astype(np.uint64),
        "exporter": addr.ipv4_column(np.where(rng.random(n) < 0.5, 0xC0000201, 0xC0000202).astype(np.uint32)),
    }, n)


def _latency(fn, repeat: int = 7) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), max(times)


def run(report) -> None:
    now = now_ms()
    # keep the window inside one partition so sealing below covers all rows
    now = max(now, (now // HOUR_MS) * HOUR_MS + 301_000)
    flows = synthetic(FLOWS, now)
    with tempfile.TemporaryDirectory(prefix="flowlens-bench-store-") as tmp:
        path = os.path.join(tmp, "flows.db")
        warm = WarmWriter(path, HOUR_MS, 24, 64)
        writer = Writer(warm, 256, 50_000, 3600, 3 * 86400_000, 14 * 86400_000, 30 * 86400_000)
        ring = Ring(FLOWS)
        batches = []
        for i in range(0, FLOWS, BATCH):
            b = flows.select(slice(i, i + BATCH))
            cols = dict(b.columns)
            cols["seq"] = np.arange(i + 1, i + 1 + b.count, dtype=np.int64)
            batches.append((b, cols))
        cpu0, t0 = time.process_time(), time.perf_counter()
        writer.start()
        for b, cols in batches:
            ring.append(b, int(cols["seq"][0]))
            writer.flows.put(cols)  # blocking: measure the writer's own rate with nothing shed
        writer.stop()  # returns when everything is committed
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        report("store", f"SQLite commit rate, {FLOWS:,} flows (writer thread, rollups included)", FLOWS / wall,
               "flows/s", f"target >= 200,000; {cpu / FLOWS * 1e6:.1f} us CPU/flow; shed {writer.shed_batches}")
        report("store", "SQLite file size after commit", file_size(path) / 1e6, "MB")

        ring_w = {"since": now - 400_000}
        sql_w = {"since": now - 2 * HOUR_MS}
        hot_w = {"since": now - 60_000}  # the newest minute of the unsealed partition, from SQLite
        cases = [
            ("flows page 50, no filter", lambda w: eng.flows({**w, "limit": 50})),
            ("flows page 50, src=10.0.3.0/24", lambda w: eng.flows({**w, "limit": 50, "src": "10.0.3.0/24"})),
            ("flows page 50, addr=one host", lambda w: eng.flows({**w, "limit": 50, "addr": "10.0.0.77"})),
            ("flows page 50, dst_port=3306", lambda w: eng.flows({**w, "limit": 50, "dst_port": 3306})),
            ("top 10 src by bytes", lambda w: eng.top({**w, "by": "src", "limit": 10})),
            ("top 10 dst_port by flows", lambda w: eng.top({**w, "by": "dst_port", "metric": "flows"})),
            ("series 10 s step", lambda w: eng.series({**w, "until": now + 1, "step": 10})),
        ]
        # Before sealing: the hot partition has no time index; SQLite reads it by seq ranges (spans).
        eng = QueryEngine(Ring(1), path, 600_000, 10_000, 30.0)
        eng.ring.evicted_max_time_end = now + 1  # as after a restart: SQLite answers everything
        for name, fn in cases:
            for src, w in (("sqlite unsealed", sql_w), ("sqlite unsealed, last minute", hot_w)):
                med, worst = _latency(lambda: fn(w), 3)
                report("store", f"{name} [{src}, {FLOWS:,} rows]", med, "ms", f"max {worst:.0f} ms of 3")
        eng.close()

        warm = WarmWriter(path, HOUR_MS, 24, 64)
        t = time.perf_counter()
        steps, longest = 0, 0.0
        while True:  # as the writer thread does it: one bounded step between its transactions
            s0 = time.perf_counter()
            more = warm.seal_step(now + 10 * HOUR_MS)
            longest = max(longest, time.perf_counter() - s0)
            steps += 1
            if not more:
                break
        report("store", "seal one partition (chunked copy with indexes, all steps)", time.perf_counter() - t, "s",
               f"{FLOWS:,} rows, done once per partition, in {steps} steps")
        report("store", "longest sealing step (the writer's longest pause for it)", longest * 1000, "ms",
               "between two steps the writer commits flows")
        warm.close()

        eng = QueryEngine(ring, path, 600_000, 10_000, 30.0)
        for name, fn in cases:
            for src, w, rep in (("ring", ring_w, 7), ("sqlite", sql_w, 3)):
                med, worst = _latency(lambda: fn(w), rep)
                report("store", f"{name} [{src}, {FLOWS:,} rows]", med, "ms", f"max {worst:.0f} ms of {rep}")
        eng.close()

        # The dashboard asks for exactly the ring's duration on the web's clock, a little before ours.
        eng = QueryEngine(ring, path, 600_000, 10_000, 30.0, clock=lambda: now + 50)
        dash = {"since": now - 600_000, "until": now}
        for name, fn in (("dashboard series 10 s step, 10 min", lambda: eng.series({**dash, "step": 10})),
                         ("dashboard top 10 src, 10 min", lambda: eng.top({**dash, "by": "src"}))):
            src = fn()["source"]
            med, worst = _latency(fn, 3)
            report("store", f"{name} [{src}, {FLOWS:,} rows]", med, "ms", f"max {worst:.0f} ms of 3")
        eng.close()


if __name__ == "__main__":
    run(lambda section, name, value, unit="", note="": print(f"{section:8} {name:60} {value:>12.1f} {unit:8} {note}"))
