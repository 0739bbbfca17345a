"""Memory of the four services (store, collector, analyzer, web) as real processes: RSS of each and
the total at idle, and after storage.ring_capacity flows went through (the ring is full).

Budget from the architecture: idle well under 200 MB in total, peak under 450 MB.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from .harness import Load, ServiceProcess, rss_bytes, stack_config, write_config

SERVICES = ("store", "collector", "analyzer", "web")
SEND_RATE = 150_000        # flows/s: below the store's lossless rate so the ring fills without shedding
IDLE_SETTLE_S = 3.0
FILL_WAIT_S = 120.0


def _rss(procs) -> dict[str, int]:
    return {n: rss_bytes(p.proc.pid) for n, p in procs.items()}


def run(report) -> None:
    from flowmodel.client import StoreClient

    with tempfile.TemporaryDirectory(prefix="flowlens-bench-resources-") as d:
        tmp = Path(d)
        cfg = stack_config(tmp, collector={"ipfix_port": 0, "stats_interval": "1s", "template_path": ""})
        path = write_config(tmp / "flowlens.yaml", cfg)
        procs: dict[str, ServiceProcess] = {}
        client = StoreClient(cfg["query"]["endpoint"], timeout_s=10, retries=1)
        try:
            for name in SERVICES:
                procs[name] = ServiceProcess(name, path).start()
            time.sleep(IDLE_SETTLE_S)  # a benchmark settle time, not a test wait: let imports and first timers run
            idle = _rss(procs)
            capacity = client.status()["ring"]["capacity"]
            base = client.status()["flows_in"]
            t0 = time.monotonic()
            load = Load(cfg["collector"]["netflow_port"], capacity, SEND_RATE, capacity / SEND_RATE * 2 + 5)
            sent = load.result(timeout_s=FILL_WAIT_S)["flows"]
            deadline = time.monotonic() + FILL_WAIT_S
            st = client.status()
            while time.monotonic() < deadline:
                st = client.status()
                if st["flows_in"] - base >= sent and st["ring"]["fill"] >= min(capacity, sent):
                    break
                time.sleep(0.2)
            fill_s = time.monotonic() - t0
            full = _rss(procs)
            # one heavy query on top: the biggest page of flows the store answers
            client.flows(limit=cfg["storage"].get("query_max_rows", 10_000))
            after_query = _rss(procs)
        finally:
            client.close()
            for name in reversed(list(procs)):
                procs[name].stop()
    mb = 1 / (1 << 20)
    for name in SERVICES:
        report("resources", f"{name} RSS idle / ring full", f"{idle[name] * mb:.0f} / {full[name] * mb:.0f}", "MiB")
    report("resources", "total RSS idle", sum(idle.values()) * mb, "MiB", "budget < 200")
    report("resources", "total RSS with a full ring", sum(full.values()) * mb, "MiB",
           f"ring {st['ring']['fill']:,}/{capacity:,} flows after {fill_s:.0f} s; budget < 450")
    report("resources", "total RSS after a 10k-row flows query", sum(after_query.values()) * mb, "MiB", "")
