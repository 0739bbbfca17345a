"""The machinery of the fault benchmarks (bench.faults): services on one generated config with the
compose file's settings, killed and restarted by name; each service's RSS peak on a thread; the
load in its own process (bench.faultload); the counts read back after a fault: the collector's
counters, the exporter's sequence losses, the flows in the SQLite file itself."""
from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

from .harness import REPO, ServiceProcess, stack_config, write_config
from .loadgen import RECORDS_PER_PACKET

COMPOSE = REPO / "deploy" / "docker-compose.yml"
SERVICES = ("store", "collector", "analyzer", "web")
ADDRESS_KEYS = re.compile(r"ENDPOINT|BIND|LISTEN|PATH")   # compose settings this machine's run replaces
COLLECTOR = {"ipfix_port": 0, "stats_interval": "1s", "resend_timeout": "1s"}
RATE = 30_000          # flows/s
SAMPLE_S = 0.1
MIB = 1 << 20

@dataclass
class Outcome:
    fault: str
    sent: int
    stored: int
    lost: int
    where: str                    # which counters make up ``lost``
    rss: dict[str, int]           # highest RSS per service, bytes
    note: str = ""
    unit: str = "flows"
    held: int = 0                 # flows the collector still held unconfirmed at the end (spooled for its next run)

    @property
    def unaccounted(self) -> int:
        return self.sent - self.stored - self.lost - self.held


def compose_settings() -> tuple[dict[str, int], dict[str, dict[str, str]]]:
    """Per service: the compose memory limit in bytes, and its FLOWLENS_* settings that are neither addresses
    nor CURVE key files (those name the containers' /run/secrets; the bench runs on loopback without keys)."""
    doc = yaml.safe_load(COMPOSE.read_text())
    limits, env = {}, {}
    for name, svc in doc["services"].items():
        m = re.fullmatch(r"(\d+)([kmg]?)", str(svc.get("mem_limit", "0")).lower())
        limits[name] = int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[m.group(2)] if m else 0
        env[name] = {k: str(v) for k, v in (svc.get("environment") or {}).items() if not ADDRESS_KEYS.search(k) and not k.startswith("FLOWLENS_SECURITY__")}
    return limits, env


LIMITS, COMPOSE_ENV = compose_settings()


def wait_for(predicate, timeout_s: float, interval_s: float = 0.2) -> bool:
    """Poll until ``predicate()`` is true; False at the deadline (a benchmark measures what it got)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # a query that timed out while a service restarts: ask again
            pass
        time.sleep(interval_s)
    return False


def quiet(count, quiet_s: float, max_s: float) -> int:
    """Until ``count()`` has not changed for ``quiet_s`` (at most ``max_s``); returns its last value."""
    last, changed, deadline = count(), time.monotonic(), time.monotonic() + max_s
    while time.monotonic() < deadline and time.monotonic() - changed < quiet_s:
        time.sleep(0.5)
        n = count()
        if n != last:
            last, changed = n, time.monotonic()
    return last


class Peaks:
    """Each service's highest RSS, sampled every SAMPLE_S on a thread. ``pids()`` is asked at every
    sample, so a service killed and started again is followed."""

    def __init__(self, pids):
        self.pids = pids
        self.peak: dict[str, int] = {}
        self._procs: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-peaks", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.sample()

    def sample(self) -> None:
        for name, pid in list(self.pids().items()):
            try:
                p = self._procs.setdefault(pid, psutil.Process(pid))
                self.peak[name] = max(self.peak.get(name, 0), p.memory_info().rss)
            except psutil.Error:
                continue

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class Traffic:
    """One run of bench.faultload in its own process."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.faultload", *map(str, args)],
                                     stdout=subprocess.PIPE, text=True, cwd=REPO)

    def result(self, timeout_s: float = 180) -> dict:
        out, _ = self.proc.communicate(timeout=timeout_s)
        if self.proc.returncode != 0:
            raise RuntimeError(f"bench.faultload failed with {self.proc.returncode}")
        return json.loads(out.strip().splitlines()[-1])


def paced(port: int, seconds: float, rate: int = RATE, version: int = 9) -> Traffic:
    return Traffic("paced", "--port", port, "--version", version, "--flows-per-s", rate, "--seconds", seconds)


class Stack:
    """Services on one generated config with the compose settings; started, killed, restarted by name."""

    def __init__(self, tmp: Path, **sections):
        collector = {**COLLECTOR, **sections.pop("collector", {})}
        self.cfg = stack_config(tmp, collector=collector, **sections)
        self.path = write_config(tmp / "flowlens.yaml", self.cfg)
        self.procs: dict[str, ServiceProcess] = {}
        self.port = self.cfg["collector"]["netflow_port"]
        self._client = None

    def start(self, *names: str) -> None:
        for name in names:
            self.procs[name] = ServiceProcess(name, self.path, env=COMPOSE_ENV.get(name)).start(timeout_s=60)
        if "collector" in names and "store" in self.procs:
            wait_for(lambda: any(s.get("service") == "collector" for s in self.status().get("services", [])), 20)

    def kill(self, name: str) -> None:
        self.procs[name].proc.send_signal(signal.SIGKILL)
        self.procs[name].proc.wait(10)

    def pids(self) -> dict[str, int]:
        return {n: p.proc.pid for n, p in self.procs.items() if p.proc and p.proc.poll() is None}

    def client(self):
        if self._client is None:
            from flowmodel.client import StoreClient
            self._client = StoreClient(self.cfg["query"]["endpoint"], timeout_s=10, retries=2)
        return self._client

    def status(self) -> dict:
        return self.client().status()

    def exporters(self) -> dict:
        return self.client().exporters()

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            self.procs[name].stop()
        if self._client is not None:
            self._client.close()
            self._client = None


def collector_counters(exporters: dict) -> dict:
    """Counters of the collector heard from last (the running one)."""
    cols = [c for c in exporters["collectors"] if c.get("kind") == "collector"]
    return max(cols, key=lambda c: c.get("last_seen") or 0)["counters"] if cols else {}


def sequence_lost_flows(exporters: dict, versions: dict[str, int]) -> int:
    """The load exporters' sequence losses in flows (``versions``: address -> export version), over
    every collector that saw them: v9 counts export packets (x30 flows), v5 and IPFIX flows."""
    return sum(int(r.get("sequence_lost") or 0) * (RECORDS_PER_PACKET if versions[r["exporter"]] == 9 else 1)
               for r in exporters["exporters"] if r.get("exporter") in versions and r.get("collector"))


def drain(stack: Stack, timeout_s: float = 90) -> tuple[dict, dict, dict]:
    """Until the collector holds nothing unconfirmed; stop it (its last health event follows); until
    the store's write queue is empty. Returns (status, collector counters, exporters reply)."""
    wait_for(lambda: collector_counters(stack.exporters()).get("unconfirmed_flows", 1) == 0, timeout_s, 0.5)
    stack.procs["collector"].stop()
    wait_for(lambda: (wq := stack.status()["write_queue"])["depth"] == 0 and not wq.get("rows_waiting"), 30)
    ex = stack.exporters()
    return stack.status(), collector_counters(ex), ex


def sqlite_flows(path: str) -> int:
    """Flows in the SQLite file: rows of every partition table plus rows in sealed blocks."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        parts = [r[0] for r in db.execute("SELECT name FROM partitions")]
        n = sum(db.execute(f'SELECT count(*) FROM "{p}"').fetchone()[0] for p in parts
                if db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (p,)).fetchone())
        return n + db.execute("SELECT coalesce(sum(rows), 0) FROM blocks").fetchone()[0]
    finally:
        db.close()


def flows_outcome(fault: str, stack: Stack, sent: int, st: dict, c: dict, ex: dict, rss: dict, version: int = 9,
                  note: str = "", exporters: tuple[str, ...] = ("127.0.0.1",)) -> Outcome:
    stored = sqlite_flows(stack.cfg["storage"]["sqlite_path"])
    delivery, seq = st["delivery"]["lost_flows"], sequence_lost_flows(ex, dict.fromkeys(exporters, version))
    where = (f"store delivery.lost_flows {delivery:,} (collector lost_flows {c.get('lost_flows', 0):,}, "
             f"spool dropped {c.get('spool_dropped_flows', 0):,}); exporter sequence_lost {seq:,} flows")
    extra = f"status said {st['sqlite']['rows']:,} rows" if st["sqlite"]["rows"] != stored else ""
    note = "; ".join(x for x in (note, f"kernel drops {c.get('kernel_drops', 0):,} datagrams",
                                 f"resent {c.get('resent_flows', 0):,}, store duplicates "
                                 f"{st['delivery']['duplicate_flows']:,}", extra) if x)
    return Outcome(fault, sent, stored, delivery + seq, where, rss, note, held=int(c.get("unconfirmed_flows") or 0))
