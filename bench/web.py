"""Web page latency with the store holding >= 1,000,000 flows: p50/p95 of each page over real HTTP
against the web process, the store a real process fed on the real bus. Targets (issue 5):
dashboard p95 < 100 ms, filtered flow-explorer page p95 < 150 ms; (issue 14) the dashboard's p95
under 100 ms while four other browsers run 24 h history pages. Measured, never asserted."""
from __future__ import annotations

import collections
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

from bench.harness import ServiceProcess, stack_config, write_config
from bench.webclients import Browsers, CpuWatch, breakdown, percentile, timed_get
from flowmodel import addr, bus
from flowmodel.client import StoreClient
from flowmodel.schema import FlowBatch

TOTAL_FLOWS = int(os.environ.get("BENCH_WEB_FLOWS", 1_000_000))
BATCH = 4096
SPAN_MS = 50 * 60 * 1000  # flows spread over the last 50 minutes: the ring and SQLite both answer
REQUESTS = int(os.environ.get("BENCH_WEB_REQUESTS", 40))
# which parts run (a comma list): ops (store ops direct), pages (each page alone), four (four
# dashboards at once), history (the dashboard under four history clients), crowd (many browsers)
PARTS = set(os.environ.get("BENCH_WEB_PARTS", "ops,pages,four,history,crowd").split(","))
CROWD_BROWSERS = int(os.environ.get("BENCH_WEB_CROWD_BROWSERS", 50))
CROWD_SECONDS = int(os.environ.get("BENCH_WEB_CROWD_SECONDS", 20))


def make_batch(rng: np.random.Generator, now_ms: int, n: int, lo_ms: int = 1_000, hi_ms: int = SPAN_MS) -> FlowBatch:
    """n flows starting between hi_ms and lo_ms before now (the feed moves lo/hi forward: flows arrive
    roughly in time order, as from exporters, so the ring holds the newest minutes)."""
    b = FlowBatch.empty(n)
    start = now_ms - rng.integers(lo_ms, max(hi_ms, lo_ms + 1), n)
    b["time_start"][:] = start
    b["time_end"][:] = start + rng.integers(0, 30_000, n)
    # 10.0.0.0/16 clients (skewed: a few talk a lot) to 10.8.0.0/16 servers
    src = (10 << 24) | rng.zipf(1.3, n).clip(1, 65_000).astype(np.uint32)
    dst = (10 << 24) | (8 << 16) | rng.integers(1, 65_000, n, dtype=np.uint32)
    b.columns["src_addr"] = addr.ipv4_column(src)
    b.columns["dst_addr"] = addr.ipv4_column(dst)
    b.columns["exporter"] = addr.ipv4_column(np.full(n, (192 << 24) | (2 << 8) | (1 + n % 4), dtype=np.uint32))
    proto = rng.choice(np.array([6, 17, 1], dtype=np.uint8), n, p=[0.7, 0.25, 0.05])
    b["protocol"][:] = proto
    b["dst_port"][:] = np.where(proto == 1, 0, rng.choice(np.array([443, 80, 53, 22, 123, 8080]), n))
    b["src_port"][:] = np.where(proto == 1, 0, rng.integers(1024, 65535, n))
    b["bytes"][:] = rng.integers(40, 1_500_000, n)
    b["packets"][:] = rng.integers(1, 1000, n)
    b["flow_version"][:] = 5
    return b


def feed(publish_endpoint: str, client: StoreClient, now_ms: int) -> float:
    """Publish TOTAL_FLOWS flows and wait until the store's series counts them; returns seconds."""
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.setsockopt(zmq.SNDHWM, 1_000_000)
    pub.connect(publish_endpoint)
    seq = bus.Sequencer("bench-web@local")
    rng = np.random.default_rng(7)
    t0 = time.monotonic()
    try:
        # the PUB delivers once the store's subscription reached it: probe with a keyed advisory
        probe = {"key": "bench:probe", "analyzer": "bench", "subject": "bench", "severity": "INFO", "state": "raised",
                 "first_seen": now_ms, "last_seen": now_ms, "title": "benchmark probe", "description": "benchmark",
                 "action": "none", "evidence": {}, "filter": {}}
        deadline = time.monotonic() + 20
        while not [a for a in client.advisories(include_resolved=True) if a.get("key") == "bench:probe"]:
            if time.monotonic() > deadline:
                raise RuntimeError("the store never saw the bus probe")
            pub.send_multipart([bus.TOPIC_ADVISORY, bus.encode_event(probe, seq)])
            time.sleep(0.1)
        sent = 0
        while sent < TOTAL_FLOWS:
            n = min(BATCH, TOTAL_FLOWS - sent)
            hi = int(SPAN_MS * (1 - sent / TOTAL_FLOWS)) + 1_000
            lo = max(1_000, int(SPAN_MS * (1 - (sent + n) / TOTAL_FLOWS)))
            pub.send_multipart([bus.flows_topic(5), bus.encode_batch(make_batch(rng, now_ms, n, lo, hi), seq)])
            sent += n
            if sent % (BATCH * 25) == 0:
                time.sleep(0.02)  # keep well under the store's ingest rate: no drops
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            st = client.status()
            if int(st.get("flows_committed") or 0) >= TOTAL_FLOWS:
                break
            time.sleep(0.5)
        else:
            raise RuntimeError("the store did not commit every flow within 300 s")
    finally:
        pub.close(linger=0)
        ctx.term()
    return time.monotonic() - t0


def measure(http, path: str, n: int) -> tuple[float, float, int]:
    http.get(path)  # warm
    times = []
    status = 0
    for _ in range(n):
        t0 = time.perf_counter()
        r = http.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        status = r.status_code
    times.sort()
    return statistics.median(times), times[max(0, int(round(0.95 * len(times))) - 1)], status


HISTORY_PAGES = ("/flows?dst=10.8.1.1&range=24h", "/flows?src=10.0.0.0%2F24&protocol=udp&range=24h",
                 "/flows?port=123&range=24h", "/flows?exporter=192.0.2.3&addr=10.8.0.0%2F16&range=24h")


def four_dashboards(base: str, report) -> None:
    """Four engineers' browsers at once: the store answers with its query workers in parallel."""
    import concurrent.futures

    import httpx

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        clients = [httpx.Client(base_url=base, timeout=60) for _ in range(4)]
        try:
            runs = list(pool.map(lambda c: measure(c, "/", REQUESTS), clients))
        finally:
            for c in clients:
                c.close()
    report("web", "dashboard / p95, 4 clients at once", round(max(r[1] for r in runs), 1), "ms",
           f"worst of 4 clients x {REQUESTS} requests; p50 {round(max(r[0] for r in runs), 1)} ms")


def dashboard_under_history(base: str, http, report, store_pid: int, web_pid: int, client: StoreClient) -> None:
    """The dashboard's p50/p95 while four other browsers (each its own address, 127.0.0.2-5, so none
    is held to another's web.heavy_queries_per_client, each its own process) ask 24 h flow-explorer
    pages back to back; then the store's overview op alone under the same load. Reports where the
    dashboard's time went (its Server-Timing), the processes' CPU and the history pages answered
    while it was timed."""
    history = Browsers(base, [f"127.0.0.{2 + i}" for i in range(4)], HISTORY_PAGES)
    try:
        history.wait_started()
        time.sleep(1.0)  # every history client past its first page
        http.get("/")  # warm
        watch = CpuWatch({"store": [store_pid], "web": [web_pid], "history clients": history.pids})
        t0 = time.monotonic()
        samples = [timed_get(http, "/") for _ in range(REQUESTS)]
        t1 = time.monotonic()
        cpu = watch.result()
        now = int(time.time() * 1000)
        ops = []
        for _ in range(REQUESTS):
            t = time.perf_counter()
            client.overview(step=10, limit=10, since=now - 600_000, until=now)
            ops.append((time.perf_counter() - t) * 1000)
    finally:
        answers = history.stop()
    times = [ms for ms, _, _ in samples]
    during = [a for a in answers if t0 <= a[0] <= t1]
    codes = collections.Counter(a[2] for a in during)
    rows = sum(a[4] for a in during)
    report("web", "dashboard / p95, 4 clients running 24 h history", round(percentile(times, 0.95), 1), "ms",
           f"issue 14 target < 100 ms; p50 {statistics.median(times):.1f} ms, {REQUESTS} requests, statuses "
           f"{dict(collections.Counter(st for _, st, _ in samples))}")
    report("web", "history pages answered while the dashboard was timed", len(during), "pages",
           f"in {t1 - t0:.1f} s by status {dict(sorted(codes.items(), key=str))}, {rows} flow rows shown, "
           f"p50 {statistics.median([a[3] for a in during] or [float('nan')]):.0f} ms each")
    parts = breakdown(samples)
    report("web", "dashboard under history: Server-Timing p50 / p95", " ".join(
        f"{k} {v[0]:.1f}/{v[1]:.1f}" for k, v in parts.items()), "ms",
           "lane: wait for a store connection; store: the store's answers; resume: event loop after the "
           "query thread; render: template; app: whole request; outside: the client's time less app")
    report("web", "CPU while the dashboard was timed", " ".join(f"{k} {v}" for k, v in cpu.items()), "",
           "cores used per process (machine: busy % of all cores)")
    report("web", "store overview op p50 / p95 under the same history load",
           f"{statistics.median(ops):.1f} / {percentile(ops, 0.95):.1f}", "ms", "StoreClient direct, after the dashboard")


CROWD_PAGES = ("/", "/flows", "/?range=24h", "/flows?dst=10.8.1.1&range=24h", "/advisories",
               "/flows?src=10.0.0.0%2F24&protocol=tcp&port=443&range=1h", "/about", "/flows?port=123&range=24h")


def crowd(base: str, report, store_pid: int, web_pid: int) -> None:
    """CROWD_BROWSERS browsers (each its own address, 10 to a process) asking CROWD_PAGES back to back
    for CROWD_SECONDS: issue 14's "50 concurrent browsers for 20 s, no errors but deliberate 429s"."""
    browsers = Browsers(base, [f"127.0.1.{1 + i}" for i in range(CROWD_BROWSERS)], CROWD_PAGES, per_process=10)
    try:
        browsers.wait_started()
        watch = CpuWatch({"store": [store_pid], "web": [web_pid], "browsers": browsers.pids})
        time.sleep(CROWD_SECONDS)
        cpu = watch.result()
    finally:
        answers = browsers.stop()
    codes = collections.Counter(a[2] for a in answers)
    times = [a[3] for a in answers]
    errors = sum(n for c, n in codes.items() if c not in (200, 429))
    failed = collections.Counter((a[1], a[2]) for a in answers if a[2] not in (200, 429))
    report("web", f"{CROWD_BROWSERS} browsers for {CROWD_SECONDS} s: answers by status",
           str(dict(sorted(codes.items(), key=str))), "", f"errors other than 429: {errors}" + (
               f" ({', '.join(f'{n} x {st} on {path}' for (path, st), n in failed.most_common(4))})" if failed else ""))
    report("web", f"{CROWD_BROWSERS} browsers: p50 / p95 / max", f"{statistics.median(times):.0f} / "
           f"{percentile(times, 0.95):.0f} / {max(times):.0f}", "ms", f"{len(answers) / CROWD_SECONDS:.1f} pages/s")
    dash = [a[3] for a in answers if a[1] == "/"]
    report("web", f"{CROWD_BROWSERS} browsers: dashboard / p50 / p95", f"{statistics.median(dash):.0f} / "
           f"{percentile(dash, 0.95):.0f}", "ms", f"{len(dash)} dashboards")
    report("web", f"CPU under {CROWD_BROWSERS} browsers", " ".join(f"{k} {v}" for k, v in cpu.items()), "",
           "cores used per process (machine: busy % of all cores)")


def run(report) -> None:
    import httpx

    with tempfile.TemporaryDirectory(prefix="flowlens-bench-web-") as tmp:
        tmp_path = Path(tmp)
        # The default ring (600,000 flows: the newest ~30 of the 50 minutes) so older windows are read from
        # SQLite as in a real store, and a deep writer queue: this bench loads as fast as it can and
        # measures pages, not ingest (the default 64-batch queue sheds such a burst, counted); a deep bus
        # queue for the same reason (the default 32 MiB holds ~15 batches: a burst of 4096-flow batches
        # overflowed it, 746,048 of 1,000,000 flows arrived, and the bench waited in vain).
        cfg = stack_config(tmp_path, store={"write_queue_batches": 1024}, bus={"queue_bytes": "1GiB"})
        path = write_config(tmp_path / "flowlens.yaml", cfg)
        store = ServiceProcess("store", path).start(timeout_s=30)
        web = None
        client = StoreClient(cfg["query"]["endpoint"], timeout_s=30, retries=0)
        try:
            now_ms = int(time.time() * 1000)
            secs = feed(cfg["bus"]["publish_endpoint"], client, now_ms)
            report("web", "flows in the store for this run", TOTAL_FLOWS, "flows", f"fed over the bus in {secs:.1f} s")
            # the dashboard's store queries one by one, so a slow page points at its slow op
            now = int(time.time() * 1000)
            since = now - 600_000
            for name, call in () if "ops" not in PARTS else (("overview (what the dashboard asks: the four below in one read)",
                                lambda: client.overview(step=10, limit=10, since=since, until=now)),
                               ("series 10 s steps, spread + scaled",
                                lambda: client.series(step=10, since=since, until=now, spread=True, scaled=True)),
                               ("top src, scaled", lambda: client.top(by="src", limit=10, since=since, until=now, scaled=True)),
                               ("top dst, scaled", lambda: client.top(by="dst", limit=10, since=since, until=now, scaled=True)),
                               ("top protocol, scaled",
                                lambda: client.top(by="protocol", limit=10, since=since, until=now, scaled=True)),
                               ("series 24 h, 5 min steps (rollups)",
                                lambda: client.series(step=300, since=now - 86_400_000, until=now)),
                               ("advisories", lambda: client.advisories(include_resolved=False)),
                               ("exporters", lambda: client.exporters())):
                times = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    call()
                    times.append((time.perf_counter() - t0) * 1000)
                report("web", f"store op: {name}", round(statistics.median(times), 1), "ms",
                       "median of 5, StoreClient direct")
            web = ServiceProcess("web", path).start(timeout_s=30)
            base = "http://" + cfg["web"]["listen"]
            pages = [
                ("dashboard /", "/", "target p95 < 100 ms"),
                ("dashboard, last 1 h (series + top, not the ring's overview)", "/?range=1h", ""),
                ("dashboard, last 24 h (series + top)", "/?range=24h", "issue 15 target p95 < 300 ms"),
                ("flows CSV, every match of src /24 + tcp + 443, 1 h", "/flows.csv?src=10.0.0.0%2F24&protocol=tcp&port=443&range=1h",
                 "streamed through the keyset cursor"),
                ("flows, unfiltered, last 1 h", "/flows", ""),
                ("flows, filtered src CIDR + tcp + port, 1 h", "/flows?src=10.0.0.0%2F24&protocol=tcp&port=443&range=1h",
                 "target p95 < 150 ms"),
                ("flows, filtered dst host, 24 h", "/flows?dst=10.8.1.1&range=24h", "target p95 < 150 ms"),
                ("flows, either address /16, 5 min", "/flows?addr=10.8.0.0%2F16&range=5m", ""),
                ("advisories", "/advisories", ""),
                ("about", "/about", ""),
                ("metrics", "/metrics", ""),
            ]
            with httpx.Client(base_url=base, timeout=60) as http:
                first = http.get("/flows?protocol=udp&range=1h").text
                nxt = first.split('class="next" rel="next" href="', 1)
                if len(nxt) == 2:
                    pages.append(("flows, udp, second page (keyset cursor)", nxt[1].split('"', 1)[0].replace("&amp;", "&"), ""))
                for name, url, note in pages if "pages" in PARTS else ():
                    p50, p95, status = measure(http, url, REQUESTS)
                    report("web", f"{name} p50", round(p50, 1), "ms", f"HTTP {status}, {REQUESTS} requests")
                    report("web", f"{name} p95", round(p95, 1), "ms", note)
                if "four" in PARTS:
                    four_dashboards(base, report)
                if "history" in PARTS:
                    dashboard_under_history(base, http, report, store.proc.pid, web.proc.pid, client)
            if "crowd" in PARTS:
                crowd(base, report, store.proc.pid, web.proc.pid)
            q = client.status()["queries"]
            report("web", "store queries answered from ring / SQLite", f"{q.get('ring', 0)} / {q.get('sqlite', 0)}", "",
                   f"ring holds {cfg['storage'].get('ring_capacity', 'the default')} flows")
            rss = sum(p.memory_info().rss for p in [__import__("psutil").Process(web.proc.pid)])
            report("web", "web process RSS after the run", round(rss / 2**20, 1), "MiB", "")
        finally:
            client.close()
            if web:
                web.stop()
            store.stop(timeout_s=120)
