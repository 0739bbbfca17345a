"""Helpers for the web's integration and browser tests: a real store (and the web) as processes,
and a publisher that puts known flow batches and advisory events on the real bus."""
from __future__ import annotations

import time

import numpy as np
import zmq

from pathlib import Path

from flowmodel import addr, bus
from flowmodel.pcap import read_datagrams
from flowmodel.schema import FlowBatch
from support.services import ServiceProcess, ServiceStack, send_udp, wait_until

HOSTILE = "<script>alert('x')</script> & \"quotes\" 'single' ]]>"
HOSTILE_KEY = "scan:" + HOSTILE
SCAN_SOURCE = "172.16.0.55"


class BusPublisher:
    """A PUB socket connected to the store's bus forwarder (bus.publish_endpoint)."""

    def __init__(self, endpoint: str, source: str = "webtest@local"):
        self.ctx = zmq.Context()
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.setsockopt(zmq.SNDHWM, 100_000)
        self.pub.connect(endpoint)
        self.seq = bus.Sequencer(source)

    def flows(self, batch: FlowBatch, version: int = 5) -> None:
        self.pub.send_multipart([bus.flows_topic(version), bus.encode_batch(batch, self.seq)])

    def event(self, topic: bytes, body: dict) -> None:
        self.pub.send_multipart([topic, bus.encode_event(body, self.seq)])

    def close(self) -> None:
        self.pub.close(linger=0)
        self.ctx.term()


def advisory(now_ms: int, key: str = HOSTILE_KEY, severity: str = "CRITICAL", state: str = "raised",
             title: str = "Port scan " + HOSTILE, subject: str = SCAN_SOURCE, flt: dict | None = None,
             analyzer: str = "scan",
             description: str = f"{SCAN_SOURCE} touched 150 ports of 10.1.0.9 in 60 s; exporter name {HOSTILE} bell\x07",
             action: str = "Check the host " + HOSTILE, evidence: dict | None = None) -> dict:
    return {"key": key, "analyzer": analyzer, "subject": subject, "severity": severity, "state": state,
            "first_seen": now_ms - 240_000, "last_seen": now_ms - 30_000, "title": title,
            "description": description, "action": action,
            "evidence": evidence if evidence is not None else {"ports": 150, "window_start": now_ms - 300_000,
                                                               "window_end": now_ms},
            "filter": flt if flt is not None else {"src": SCAN_SOURCE, "since": now_ms - 300_000, "until": now_ms}}


# The other two fixture advisories, each worded as its analyzer words it.
TOP_TALKER_DESCRIPTION = "10.0.0.1 sent 11.1 % of all bytes in the last 10 minutes (3.5 KB of 31.6 KB), the most of any host."
HEALTH_DESCRIPTION = "Exporter 192.0.2.10 sent nothing for 6 min, then came back; flows from that time are missing."


def synthetic_flows(now_ms: int, n: int = 300, seed: int = 1) -> FlowBatch:
    """n flows over the last 5 minutes: 10.0.0.1-10 talk to 10.1.0.1-20 over TCP 443/22, UDP 53 and
    ICMP; the first 30 come from the scanning host SCAN_SOURCE to ports 1000-1029."""
    rng = np.random.default_rng(seed)
    b = FlowBatch.empty(n)
    start = now_ms - rng.integers(5_000, 280_000, n)
    b["time_start"][:] = start
    b["time_end"][:] = start + rng.integers(0, 4_000, n)
    src = [f"10.0.0.{1 + i % 10}" for i in range(n)]
    dst = [f"10.1.0.{1 + (i * 7) % 20}" for i in range(n)]
    proto = np.array([6, 6, 17, 1])[np.arange(n) % 4]
    dport = np.array([443, 22, 53, 0])[np.arange(n) % 4]
    sport = np.where(proto == 1, 0, 40000 + np.arange(n) % 2000)
    src[:30] = [SCAN_SOURCE] * 30
    dst[:30] = ["10.1.0.9"] * 30
    proto[:30] = 6
    dport[:30] = 1000 + np.arange(30)
    sport[:30] = 55555
    b.columns["src_addr"] = addr.from_texts(src)
    b.columns["dst_addr"] = addr.from_texts(dst)
    b.columns["exporter"] = addr.from_texts(["192.0.2.10"] * n)
    b["protocol"][:] = proto
    b["dst_port"][:] = dport
    b["src_port"][:] = sport
    b["bytes"][:] = (np.arange(n) % 10 + 1) * 1000 + 40
    b["packets"][:] = np.arange(n) % 10 + 1
    b["tcp_flags"][:] = np.where(proto == 6, 0x1B, 0)
    b["flow_version"][:] = 5
    return b


class WebStack:
    """The store and web as processes on one generated config, fed with known flows and advisories."""

    def __init__(self, tmp_path, flows: int = 300, **sections):
        sections.setdefault("web", {}).setdefault("page_size", 20)
        self.stack = ServiceStack(tmp_path, ["store"], **sections)
        self.web: ServiceProcess | None = None
        self.now_ms = int(time.time() * 1000)
        self.n_flows = flows

    @property
    def cfg(self) -> dict:
        return self.stack.cfg

    @property
    def base_url(self) -> str:
        return "http://" + self.cfg["web"]["listen"]

    def client(self):
        return self.stack.client()

    def start(self, web: bool = True) -> "WebStack":
        self.stack.start()
        self.publisher = BusPublisher(self.cfg["bus"]["publish_endpoint"])
        client = self.client()
        try:
            # The PUB only delivers once its connection carries the store's subscription: repeat the
            # (idempotent, keyed) advisory until the store has it, then everything after arrives.
            def advisory_arrived():
                self.publisher.event(bus.TOPIC_ADVISORY, advisory(self.now_ms))
                return [a for a in client.advisories(include_resolved=True) if a.get("key") == HOSTILE_KEY]
            wait_until(advisory_arrived, timeout_s=15, interval_s=0.2)
            self.publisher.event(bus.TOPIC_ADVISORY, advisory(
                self.now_ms, key="top_talkers:10.0.0.1", severity="WARNING", title="10.0.0.1 sends most bytes",
                subject="10.0.0.1", flt={"src": "10.0.0.1", "since": self.now_ms - 600_000},
                analyzer="top_talkers", description=TOP_TALKER_DESCRIPTION,
                action="Check that this volume from 10.0.0.1 is expected (backups, updates).",
                evidence={"bytes": 3_540, "share": 0.111}))
            self.publisher.event(bus.TOPIC_ADVISORY, advisory(
                self.now_ms, key="health:old", severity="INFO", state="resolved", title="Exporter came back",
                subject="192.0.2.10", flt={"exporter": "192.0.2.10"}, analyzer="health",
                description=HEALTH_DESCRIPTION, action="", evidence={"silent_s": 360}))
            self.publisher.flows(synthetic_flows(self.now_ms, self.n_flows))
            wait_until(lambda: len(client.flows(limit=self.n_flows + 10, since=self.now_ms - 3_600_000)) >= self.n_flows,
                       timeout_s=15)
            wait_until(lambda: len(client.advisories(include_resolved=True)) >= 3, timeout_s=10)
        finally:
            client.close()
        if web:
            self.web = ServiceProcess("web", self.stack.config_path).start()
        return self

    def stop(self) -> dict:
        rcs = {}
        if self.web:
            rcs["web"] = self.web.stop()
        if getattr(self, "publisher", None):
            self.publisher.close()
        rcs.update(self.stack.stop())
        return rcs


DATA = Path(__file__).resolve().parents[1] / "data"
TELNET_CAPTURE = "softflowd_v9_telnet.pcap"
TELNET_KEY = "protocol_mix:telnet:127.0.0.1"
# the analyzer's windows run on the capture's own (old) time; idle wall time closes them quickly
LIVE_ANALYSIS = {"interval": "2s", "window": "60s", "watermark": "5s", "idle_after": "1s", "health_interval": "1s",
                 "update_change": 0.01,
                 "local_networks": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "127.0.0.0/8"]}


class LiveStack:
    """Store, collector, analyzer and web as processes; softflowd's v9 telnet capture replayed to the
    collector until the analyzer's telnet advisory holds all 10 telnet flows (``self.advisory``)."""

    def __init__(self, tmp_path):
        self.stack = ServiceStack(tmp_path, ["store", "collector", "analyzer"], analysis=LIVE_ANALYSIS,
                                  web={"page_size": 20})
        self.web: ServiceProcess | None = None
        self.advisory: dict = {}

    @property
    def cfg(self) -> dict:
        return self.stack.cfg

    @property
    def base_url(self) -> str:
        return "http://" + self.cfg["web"]["listen"]

    def start(self) -> "LiveStack":
        self.stack.start()
        self.web = ServiceProcess("web", self.stack.config_path).start()
        client = self.stack.client()
        try:
            send_udp(self.stack.netflow_port, [d.payload for d in read_datagrams(str(DATA / TELNET_CAPTURE))])
            self.advisory = wait_until(lambda: [a for a in client.advisories(analyzer="protocol_mix", include_resolved=True)
                                                if a["key"] == TELNET_KEY and a["evidence"]["flows"] == 10], 30)[0]
        finally:
            client.close()
        return self

    def stop(self) -> dict:
        rcs = {"web": self.web.stop()} if self.web else {}
        rcs.update(self.stack.stop())
        return rcs
