"""Faults under load through real service processes (issue 13): what each fault loses, what the
services count as lost, and what is left over, with each service's highest RSS against its compose
memory limit.

Every service runs with the compose file's settings that are not addresses or paths
(deploy/docker-compose.yml: ring 500,000 flows, bus queue bytes, analyzer window), so its peak is
comparable with its ``mem_limit``. Load comes from bench.faultload in its own process. For each fault:

- sent: flows in the data packets that went out (the flood: in its valid datagrams only);
- stored: flows in the SQLite file, counted from the file after the store stopped (partition
  tables plus blocks), not from the store's own counters;
- counted lost: what the services say they lost, in flows: the store's ``delivery.lost_flows``
  (flows a collector no longer held when it sent again), plus the load exporter's ``sequence_lost``
  from the collector (v9 counts export packets: x30 flows; IPFIX and v5 count flows), plus, for the
  flood, kernel drops on the valid datagrams' port (x10 flows);
- held: flows the collector still holds unconfirmed at the end (kept in its spool for the next run);
- unaccounted = sent - stored - counted lost - held: 0 when every loss is counted; above 0 when flows
  went and nothing counted them; below 0 when a loss is counted that did not happen.

The advisory storm adds a row of advisory events: those the analyzer logged as published against
the updates the store's advisories table holds.

``FLOWLENS_BENCH_FAULTS=storm`` (or ``advisory storm,flood``) runs only the faults whose names start
with, or have a word equal to, one of the comma-separated words.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

from .faultload import RECORDS
from .faultstack import (COMPOSE_ENV, LIMITS, MIB, SERVICES, Outcome, Peaks, ServiceProcess, Stack, Traffic,
                         collector_counters, drain, flows_outcome, paced, quiet, wait_for)
from .harness import REPO, free_port

LEAD_S = 4.0           # load before a fault strikes


def store_down(tmp: Path, fault: str, down_s: float, **collector) -> Outcome:
    """The store SIGKILLed LEAD_S into RATE v9 flows/s, kept down ``down_s``, started again."""
    stack = Stack(tmp, collector=collector)
    try:
        stack.start("store", "collector")
        with Peaks(stack.pids) as peaks:
            load = paced(stack.port, LEAD_S + down_s + 6)
            time.sleep(LEAD_S)
            stack.kill("store")
            time.sleep(down_s)
            stack.start("store")
            sent = load.result()["flows"]
            st, c, ex = drain(stack)
        stack.stop()
        return flows_outcome(fault, stack, sent, st, c, ex, peaks.peak)
    finally:
        stack.stop()


def collector_killed(tmp: Path) -> Outcome:
    """The collector SIGKILLed under RATE IPFIX flows/s (sequence numbers count flows), down 2 s,
    started again on its saved templates and sequence state."""
    stack = Stack(tmp)
    try:
        stack.start("store", "collector")
        with Peaks(stack.pids) as peaks:
            load = paced(stack.port, LEAD_S + 10, version=10)
            time.sleep(LEAD_S)
            stack.kill("collector")
            time.sleep(2.0)
            stack.start("collector")
            sent = load.result()["flows"]
            st, c, ex = drain(stack)
        stack.stop()
        return flows_outcome("collector SIGKILL, down 2 s, 30k IPFIX flows/s", stack, sent, st, c, ex, peaks.peak,
                             version=10, note="sequence state as of the durable batches (seqmarks.py)")
    finally:
        stack.stop()


def _fill(directory: Path) -> int:
    """Write a filler file until the file system is full; returns its bytes."""
    n, chunk = 0, b"\0" * MIB
    with open(directory / "filler", "wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
                n += len(chunk)
        except OSError:
            pass
    return n


def disk_full(tmp: Path) -> Outcome:
    """The store's SQLite file on a 256 MiB tmpfs, filled LEAD_S into 20,000 v9 flows/s, freed 20 s later."""
    fs = tmp / "fs"
    fs.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(fs)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"cannot mount a tmpfs for the full disk: {r.stderr.strip() or r.returncode}")
    stack = Stack(tmp, store={"sqlite_path": str(fs / "flowlens.db")})
    try:
        stack.start("store", "collector")
        with Peaks(stack.pids) as peaks:
            load = paced(stack.port, LEAD_S + 26, rate=20_000)
            time.sleep(LEAD_S)
            filler = _fill(fs)
            t_full = time.monotonic()
            worst = {"write_errors": 0, "rows_waiting": 0}
            while time.monotonic() - t_full < 20:
                wq = stack.status()["write_queue"]
                worst = {k: max(worst[k], int(wq.get(k) or 0)) for k in worst}
                time.sleep(0.5)
            (fs / "filler").unlink()
            sent = load.result()["flows"]
            st, c, ex = drain(stack)
        stack.stop()
        return flows_outcome("SQLite disk full 20 s, 20k v9 flows/s", stack, sent, st, c, ex, peaks.peak,
                             note=f"filler {filler / MIB:.0f} MiB; {worst['write_errors']} failed transactions, "
                                  f"up to {worst['rows_waiting']:,} rows waiting")
    finally:
        stack.stop()
        subprocess.run(["umount", "-l", str(fs)], capture_output=True)


def flood(tmp: Path) -> Outcome:
    """Fuzzed and valid v9 from 10,000 addresses, 7 domains each (and as many noise domains), in 4 s,
    to all four services."""
    noise_port = free_port(socket.SOCK_DGRAM)
    stack = Stack(tmp, collector={"ipfix_port": noise_port})
    try:
        stack.start("store", "analyzer", "web", "collector")
        with Peaks(stack.pids) as peaks:
            res = Traffic("flood", "--port", stack.port, "--noise-port", noise_port, "--exporters", 10_000,
                          "--domains", 7, "--seconds", 4).result()
            time.sleep(10)   # health events with every exporter go round; the analyzer takes them
            with urllib.request.urlopen(f"http://{stack.cfg['web']['listen']}/metrics", timeout=60) as r:
                metrics_bytes = len(r.read())
            st, c, ex = drain(stack)
            time.sleep(2)
        rows = [r for r in ex["exporters"] if r.get("collector")]
        valid_drops = sum(s.get("kernel_drops", 0) for col in ex["collectors"] for s in col.get("socket") or []
                          if s.get("port") == stack.port)
        errors = sum(sum((r.get("decode_errors") or {}).values()) for r in rows)
        stack.stop()
        out = flows_outcome("flood: 10k exporters, 140k domains in 4 s", stack, res["flows"], st, c, ex, peaks.peak)
        out.lost += valid_drops * RECORDS
        out.where += f"; kernel drops on the valid port {valid_drops:,} datagrams x{RECORDS}"
        over = [f"{n} {peaks.peak[n] / MIB:.0f}/{LIMITS[n] / MIB:.0f}" for n in SERVICES
                if peaks.peak.get(n, 0) > LIMITS.get(n, 1 << 62)]
        out.note = (f"{res['noise_datagrams']:,} noise datagrams, {errors:,} decode errors counted; "
                    f"{len(rows):,} exporter rows; /metrics {metrics_bytes / MIB:.1f} MiB; over the compose limit "
                    f"(MiB): {', '.join(over) or 'none'}; " + out.note)
        return out
    finally:
        stack.stop()


def advisory_storm(tmp: Path) -> list[Outcome]:
    """4 rounds, 2.5 s apart, of 1,000 new sources each scanning 25 ports (a CRITICAL advisory per
    source: analysis.scan_threshold 20, 2 s windows) while one exporter sends 100,000 v5 flows/s;
    the advisory events the analyzer published against those the store holds."""
    stack = Stack(tmp, analysis={"interval": "2s", "window": "2s", "watermark": "1s", "scan_threshold": 20})
    try:
        stack.start("store", "analyzer", "collector")
        with Peaks(stack.pids) as peaks:
            load = paced(stack.port, 16, rate=100_000, version=5)
            time.sleep(2)
            scans = Traffic("scans", "--port", stack.port, "--rounds", 4, "--scanners", 1000, "--ports", 25,
                            "--every", 2.5).result()
            sent = load.result()["flows"] + scans["flows"]
            analyzer = stack.procs["analyzer"]
            quiet(lambda: len(_advisories(analyzer)), 4.0, 30)
            st, c, ex = drain(stack)
            analyzer.stop()
            published = _advisories(analyzer)
            events_status = stack.status().get("events") or {}
        stack.stop()
        counts = _stopped_counters(analyzer)
        flows = flows_outcome("advisory storm: 4,000 scanners, 100k v5 flows/s", stack, sent, st, c, ex,
                              peaks.peak, version=5, exporters=("127.0.0.1", "127.3.0.1"))
        db = sqlite3.connect(f"file:{stack.cfg['storage']['sqlite_path']}?mode=ro", uri=True)
        try:
            keys, events = db.execute("SELECT count(*), coalesce(sum(updates), 0) FROM advisories").fetchone()
        finally:
            db.close()
        lost = int(events_status.get("lost", 0))
        return [flows, Outcome("advisory storm: advisory events", len(published), events, lost,
                               f"store events.lost {lost:,} (analyzer advisories_lost "
                               f"{counts.get('advisories_lost', 0):,})", peaks.peak,
                               f"{len(set(published)):,} keys published, {keys:,} stored; the analyzer saw "
                               f"{len({k for k in published if k.startswith('scan:')}):,} of {scans['scanners']:,} "
                               f"scanners (it missed {counts.get('bus_gaps', 0):,} bus messages, its window "
                               f"dropped {counts.get('overflow_flows', 0):,} flows)", unit="advisories",
                               held=counts.get("advisories_unconfirmed", 0))]
    finally:
        stack.stop()


def _stopped_counters(proc: ServiceProcess) -> dict[str, int]:
    """The integer counters of a service's last ``msg=stopped`` log line."""
    line = next((x for x in reversed(proc.lines) if "msg=stopped" in x), "")
    return {k: int(v) for k, v in re.findall(r"\b(\w+)=(\d+)\b", line)}


def _advisories(proc: ServiceProcess) -> list[str]:
    """The key of every advisory event the analyzer logged as published."""
    return [m.group(1) for line in list(proc.lines) if (m := re.search(r"msg=advisory key=(\S+)", line))]


def crashloop(tmp: Path) -> Outcome:
    """`flowlens up` with a store that cannot open its SQLite path (a directory) for 10 s of RATE v9
    flows/s; the obstacle goes, the store comes up; the load goes on 6 s more."""
    blocker = tmp / "flowlens.db"
    blocker.mkdir()
    stack = Stack(tmp, store={"sqlite_path": str(blocker)})
    env = {**os.environ, **COMPOSE_ENV["store"], **COMPOSE_ENV["collector"]}
    up = subprocess.Popen([sys.executable, "-m", "flowmodel.cli", "up", "--config", str(stack.path), "--services",
                           "store,collector", "--max-backoff", "1", "--stable-after", "5"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(line.rstrip() for line in up.stdout), daemon=True)
    reader.start()

    def pids() -> dict[str, int]:
        out = {}
        for p in psutil.Process(up.pid).children(recursive=True):
            try:
                cmd = " ".join(p.cmdline())
            except psutil.Error:
                continue
            out.update({n: p.pid for n in ("store", "collector") if f"flowlens_{n}" in cmd})
        return out

    try:
        if not wait_for(lambda: any(re.search(r"^collector\s*\| .*msg=ready", x) for x in list(lines)), 60, 0.1):
            raise RuntimeError("the collector never became ready under flowlens up:\n" + "\n".join(lines[-20:]))
        with Peaks(pids) as peaks:
            load = paced(stack.port, 16)
            time.sleep(10)
            blocker.rmdir()
            sent = load.result()["flows"]
            wait_for(lambda: collector_counters(stack.exporters()).get("unconfirmed_flows", 1) == 0, 90, 0.5)
            st, ex = stack.status(), stack.exporters()
        stack.stop()   # the client only
        up.send_signal(signal.SIGTERM)
        up.wait(90)
        reader.join(5)
        crashes = sum("service exited, restarting" in x and "child=store" in x for x in lines)
        stack.cfg["storage"]["sqlite_path"] = str(blocker)
        return flows_outcome("store crash-looping 10 s under flowlens up, 30k v9 flows/s", stack, sent, st,
                             collector_counters(ex), ex, peaks.peak, note=f"store restarted {crashes} times")
    finally:
        if up.poll() is None:   # a fault that went wrong: stop what `flowlens up` started, then it
            children = psutil.Process(up.pid).children(recursive=True)
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(60)
            except subprocess.TimeoutExpired:
                for p in children:
                    try:
                        p.kill()
                    except psutil.Error:
                        pass
                up.kill()
                up.wait()


FAULTS = [
    ("store killed", lambda tmp: store_down(tmp, "store SIGKILL, down 15 s, 30k v9 flows/s", 15.0)),
    # issue 13's target: nothing lost with the store down up to 60 s at 30k flows/s, default spool
    ("store away 60 s", lambda tmp: store_down(tmp, "store SIGKILL, down 60 s, 30k v9 flows/s, default spool", 60.0)),
    ("spool overflow", lambda tmp: store_down(tmp, "store down 12 s, spool 2 MiB (unconfirmed 1 MiB)", 12.0,
                                              unacked_max_bytes="1MiB", spool_max_bytes="2MiB")),
    ("collector killed", collector_killed), ("disk full", disk_full), ("flood", flood),
    ("advisory storm", advisory_storm), ("crash loop", crashloop),
]


def table(outcomes: list[Outcome], failed: list[str]) -> str:
    head = ["fault", "sent", "stored", "counted lost", "held unconfirmed", "unaccounted", "RSS peak MiB store / collector / analyzer / web",
            "where the loss is counted; notes"]
    lines = ["| " + " | ".join(head) + " |", "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for o in outcomes:
        rss = " / ".join((f"{o.rss[n] / MIB:.0f}" + ("!" if o.rss[n] > LIMITS.get(n, 1 << 62) else "")) if n in o.rss
                         else "-" for n in SERVICES)
        cells = [o.fault, f"{o.sent:,}", f"{o.stored:,}", f"{o.lost:,}", f"{o.held:,}", f"{o.unaccounted:,}", rss,
                 f"{o.where}; {o.note}" if o.note else o.where]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    limits = ", ".join(f"{n} {LIMITS[n] / MIB:.0f}" for n in SERVICES)
    lines += [f"| {why} | | | | | | | failed |" for why in failed]
    return "\n".join(lines) + f"\n\ncompose memory limits (MiB): {limits}; ! marks a peak over its limit"


def selected(spec: str | None) -> list:
    """The faults FLOWLENS_BENCH_FAULTS names (comma-separated words matched against the start of each
    fault's name: ``storm`` or ``advisory storm,flood``); all of them when unset or empty."""
    words = [w.strip().lower() for w in (spec or "").split(",") if w.strip()]
    if not words:
        return FAULTS
    chosen = [(n, f) for n, f in FAULTS if any(n.startswith(w) or w in n.split() for w in words)]
    if not chosen:
        raise SystemExit(f"FLOWLENS_BENCH_FAULTS={spec!r} names no fault; faults: {', '.join(n for n, _ in FAULTS)}")
    return chosen


def run(report) -> None:
    outcomes: list[Outcome] = []
    failed: list[str] = []
    # taken out of the environment: the services refuse FLOWLENS_* variables that name no setting
    for name, fault in selected(os.environ.pop("FLOWLENS_BENCH_FAULTS", None)):
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="flowlens-bench-faults-") as d:
            try:
                got = fault(Path(d))
            except Exception as e:  # one fault that cannot run must not hide the others' numbers
                print(f"    {name}: failed: {type(e).__name__}: {e}", flush=True)
                report("faults", name, "failed", "", f"{type(e).__name__}: {e}")
                failed.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                continue
        for o in got if isinstance(got, list) else [got]:
            outcomes.append(o)
            print(f"    {o.fault}: sent {o.sent:,} stored {o.stored:,} counted lost {o.lost:,} held {o.held:,} unaccounted "
                  f"{o.unaccounted:,} ({time.monotonic() - t0:.0f} s)", flush=True)
            rss = ", ".join(f"{n} {o.rss[n] / MIB:.0f}" for n in SERVICES if n in o.rss)
            report("faults", f"{o.fault}: unaccounted", o.unaccounted, o.unit,
                   f"sent {o.sent:,}, stored {o.stored:,}, counted lost {o.lost:,} ({o.where}), held {o.held:,}; "
                   f"RSS peak MiB {rss}"
                   + (f"; {o.note}" if o.note else ""))
    print("\n" + table(outcomes, failed) + "\n", flush=True)
