"""Floods of exporters and collector restarts through real processes (issue 13, items 5 and 3).

A fuzz flood from 1,500 loopback addresses (127.1.x.y) and 6,000 (exporter, observation domain)
pairs meets a collector with collector.max_exporters 200: the first 200 pairs get rows, the rest
are decoded and counted in one overflow row with the exact number of pairs and addresses folded;
the store's table, /metrics (web.metrics_max_exporters 20) and the analyzer's advisories stay
bounded: one advisory for the 200 exporters that went silent, one for the folding. Each service's
RSS is sampled during the flood and held against its memory limit in deploy/docker-compose.yml.

A collector killed and started again keeps its identity: the store's exporters reply has one
collector and one row for the exporter, /metrics one series per label set.
"""
from __future__ import annotations

import re
import signal
import threading
import urllib.request

import psutil

from support import flood
from support.services import ServiceProcess, send_udp, stack_config, wait_until, write_config

from flowlens_web.metrics import OTHER

MAX_EXPORTERS = 200
METRICS_EXPORTERS = 20
COMPOSE_LIMIT_MIB = {"store": 224, "collector": 64, "analyzer": 128, "web": 96}  # deploy/docker-compose.yml


class RssPeaks:
    """The highest RSS of each process, sampled every 50 ms on a thread."""

    def __init__(self, procs: dict[str, ServiceProcess]):
        self._ps = {n: psutil.Process(p.proc.pid) for n, p in procs.items()}
        self.peak = dict.fromkeys(self._ps, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for n, p in self._ps.items():
                try:
                    self.peak[n] = max(self.peak[n], p.memory_info().rss)
                except psutil.Error:
                    pass

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def metric_samples(body: str, name: str) -> dict[tuple, float]:
    """labels (sorted pairs) -> value of every sample of ``name``; a label set given twice fails."""
    out: dict[tuple, float] = {}
    for line in body.splitlines():
        m = re.match(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$", line)
        if m and m.group(1) == name:
            labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")))
            assert labels not in out, f"{name}{labels} given twice"
            out[labels] = float(m.group(3))
    return out


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


def collector_of(reply: dict, pid: int) -> str:
    (cid,) = [c["collector"] for c in reply["collectors"] if (c.get("process") or {}).get("pid") == pid]
    return cid


def test_a_flood_of_exporters_stays_bounded_and_summarised(tmp_path):
    plan = flood.plan(exporters=1500, domains_per_exporter=3)
    assert len(plan.pairs) == 6000
    cfg = stack_config(tmp_path, collector={"max_exporters": MAX_EXPORTERS, "stats_interval": "200ms",
                                            "socket_buffer": "64MiB"},
                       analysis={"exporter_silence": "3s", "health_interval": "1s"},
                       web={"metrics_max_exporters": METRICS_EXPORTERS})
    path = write_config(tmp_path / "flowlens.yaml", cfg)
    procs: dict[str, ServiceProcess] = {}
    try:
        for name in ("store", "collector", "analyzer", "web"):
            procs[name] = ServiceProcess(name, path).start()
        from flowmodel.client import StoreClient
        client = StoreClient(cfg["query"]["endpoint"], timeout_s=10, retries=1)
        pid = procs["collector"].proc.pid
        with RssPeaks(procs) as rss:
            sent = flood.send(plan, cfg["collector"]["netflow_port"], per_pause=200, pause_s=0.01)

            def received():
                reply = client.exporters()
                c = [c for c in reply["collectors"] if (c.get("process") or {}).get("pid") == pid]
                return reply if c and c[0]["counters"].get("datagrams") == sent else None
            reply = wait_until(received, timeout_s=60)
        cid = collector_of(reply, pid)
        counters = [c for c in reply["collectors"] if c["collector"] == cid][0]["counters"]
        assert counters["kernel_drops"] == 0  # the exact counts below need every datagram received

        # the collector's table, as the store keeps it: the first 200 pairs heard, then the overflow row
        rows = [r for r in reply["exporters"] if r.get("collector") == cid]
        tracked = {(r["exporter"], r["observation_domain"]) for r in rows if not r.get("overflow")}
        first: list = []
        for ip, payload in plan.datagrams:
            key = (ip, flood.domain_of(payload))
            if key not in first:
                first.append(key)
        assert tracked == set(first[:MAX_EXPORTERS])
        (other,) = [r for r in rows if r.get("overflow")]
        folded = plan.pairs - tracked
        assert other["exporter"] == OTHER and other["folded_domains"] == len(folded) == 5800
        assert other["folded_exporters"] == len({ip for ip, _ in folded}) and not other["folded_capped"]
        assert (counters["exporters_tracked"], counters["exporters_folded"]) == (MAX_EXPORTERS, 5800)
        # the store's own flows per address: 4 x max_exporters addresses, the rest under "other"
        stored = {r["exporter"]: r["store_flows"] for r in reply["exporters"] if r.get("store_flows")}
        assert len(stored) == 4 * MAX_EXPORTERS + 1 and stored[OTHER] > 0
        future = sum(int(r["decode_errors"].get("time_in_future", 0)) for r in rows)
        assert sum(r["flows"] for r in rows) - future == counters["flows"] > 0  # folded flows counted, none lost

        # /metrics: 20 exporters with the most flows, one "other" series with the rest
        base = "http://" + cfg["web"]["listen"]
        body = get(base + "/metrics")
        decoded = metric_samples(body, "flowlens_exporter_flows_decoded_total")
        assert len(decoded) == METRICS_EXPORTERS + 1
        assert decoded[(("exporter", OTHER), ("observation_domain", ""))] == \
            sum(r["flows"] for r in rows) - sum(sorted((v for k, v in decoded.items() if dict(k)["exporter"] != OTHER)))
        assert len(body) < 60_000, len(body)

        # the analyzer: one advisory for the 200 silent exporters, one for the folding
        def advisories():
            found = client.advisories(analyzer="health", limit=10_000)
            return found if any(a["key"] == "health:exporter many exporters" for a in found) else None
        found = wait_until(advisories, timeout_s=30)
        stopped = [a for a in found if a["subject"].startswith("exporter ")]
        assert [a["key"] for a in stopped] == ["health:exporter many exporters"]
        assert stopped[0]["severity"] == "CRITICAL" and stopped[0]["title"] == "200 exporters stopped sending"
        assert re.search(r"^200 exporters \(observation domains, from \d+ addresses\) stopped sending", stopped[0]["description"])
        assert " and 195 more" in stopped[0]["description"]
        folding = [a for a in found if a["key"] == f"health:folded {cid}"]
        assert len(folding) == 1  # raised while the flood went on: its count then, updated when it moves materially
        m = re.search(r"; ([\d,]+) more pairs from ([\d,]+) addresses are counted together as exporter 'other'",
                      folding[0]["description"])
        assert m and 0 < int(m.group(1).replace(",", "")) <= 5800
        assert len(found) < 20, [a["key"] for a in found]
    finally:
        for name in reversed(list(procs)):
            procs[name].stop()
    peaks = {n: v >> 20 for n, v in rss.peak.items()}
    print(f"flood of {sent} datagrams, {len(plan.pairs)} pairs: RSS peak MiB {peaks} (compose limits {COMPOSE_LIMIT_MIB})")
    for name, mib in peaks.items():
        assert mib < COMPOSE_LIMIT_MIB[name], (name, mib)


def test_a_restarted_collector_replaces_its_old_identity(tmp_path):
    cfg = stack_config(tmp_path, collector={"stats_interval": "200ms"})
    path = write_config(tmp_path / "flowlens.yaml", cfg)
    store = ServiceProcess("store", path).start()
    web = ServiceProcess("web", path).start()
    collector = None
    from flowmodel.client import StoreClient
    client = StoreClient(cfg["query"]["endpoint"], timeout_s=10, retries=1)
    base = "http://" + cfg["web"]["listen"]
    port = cfg["collector"]["netflow_port"]
    try:
        ids = []
        for run in range(2):
            collector = ServiceProcess("collector", path).start()
            pid = collector.proc.pid
            datagrams = [flood.v5_datagram(3, i * 10, 10, seed=i) for i in range(5 + run)]
            send_udp(port, datagrams)

            def reported():
                reply = client.exporters()
                mine = [c for c in reply["collectors"] if (c.get("process") or {}).get("pid") == pid]
                rows = [r for r in reply["exporters"] if r.get("exporter") == "127.0.0.1" and r.get("collector")]
                return reply if mine and any(r["packets"] == 5 + run for r in rows) else None
            reply = wait_until(reported, timeout_s=30)
            ids.append(collector_of(reply, pid))
            collectors = [c for c in reply["collectors"] if c.get("kind") == "collector"]
            assert len(collectors) == 1  # the killed run's identity was replaced, not kept beside
            rows = [r for r in reply["exporters"] if r.get("exporter") == "127.0.0.1" and r.get("collector")]
            assert [(r["observation_domain"], r["packets"], r["flows"]) for r in rows] == [(3, 5 + run, 10 * (5 + run))]

            def scraped():
                body = get(base + "/metrics")
                s = metric_samples(body, "flowlens_exporter_packets_received_total")
                return body if s.get((("exporter", "127.0.0.1"), ("observation_domain", "3"))) == 5 + run else None
            body = wait_until(scraped, timeout_s=30)
            assert len(metric_samples(body, "flowlens_exporter_packets_received_total")) == 1
            unconfirmed = metric_samples(body, "flowlens_collector_unconfirmed_flows")
            assert list(unconfirmed) == [(("collector", ids[-1]),)]
            if run == 0:
                collector.proc.send_signal(signal.SIGKILL)  # no last event: the new run's first one replaces it
                collector.proc.wait(10)
        assert ids[0] == ids[1]
    finally:
        if collector is not None:
            collector.stop()
        web.stop()
        store.stop()
        client.close()
