"""Collector ingest: the highest rate at which every NetFlow v5, v9 and IPFIX flow sent over loopback
UDP is decoded and published on the bus (flows counted by a SUB), next to nfcapd fed the same stream, each
with the same kernel receive buffer (see equal_buffer_request),
in the same run.

For each version both receivers get the same ramp of rates from our load generator (one exporter,
IPv4, 30 flows per packet, v9/IPFIX with one fixed-length template sent first and every 1000 packets,
2 s per step), interleaved rate by rate; a step is lossless when every flow sent came out (bus count /
nfdump -I) and the kernel dropped nothing. A receiver's ramp stops at the second lossy try of a rate,
and a version's ramp at its time budget. Before its ramp, each version's packets are decoded with the
collector's Decoder (bench.loadgen.self_check) so a stream that does not decode is never measured.
"""
from __future__ import annotations

import contextlib
import functools
import re
import shutil
import socket
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import loadgen
from .harness import (REPO, BusCounter, Load, ServiceProcess, cpu_seconds, free_port, stack_config, udp_bound,
                      udp_drops, write_config)

# half-million steps where both receivers top out on a 2-core machine, so the ratio is not set by
# the step size
RATES = [500_000, 1_000_000, 2_000_000, 3_000_000, 3_500_000, 4_000_000, 4_500_000, 5_000_000, 5_500_000,
         6_000_000, 7_000_000, 8_000_000]
VERSIONS = {5: "v5", 9: "v9", 10: "IPFIX"}   # export version -> name in the report
STEP_SECONDS = 2.0
VERSION_BUDGET_S = 90.0   # no new rate once a version's ramp has run this long (whole section ~4-5 min)
NFCAPD_BUFFER = 8 << 20


def equal_buffer_request() -> int:
    """What our collector asks for so that its socket gets the same kernel buffer as nfcapd's.

    nfcapd -B asks with SO_RCVBUF, which the kernel caps at net.core.rmem_max (then doubles for
    its bookkeeping); our collector asks with SO_RCVBUFFORCE, which passes the cap when run as
    root. Given the same number, ours would get up to twice the buffer, and the race would be
    about buffers; this asks for what nfcapd is really granted."""
    try:
        rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    except (OSError, ValueError):
        return NFCAPD_BUFFER
    return min(NFCAPD_BUFFER, rmem_max)


class VersionLoad(Load):
    """bench.loadgen in its own process, sending one export version."""

    def __init__(self, version: int, port: int, flows: int, flows_per_s: float | None, max_seconds: float):
        cmd = [sys.executable, "-m", "bench.loadgen", "--version", str(version), "--port", str(port),
               "--flows", str(int(flows)), "--flows-per-s", str(int(flows_per_s or 0)),
               "--max-seconds", str(max_seconds)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)


@dataclass
class Step:
    target: float
    achieved: float
    sent: int
    received: int
    kernel_drops: int
    cpu_us_per_flow: float

    @property
    def lossless(self) -> bool:
        return self.received == self.sent and self.kernel_drops == 0 and self.sent > 0


def one_rate(run_step, label: str, rate: float, steps: list[Step]) -> bool:
    """One rate for one receiver, retried once when lossy (a single hiccup should not end the
    ramp); True when it was lossless."""
    for attempt in ("", "retry "):
        step = run_step(rate)
        steps.append(step)
        print(f"    {label}: {attempt}target {rate:>11,.0f}/s achieved {step.achieved:>11,.0f}/s sent {step.sent:>10,}"
              f" received {step.received:>10,} drops {step.kernel_drops} cpu {step.cpu_us_per_flow:.2f} us/flow"
              f" {'ok' if step.lossless else 'LOSS'}", flush=True)
        if step.lossless:
            return True
    return False


def interleaved_ramp(receivers: dict, budget_s: float = VERSION_BUDGET_S) -> tuple[dict[str, list[Step]], bool]:
    """Every rate goes to each receiver in turn, so both see the machine in the same state (on a
    small VM the run-to-run noise is larger than the gap between them); each stops at its own loss.
    Returns the steps and whether the time budget cut the ramp short."""
    steps = {label: [] for label in receivers}
    active = dict(receivers)
    deadline = time.monotonic() + budget_s
    for rate in RATES:
        if time.monotonic() > deadline:
            print(f"    time budget of {budget_s:.0f} s spent; ramp stops before {rate:,}/s", flush=True)
            return steps, True
        for label, run_step in list(active.items()):
            if not one_rate(run_step, label, rate, steps[label]):
                del active[label]
        if not active:
            break
    return steps, False


def best(steps: list[Step]) -> Step | None:
    ok = [s for s in steps if s.lossless]
    return max(ok, key=lambda s: s.achieved) if ok else None


# ------------------------------------------------------------------------- FlowLens collector

@contextlib.contextmanager
def collector_receiver(tmp: Path, **sections):
    """``sections``: more config sections for the collector (bench.enrich passes ``enrichment``)."""
    cfg = stack_config(tmp, collector={"ipfix_port": 0, "stats_interval": "1s", "template_path": "",
                                       "socket_buffer": equal_buffer_request()})
    cfg.update(sections)
    path = write_config(tmp / "collector.yaml", cfg)
    port = cfg["collector"]["netflow_port"]
    counter = BusCounter(cfg["bus"]["publish_endpoint"], bind=True, ack_endpoint=cfg["bus"]["subscribe_endpoint"])
    proc = ServiceProcess("collector", path).start()
    try:
        event = counter.wait_event()  # subscription in place
        pid = proc.proc.pid
        print(f"    flowlens receive buffer: {_granted(event):,} bytes granted", flush=True)

        def step(version: int, rate: float) -> Step:
            flows_before, drops_before, cpu_before = counter.flows, udp_drops(port), cpu_seconds(pid)
            load = VersionLoad(version, port, rate * STEP_SECONDS, rate, STEP_SECONDS * 2 + 1)
            while load.running():
                counter.pump(20)
            res = load.result()
            counter.settle(flows_before + res["flows"])
            cpu = cpu_seconds(pid) - cpu_before
            got = counter.flows - flows_before
            return Step(rate, res["flows"] / res["seconds"], res["flows"], got, udp_drops(port) - drops_before,
                        cpu * 1e6 / max(got, 1))

        yield step
        if counter.gaps.total_gaps:
            print(f"    flowlens: {counter.gaps.total_gaps} bus messages missing by seq", flush=True)
    finally:
        proc.stop()
        counter.close()


# ------------------------------------------------------------------------- nfcapd

def nfcapd_receiver(tmp: Path):
    """A step function (version, rate) that runs a fresh nfcapd per step, or the reason it cannot run.
    nfcapd takes v5, v9 and IPFIX on one port; flows are counted the same way for each (nfdump -I)."""
    if not shutil.which("nfcapd") or not shutil.which("nfdump"):
        return "nfcapd/nfdump not installed (Debian package nfdump; `make debs`)"
    banner = subprocess.run(["nfcapd", "-V"], capture_output=True, text=True).stdout.strip()
    print(f"    {banner}", flush=True)
    granted_shown: list = []

    def step(version: int, rate: float) -> Step:
        port = free_port(socket.SOCK_DGRAM)
        flowdir = Path(tempfile.mkdtemp(dir=tmp, prefix="nfcapd-"))
        # nfdump 1.7: -w DIR (1.6 used -l DIR); -t 3600 so the whole step lands in one file
        proc = subprocess.Popen(["nfcapd", "-B", str(NFCAPD_BUFFER), "-b", "127.0.0.1", "-p", str(port),
                                 "-w", str(flowdir), "-t", "3600"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while not udp_bound(port):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("nfcapd did not bind its port")
                time.sleep(0.02)
            if not granted_shown:
                granted_shown.append(_ss_rcvbuf(port))
                print(f"    nfcapd receive buffer: {granted_shown[0]} bytes granted (ss -m)", flush=True)
            load = VersionLoad(version, port, rate * STEP_SECONDS, rate, STEP_SECONDS * 2 + 1)
            res = load.result()
            # nfcapd reads until its socket is empty; wait for the receive queue to drain
            _wait_rx_empty(port)
            drops = udp_drops(port)
            cpu = cpu_seconds(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        got = _nfdump_flows(flowdir)
        shutil.rmtree(flowdir, ignore_errors=True)
        return Step(rate, res["flows"] / res["seconds"], res["flows"], got, drops, cpu * 1e6 / max(got, 1))

    return step


def _wait_rx_empty(port: int, max_s: float = 10.0) -> None:
    deadline = time.monotonic() + max_s
    while time.monotonic() < deadline:
        if _rx_queue(port) == 0:
            time.sleep(0.1)  # the last datagrams are being written out
            if _rx_queue(port) == 0:
                return
        time.sleep(0.02)


def _granted(event: dict) -> int:
    sockets = event.get("socket") or [{}]
    return int(sockets[0].get("rcvbuf_granted", 0))


def _ss_rcvbuf(port: int) -> str:
    """The receive buffer the kernel granted a UDP socket, from ``ss -m`` (rb...), or '?'."""
    try:
        out = subprocess.run(["ss", "-uamn", f"sport = :{port}"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    m = re.search(r"\brb(\d+)", out)
    return f"{int(m.group(1)):,}" if m else "?"


def _rx_queue(port: int) -> int:
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if int(parts[1].rsplit(":", 1)[1], 16) == port:
                return int(parts[4].split(":")[1], 16)
    return 0


def _nfdump_flows(flowdir: Path) -> int:
    r = subprocess.run(["nfdump", "-R", str(flowdir), "-I"], capture_output=True, text=True, timeout=120)
    m = re.search(r"^Flows:\s+(\d+)", r.stdout, re.M)
    if not m:
        raise RuntimeError(f"nfdump -I printed no flow count: {r.stdout[-300:]} {r.stderr[-300:]}")
    return int(m.group(1))


# ------------------------------------------------------------------------- entry

def run(report) -> None:
    with tempfile.TemporaryDirectory(prefix="flowlens-bench-ingest-") as d:
        tmp = Path(d)
        nfcapd = nfcapd_receiver(tmp)
        with collector_receiver(tmp) as ours_step:
            for version, name in VERSIONS.items():
                try:
                    print(f"  {name}: self-check: {loadgen.self_check(version)}", flush=True)
                except AssertionError as e:  # a stream we cannot decode ourselves is not measured
                    print(f"  {name}: self-check failed: {e}", flush=True)
                    report("ingest", f"collector lossless {name} ingest (loopback UDP -> bus)", float("nan"),
                           "flows/s", f"skipped: load self-check failed: {e}")
                    continue
                receivers = {"flowlens": functools.partial(ours_step, version)}
                if not isinstance(nfcapd, str):
                    receivers["nfcapd  "] = functools.partial(nfcapd, version)
                steps, cut = interleaved_ramp(receivers)
                _report(report, name, steps, nfcapd, cut)


def _report(report, name: str, steps: dict[str, list[Step]], nfcapd, cut: bool) -> None:
    ours = steps["flowlens"]
    b = best(ours)
    report("ingest", f"collector lossless {name} ingest (loopback UDP -> bus)", b.achieved if b else 0.0, "flows/s",
           _note(ours, b, cut))
    if b:
        report("ingest", f"collector CPU per flow at that rate, {name}", b.cpu_us_per_flow, "us/flow",
               "decode + batch + publish")
    if isinstance(nfcapd, str):
        report("ingest", f"nfcapd lossless {name} ingest", float("nan"), "flows/s", f"skipped: {nfcapd}")
        return
    theirs = steps["nfcapd  "]
    nb = best(theirs)
    report("ingest", f"nfcapd lossless {name} ingest (same stream, same buffer)", nb.achieved if nb else 0.0, "flows/s",
           _note(theirs, nb, cut))
    if nb:
        report("ingest", f"nfcapd CPU per flow at that rate, {name}", nb.cpu_us_per_flow, "us/flow", "")
    if b and nb:
        # the ramp's steps are the resolution: two receivers lossless at the same step are equal,
        # whatever the sender's own jitter made of that step (a few hundred flows/s either way)
        report("ingest", f"collector / nfcapd lossless rate, {name}", b.target / nb.target, "x",
               f"target >= 1; highest lossless steps {b.target:,.0f} vs {nb.target:,.0f}/s")


def _note(steps: list[Step], b: Step | None, cut: bool = False) -> str:
    lossy = [s for s in steps if not s.lossless]
    if not steps:
        return "not measured"
    if not lossy:
        if cut:
            return f"no loss up to {steps[-1].achieved:,.0f}/s, where the time budget ended the ramp (a lower bound)"
        return f"no loss up to the ramp's top ({steps[-1].achieved:,.0f}/s); the sender is the limit"
    worst = lossy[-1]
    lost = worst.sent - worst.received
    return (f"at the next rate ({worst.target:,.0f}/s asked, {worst.achieved:,.0f}/s sent) lost {lost:,} of"
            f" {worst.sent:,} (kernel drops {worst.kernel_drops} datagrams)")
