"""Browsers for bench/web.py, each in a process of its own (so their HTTP parsing never shares a GIL
with the client being timed): history clients asking 24 h flow pages back to back, a crowd of
browsers for a fixed time, and the timed client's Server-Timing breakdown and CPU use."""
from __future__ import annotations

import multiprocessing
import queue
import re
import statistics
import time

import psutil

ROWS = re.compile(rb'<td class="addr">')  # two per flow row of the flow explorer


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, int(round(q * len(ordered))) - 1)]


def _browse(base: str, browsers: list[tuple[str, int]], paths: tuple[str, ...], stop, start_at: float,
            results) -> None:
    """Browsers (address, offset), a thread each: ``paths`` in turn from ``offset`` until ``stop``;
    puts (end monotonic, path, status, ms, flow rows) per answer on ``results`` when they end."""
    import threading

    import httpx

    log: list[tuple] = []

    def browse(address: str, offset: int) -> None:
        transport = httpx.HTTPTransport(local_address=address)
        with httpx.Client(base_url=base, timeout=60, transport=transport) as c:
            while time.monotonic() < start_at:
                time.sleep(0.005)
            n = offset
            while not stop.is_set():
                path = paths[n % len(paths)]
                t0 = time.perf_counter()
                try:
                    r = c.get(path)
                    status, rows = r.status_code, len(ROWS.findall(r.content)) // 2
                except httpx.HTTPError as e:
                    status, rows = type(e).__name__, 0
                log.append((time.monotonic(), path, status, (time.perf_counter() - t0) * 1000, rows))
                n += 1
    threads = [threading.Thread(target=browse, args=b, daemon=True) for b in browsers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put(log)


class Browsers:
    """A browser per address, ``per_process`` of them (threads) in each process, all starting at
    once after ``delay_s``; ``stop()`` returns every answer."""

    def __init__(self, base: str, addresses: list[str], paths: tuple[str, ...], per_process: int = 1,
                 delay_s: float = 1.0):
        ctx = multiprocessing.get_context("spawn")
        self.stop_event = ctx.Event()
        self.results = ctx.Queue()
        self.start_at = time.monotonic() + delay_s
        browsers = [(a, i) for i, a in enumerate(addresses)]
        groups = [browsers[i:i + per_process] for i in range(0, len(browsers), per_process)]
        self.procs = [ctx.Process(target=_browse, args=(base, g, paths, self.stop_event, self.start_at, self.results),
                                  daemon=True) for g in groups]
        for p in self.procs:
            p.start()
        self.pids = [p.pid for p in self.procs]

    def wait_started(self) -> None:
        while time.monotonic() < self.start_at:
            time.sleep(0.01)

    def stop(self) -> list[tuple]:
        self.stop_event.set()
        answers: list[tuple] = []
        got, deadline = 0, time.monotonic() + 120
        while got < len(self.procs) and time.monotonic() < deadline:
            try:
                answers.extend(self.results.get(timeout=1))
                got += 1
            except queue.Empty:
                if not any(p.is_alive() for p in self.procs):
                    break  # a browser process died without its answers: report what came back
        for p in self.procs:
            p.join(10)
        return answers


def timed_get(http, path: str) -> tuple[float, int, dict]:
    """(ms as the client saw it, status, the Server-Timing parts in ms)."""
    from flowlens_web.timing import parse

    t0 = time.perf_counter()
    r = http.get(path)
    ms = (time.perf_counter() - t0) * 1000
    return ms, r.status_code, parse(r.headers.get("server-timing", ""))


def breakdown(samples: list[tuple[float, int, dict]]) -> dict[str, tuple[float, float]]:
    """p50/p95 of each Server-Timing part and of ``outside``: the client's time less the app's
    (HTTP, the event loop before the app saw the request, the client itself)."""
    parts: dict[str, list[float]] = {}
    for ms, _status, p in samples:
        for name, v in p.items():
            parts.setdefault(name, []).append(v)
        if "app" in p:
            parts.setdefault("outside", []).append(ms - p["app"])
    return {name: (statistics.median(v), percentile(v, 0.95)) for name, v in parts.items()}


class CpuWatch:
    """CPU seconds of named processes and the machine's busy share over a window."""

    def __init__(self, pids: dict[str, list[int]]):
        self.procs = {name: [psutil.Process(p) for p in ps] for name, ps in pids.items()}
        self.t0 = time.monotonic()
        self.cpu0 = {name: self._cpu(ps) for name, ps in self.procs.items()}
        psutil.cpu_percent(None)

    @staticmethod
    def _cpu(procs) -> float:
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def result(self) -> dict:
        """{name: cores used on average}, plus ``machine``: busy % of all cores."""
        secs = max(time.monotonic() - self.t0, 1e-6)
        out = {name: round((self._cpu(ps) - self.cpu0[name]) / secs, 2) for name, ps in self.procs.items()}
        out["machine"] = psutil.cpu_percent(None)
        out["seconds"] = round(secs, 1)
        return out
