"""Memory of the four services (store, collector, analyzer, web) as real processes, at idle, with a
full ring (storage.ring_capacity flows went through), and at the seed's peak: full ring, history
queries and web pages on top.

The budget (issue 12, item 6) is on the sum of the four RSS figures: under 120 MiB idle, under
350 MiB at the peak (the hard limit is 450). A service's figure is the RSS of its process plus that
of any child it started (none today; a web with workers or a store with helpers would have them).
A sum of RSS counts the pages of shared libraries
(libpython, numpy, libzmq) once per process; USS (memory only that process holds, from smaps) is
printed beside it so a change of private memory is told apart from shared pages, and PSS (shared
pages split among the processes that map them: what the four take from the machine together). The
interpreter floor (a bare python, and one that imported numpy, zmq, msgpack and yaml, as the store,
collector and analyzer must) is printed beside the idle total: what no service can go below. The
peak is the highest sum of RSS sampled every SAMPLE_S while the ring fills and while the queries and
pages run, not a snapshot after them. "Settled" is RSS SETTLE_S after the last page: what stays once
the store has handed freed memory back (its writer trims every 5 s).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from .harness import Load, ServiceProcess, stack_config, write_config

SERVICES = ("store", "collector", "analyzer", "web")
SEND_RATE = 150_000        # flows/s: below the store's lossless rate so the ring fills without shedding
IDLE_SETTLE_S = 3.0
FILL_WAIT_S = 120.0
SAMPLE_S = 0.05
SETTLE_S = 6.0             # after the pages, before the settled figures: longer than the writer's trim interval
DAY_MS = 86_400_000
# what a person browsing does: every page once, a flow search, the dashboard again
WEB_PAGES = ("/", "/flows", "/flows?src=10.0.0.0%2F8&range=1h", "/advisories", "/about", "/metrics", "/")
MB = 1 / (1 << 20)


def _family(p: psutil.Process) -> list[psutil.Process]:
    """A service's process and the children it started."""
    return [p, *p.children(recursive=True)]


def _memory(procs) -> dict[str, tuple[int, int, int]]:
    """(rss, uss, pss) bytes per service, its children included."""
    out = {}
    for n, p in procs.items():
        total = [0, 0, 0]
        for proc in _family(psutil.Process(p.proc.pid)):
            try:
                m = proc.memory_full_info()
            except psutil.NoSuchProcess:
                continue
            for i, v in enumerate((m.rss, m.uss, getattr(m, "pss", m.uss))):
                total[i] += v
        out[n] = tuple(total)
    return out


def _rss_with_children(p: psutil.Process) -> int:
    total = 0
    for proc in _family(p):
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


FLOOR_IMPORTS = "import numpy, zmq, msgpack, yaml"  # what the store, collector and analyzer cannot do without
# what the web cannot do without: the ASGI server and framework, templates, the query socket, its config
WEB_FLOOR_IMPORTS = "import asyncio, starlette.applications, uvicorn, jinja2, zmq, msgpack, yaml"


def interpreter_floor(imports: str = "") -> int:
    """RSS bytes of this venv's python after ``imports`` and nothing else: a service's lower bound."""
    code = f"{imports}\nprint(open('/proc/self/statm').read().split()[1])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return int(out.stdout.split()[-1]) * os.sysconf("SC_PAGE_SIZE")


class PeakSampler:
    """RSS of every service every SAMPLE_S on a thread: the highest total and each service's highest."""

    def __init__(self, procs):
        self._ps = {n: psutil.Process(p.proc.pid) for n, p in procs.items()}
        self.total_max = 0
        self.per_service_max = dict.fromkeys(self._ps, 0)
        self.phase_total_max = 0  # the same since the last split()
        self.phase_per_service_max = dict.fromkeys(self._ps, 0)
        self.mark_max = dict.fromkeys(self._ps, 0)  # the same since the last mark()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.sample()

    def sample(self) -> None:
        try:
            now = {n: _rss_with_children(p) for n, p in self._ps.items()}
        except psutil.Error:
            return
        with self._lock:
            self.total_max = max(self.total_max, sum(now.values()))
            self.phase_total_max = max(self.phase_total_max, sum(now.values()))
            for n, v in now.items():
                self.per_service_max[n] = max(self.per_service_max[n], v)
                self.phase_per_service_max[n] = max(self.phase_per_service_max[n], v)
                self.mark_max[n] = max(self.mark_max[n], v)

    def mark(self) -> dict[str, int]:
        """Each service's highest RSS since the last mark (a question's own peak), and a new mark."""
        self.sample()
        with self._lock:
            out = dict(self.mark_max)
            self.mark_max = {n: 0 for n in self._ps}
        return out

    def split(self) -> tuple[int, dict[str, int]]:
        """The peaks since the start (or the last split), and a new phase from now."""
        self.sample()
        with self._lock:
            out = self.phase_total_max, dict(self.phase_per_service_max)
            self.phase_total_max = 0
            self.phase_per_service_max = dict.fromkeys(self._ps, 0)
        return out

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()


def _history_queries(client, query_max_rows: int, peak: "PeakSampler") -> tuple[int, dict[str, int]]:
    """The questions the history pages ask, over the last day; a refusal (time limit) still counts
    the memory it took. Returns how many were answered and the store's peak RSS during each."""
    from flowmodel.client import StoreError

    now = int(time.time() * 1000)
    day = {"since": now - DAY_MS, "until": now}
    asks = {"flows": lambda: client.flows(limit=query_max_rows),
            "top src": lambda: client.top(by="src", metric="bytes", limit=10, **day),
            "top dst_port": lambda: client.top(by="dst_port", metric="bytes", limit=10, **day),
            "series": lambda: client.series(step=300, **day),
            "overview": lambda: client.overview(step=10, limit=10, since=now - 3_600_000, until=now),
            "flows of a host": lambda: client.flows(limit=50, src="10.0.0.1", **day)}
    answered = 0
    store_peaks = {}
    for name, ask in asks.items():
        peak.mark()
        try:
            ask()
            answered += 1
        except StoreError:
            pass
        store_peaks[name] = peak.mark()["store"]
    return answered, store_peaks


def _web_pages(listen: str, peak: "PeakSampler") -> tuple[int, dict[str, int]]:
    """GET each of WEB_PAGES; returns how many answered 200 and the store's peak RSS during each."""
    host, _, port = listen.rpartition(":")
    ok = 0
    store_peaks = {}
    for path in WEB_PAGES:
        peak.mark()
        try:
            with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=30) as r:
                r.read()
                ok += r.status == 200
        except (urllib.error.URLError, OSError):
            pass
        store_peaks[path] = max(store_peaks.get(path, 0), peak.mark()["store"])
    return ok, store_peaks


def run(report) -> None:
    from flowmodel.client import StoreClient

    with tempfile.TemporaryDirectory(prefix="flowlens-bench-resources-") as d:
        tmp = Path(d)
        cfg = stack_config(tmp, collector={"ipfix_port": 0, "stats_interval": "1s", "template_path": ""})
        path = write_config(tmp / "flowlens.yaml", cfg)
        procs: dict[str, ServiceProcess] = {}
        client = StoreClient(cfg["query"]["endpoint"], timeout_s=30, retries=0)
        query_max_rows = cfg["storage"].get("query_max_rows", 10_000)
        try:
            for name in SERVICES:
                procs[name] = ServiceProcess(name, path).start()
            time.sleep(IDLE_SETTLE_S)  # a benchmark settle time, not a test wait: let imports and first timers run
            idle = _memory(procs)
            capacity = client.status()["ring"]["capacity"]
            base = client.status()["flows_in"]
            with PeakSampler(procs) as peak:
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
                full = _memory(procs)
                fill_peak, fill_peaks = peak.split()  # the rest of the peak is the queries' and pages'

                # one heavy query on top: the biggest page of flows the store answers
                client.flows(limit=query_max_rows)
                after_query = _memory(procs)
                answered, question_peaks = _history_queries(client, query_max_rows, peak)
                pages_ok, page_peaks = _web_pages(cfg["web"]["listen"], peak)
            query_peak, query_peaks = peak.phase_total_max, peak.phase_per_service_max
            after_peak = _memory(procs)
            time.sleep(SETTLE_S)  # a benchmark settle time: what the services keep once their trims ran
            settled = _memory(procs)
        finally:
            client.close()
            for name in reversed(list(procs)):
                procs[name].stop()

    def total(snap, i):
        return sum(v[i] for v in snap.values()) * MB

    for name in SERVICES:
        report("resources", f"{name} RSS idle / ring full / peak",
               f"{idle[name][0] * MB:.0f} / {full[name][0] * MB:.0f} / {peak.per_service_max[name] * MB:.0f}", "MiB",
               f"USS idle / ring full: {idle[name][1] * MB:.0f} / {full[name][1] * MB:.0f}; peak while the ring "
               f"fills {fill_peaks[name] * MB:.0f}, while queries and pages run {query_peaks[name] * MB:.0f}")
    bare, floor = interpreter_floor() * MB, interpreter_floor(FLOOR_IMPORTS) * MB
    web_floor = interpreter_floor(WEB_FLOOR_IMPORTS) * MB
    report("resources", "total RSS idle", total(idle, 0), "MiB",
           f"budget < 120; USS {total(idle, 1):.0f} MiB, PSS {total(idle, 2):.0f} MiB; floor: a bare python "
           f"{bare:.1f} MiB, with numpy, zmq, msgpack and yaml {floor:.1f} MiB, the web's imports {web_floor:.1f}")
    # the budget against what four interpreters take before a line of FlowLens runs
    report("resources", "import floor of the four services", 3 * floor + web_floor, "MiB",
           f"3 x {floor:.1f} (store, collector, analyzer) + {web_floor:.1f} (web); idle is "
           f"{total(idle, 0) - 3 * floor - web_floor:.1f} MiB above it")
    report("resources", "total RSS with a full ring", total(full, 0), "MiB",
           f"ring {st['ring']['fill']:,}/{capacity:,} flows after {fill_s:.0f} s; USS {total(full, 1):.0f} MiB")
    report("resources", "total RSS after a 10k-row flows query", total(after_query, 0), "MiB",
           f"USS {total(after_query, 1):.0f} MiB")
    report("resources", "total RSS peak (ring fill, queries, pages)", peak.total_max * MB, "MiB",
           f"budget < 350, limit 450; highest sampled sum (ring fill {fill_peak * MB:.0f}, queries and pages "
           f"{query_peak * MB:.0f}); {answered}/6 history queries answered, "
           f"{pages_ok}/{len(WEB_PAGES)} pages 200; after them RSS {total(after_peak, 0):.0f}, "
           f"USS {total(after_peak, 1):.0f} MiB")
    # RSS a question freed but the store has not handed back yet (its trim runs every 5 s) counts in the next
    report("resources", "store RSS peak per history question", max(question_peaks.values()) * MB, "MiB",
           "; ".join(f"{q} {v * MB:.0f}" for q, v in question_peaks.items())
           + "; then the pages: " + "; ".join(f"{q} {v * MB:.0f}" for q, v in page_peaks.items()))
    report("resources", f"total RSS settled, {SETTLE_S:.0f} s after the pages", total(settled, 0), "MiB",
           " / ".join(f"{name} {settled[name][0] * MB:.0f}" for name in SERVICES)
           + f"; USS {total(settled, 1):.0f}, PSS {total(settled, 2):.0f} MiB")
