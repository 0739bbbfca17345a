"""The compose file under issue 13's whole flood, with podman (tests/support/compose.py): the six
containers (notifier and poller by their profiles) with the compose file's memory limits, then the
datagrams of 10,000 exporters x 7 observation domains (v5, v9, IPFIX, some mutated, a quarter
garbage) sent into the collector's published port, and each container's peak memory as its cgroup
counts it (page cache included), against its limit. Through the published port podman's NAT
shows every exporter as the network's gateway, so the collector sees one exporter with 70,000
domains rather than 10,000 addresses (its table folds past collector.max_exporters either way).

    python -m bench compose      (make compose-test runs the smaller flood as a test)
"""
from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support import compose, flood  # noqa: E402

EXPORTERS, DOMAINS = 10_000, 7


def metric_sum(web: str, name: str) -> float:
    """``name`` summed over every series on /metrics."""
    import urllib.request

    with urllib.request.urlopen(web + "/metrics", timeout=30) as resp:
        body = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(name + "{") or
               line.startswith(name + " "))


def run(report) -> None:
    problem = compose.tools_problem()
    if problem:
        report("compose", "stack", float("nan"), "", f"skipped: {problem}")
        return
    plan = flood.plan(exporters=EXPORTERS, domains_per_exporter=DOMAINS)
    valid = sum(1 for _, p in plan.datagrams if p[:2] in (b"\x00\x05", b"\x00\x09", b"\x00\x0a"))
    timer = compose.Timer()
    with tempfile.TemporaryDirectory(prefix="flowlens-compose-") as tmp:
        work = Path(tmp)
        compose.prepare(work, timer)
        st = compose.start(work, timer, project=f"flowlens-bench-{os.getpid()}", profiles=["notify", "snmp"])
        try:
            received = "flowlens_exporter_packets_received_total"
            before = metric_sum(st.web, received)
            t0 = time.monotonic()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for i, (_, payload) in enumerate(plan.datagrams, 1):
                    sock.sendto(payload, ("127.0.0.1", st.udp_port))
                    if i % 200 == 0:  # the pacing of tests/integration/test_exporter_flood.py
                        time.sleep(0.01)
            send_s = time.monotonic() - t0
            # the counters come with the collector's health events: wait until two readings agree
            got, last, deadline = -1.0, -2.0, time.monotonic() + 120
            while got != last and time.monotonic() < deadline:
                time.sleep(6)
                last, got = got, metric_sum(st.web, received) - before
            timer.lap("flood")
            drops = metric_sum(st.web, "flowlens_collector_kernel_drops_total")
            report("compose", "flood datagrams sent", len(plan.datagrams), "", f"in {send_s:.1f} s, {valid:,} of a known version")
            report("compose", "flood packets counted by the collector", int(got), "",
                   f"kernel drops {drops:,.0f}; the rest lost in the NAT or mutated past counting")
            for name, c in sorted(st.containers().items()):
                mem = compose.memory(c)
                state = "running" if c["State"]["Running"] else f"stopped ({c['State']['ExitCode']})"
                report("compose", f"{name} peak memory (cgroup)", mem["peak"] / compose.MIB, "MiB",
                       f"limit {mem['limit'] / compose.MIB:.0f} MiB, {mem['oom_kills']} OOM kills, {state}")
        finally:
            st.down()
            timer.lap("down")
    report("compose", "compose run, every step", sum(timer.steps.values()), "s",
           ", ".join(f"{k} {v:.0f}" for k, v in timer.steps.items()))
