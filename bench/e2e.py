"""End to end: flows/s committed to SQLite with zero loss through real collector and store
processes, and the CPU each of them spends per flow.

A ramp of rates from our v5 load generator; each step sends for STEP_SECONDS, then the store's
``status`` op is polled until every flow sent is committed (or commits stop). The committed rate is
flows / (last commit - first datagram sent). A step is lossless when committed == sent, the store
shed nothing and the bus showed no sequence gaps; a lossy step is tried once more before the ramp ends.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .harness import Load, ServiceProcess, cpu_seconds, stack_config, write_config

RATES = [100_000, 200_000, 300_000, 400_000, 500_000, 700_000, 1_000_000, 1_500_000]
STEP_SECONDS = 3.0
COMMIT_WAIT_S = 30.0


@dataclass
class Step:
    target: float
    sent: int
    committed: int
    shed: int
    gaps: int
    committed_per_s: float
    collector_us: float
    store_us: float

    @property
    def lossless(self) -> bool:
        return self.sent > 0 and self.committed == self.sent and self.shed == 0 and self.gaps == 0


def start_pair(tmp: Path, **store):
    cfg = stack_config(tmp, collector={"ipfix_port": 0, "stats_interval": "1s", "template_path": ""}, store=store)
    path = write_config(tmp / "flowlens.yaml", cfg)
    procs = {}
    for name in ("store", "collector"):
        procs[name] = ServiceProcess(name, path).start()
    return cfg, procs


def status(client) -> dict:
    return client.status()


def wait_connected(client, timeout_s: float = 20.0) -> None:
    """Until the store has seen the collector's health event: the bus path is up end to end."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        st = status(client)
        if any(s.get("service") == "collector" for s in st.get("services", [])):
            return
        time.sleep(0.1)
    raise RuntimeError("the store never saw the collector's health event")


def run_step(client, procs, port: int, rate: float) -> Step:
    st0 = status(client)
    base_committed = st0["flows_committed"]
    base_shed = st0["write_queue"]["shed_flows"]
    base_gaps = st0["bus"]["gaps_total"]
    cpu0 = {n: cpu_seconds(p.proc.pid) for n, p in procs.items()}
    t_start = time.monotonic()
    load = Load(port, rate * STEP_SECONDS, rate, STEP_SECONDS * 2 + 1)
    res = load.result()
    sent = res["flows"]
    deadline = time.monotonic() + COMMIT_WAIT_S
    last, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        st = status(client)
        committed = st["flows_committed"] - base_committed
        if committed != last:
            last, last_change = committed, time.monotonic()
        if committed >= sent or time.monotonic() - last_change > 3.0:
            break
        time.sleep(0.05)
    t_done = last_change
    cpu1 = {n: cpu_seconds(p.proc.pid) for n, p in procs.items()}
    st = status(client)
    committed = st["flows_committed"] - base_committed
    per = max(committed, 1)
    return Step(rate, sent, committed, st["write_queue"]["shed_flows"] - base_shed, st["bus"]["gaps_total"] - base_gaps,
                committed / max(t_done - t_start, 1e-6), (cpu1["collector"] - cpu0["collector"]) * 1e6 / per,
                (cpu1["store"] - cpu0["store"]) * 1e6 / per)


def run(report) -> None:
    from flowmodel.client import StoreClient

    with tempfile.TemporaryDirectory(prefix="flowlens-bench-e2e-") as d:
        tmp = Path(d)
        cfg, procs = start_pair(tmp)
        client = StoreClient(cfg["query"]["endpoint"], timeout_s=10, retries=1)
        steps: list[Step] = []
        try:
            wait_connected(client)
            for rate in RATES:
                for attempt in ("", "retry "):  # as in bench.ingest: one hiccup on a shared machine does not end the ramp
                    s = run_step(client, procs, cfg["collector"]["netflow_port"], rate)
                    steps.append(s)
                    print(f"    e2e: {attempt}target {rate:>10,.0f}/s sent {s.sent:>9,} committed {s.committed:>9,}"
                          f" shed {s.shed} gaps {s.gaps} -> {s.committed_per_s:>10,.0f} committed/s; cpu collector"
                          f" {s.collector_us:.2f} store {s.store_us:.2f} us/flow {'ok' if s.lossless else 'LOSS'}",
                          flush=True)
                    if s.lossless:
                        break
                if not s.lossless:
                    break
            db_bytes = status(client)["sqlite"]["size_bytes"]
        finally:
            client.close()
            for name in ("collector", "store"):
                procs[name].stop()
    ok = [s for s in steps if s.lossless]
    b = max(ok, key=lambda s: s.committed_per_s) if ok else None
    lossy = [s for s in steps if not s.lossless]
    note = (f"next step {lossy[-1].target:,.0f}/s: committed {lossy[-1].committed:,} of {lossy[-1].sent:,}"
            if lossy else "no loss up to the ramp's top")
    report("e2e", "flows committed to SQLite, zero loss", b.committed_per_s if b else 0.0, "flows/s",
           f"{note}; target >= 200,000")
    if b:
        report("e2e", "collector CPU per flow (at that rate)", b.collector_us, "us/flow", "psutil cpu_times delta")
        report("e2e", "store CPU per flow (at that rate)", b.store_us, "us/flow", "bus + ring + SQLite writer")
    report("e2e", "SQLite file after the ramp", db_bytes / 1e6, "MB",
           f"{sum(s.committed for s in steps):,} flows")
