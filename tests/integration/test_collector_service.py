"""The real collector process: NetFlow v5 corpus packets over loopback UDP in, flow batches and
exporter health events out on a SUB socket the test binds on the collector's publish endpoint."""
from __future__ import annotations

import csv
import json
import time
from collections import Counter
from pathlib import Path

import pytest
import zmq

from flowmodel import bus
from flowmodel.addr import to_text
from flowmodel.pcap import read_datagrams
from support.services import ServiceProcess, send_udp, stack_config, write_config

DATA = Path(__file__).resolve().parents[1] / "data"
V5_FILES = ["softflowd_v5_dns", "pmacct_v5_http", "fprobe_v5_icmp"]


class BusTap:
    """A SUB socket bound where the collector's PUB connects; collects flows and events."""

    def __init__(self, endpoint: str):
        self.ctx = zmq.Context()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RCVHWM, 100_000)
        self.sub.subscribe(b"")
        self.sub.bind(endpoint)
        self.topics: list[bytes] = []
        self.batches = []
        self.events: list[dict] = []
        self.gaps = bus.GapCounter()
        self.seen: set = set()

    def pump(self, timeout_ms: int = 50) -> None:
        while self.sub.poll(timeout_ms):
            topic, body = self.sub.recv_multipart()
            self.topics.append(topic)
            if topic.startswith(bus.TOPIC_FLOWS_PREFIX):
                env, batch = bus.decode_batch(body)
                if (env.stream, env.batch_seq) in self.seen:
                    continue  # no store confirms here: after collector.resend_timeout the collector sends again
                self.seen.add((env.stream, env.batch_seq))
                self.batches.append((topic, batch))
            elif topic == bus.TOPIC_RESEND:
                env = bus.envelope_of(bus.decode_body(body))
            else:
                msg = bus.decode_body(body)
                env = bus.envelope_of(msg)
                self.events.append(msg)
            self.gaps.observe(env.source, env.seq)
            timeout_ms = 0

    def flow_count(self) -> int:
        return sum(b.count for _t, b in self.batches)

    def wait_flows(self, n: int, timeout_s: float = 15.0) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.flow_count() < n:
            self.pump(100)
        return self.flow_count()

    def wait_event(self, predicate, timeout_s: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for ev in self.events:
                if predicate(ev):
                    return ev
            self.pump(100)
        raise AssertionError(f"no matching health event within {timeout_s} s; got {len(self.events)} events")

    def close(self) -> None:
        if not self.sub.closed:
            self.sub.close()
            self.ctx.term()


@pytest.fixture
def collector_env(tmp_path):
    """Returns a starter: start(**collector_overrides) -> (ServiceProcess, BusTap, cfg)."""
    started: list = []

    def start(**collector):
        # the tap confirms nothing (it is no store): a long resend_timeout keeps the collector from sending again
        cfg = stack_config(tmp_path, collector={"stats_interval": "300ms", "resend_timeout": "1h", **collector})
        path = write_config(tmp_path / "collector.yaml", cfg)
        tap = BusTap(cfg["bus"]["publish_endpoint"])
        proc = ServiceProcess("collector", path)
        started.append((proc, tap))
        proc.start()
        # The first health event proves the PUB->SUB subscription is in place (no slow-joiner loss).
        tap.wait_event(lambda e: e.get("kind") == "collector")
        return proc, tap, cfg

    yield start
    for proc, tap in started:
        proc.stop()
        tap.close()


def payloads(name: str) -> list[bytes]:
    return [d.payload for d in read_datagrams(str(DATA / f"{name}.pcap"))]


def truth_rows(name: str) -> Counter:
    with open(DATA / f"{name}.flows.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["kind"] == "flow"]
    return Counter((r["src_addr"], r["dst_addr"], int(r["src_port"]), int(r["dst_port"]), int(r["proto"]),
                    int(r["octets"]), int(r["packets"]), int(r["tcp_flags"], 16), int(r["tos"], 16)) for r in rows)


def received_rows(batches) -> Counter:
    out = Counter()
    for _topic, b in batches:
        c = b.columns
        for i in range(b.count):
            out[(to_text(bytes(c["src_addr"][i])), to_text(bytes(c["dst_addr"][i])), int(c["src_port"][i]),
                 int(c["dst_port"][i]), int(c["protocol"][i]), int(c["bytes"][i]), int(c["packets"][i]),
                 int(c["tcp_flags"][i]), int(c["tos"][i]))] += 1
    return out


def test_collector_publishes_every_v5_flow_with_its_fields(collector_env):
    proc, tap, cfg = collector_env()
    expected = Counter()
    datagrams = 0
    for name in V5_FILES:
        datagrams += send_udp(cfg["collector"]["netflow_port"], payloads(name))
        expected += truth_rows(name)
    total = sum(expected.values())
    assert tap.wait_flows(total) == total
    tap.pump(300)  # anything beyond the expected count would be a duplicate
    assert tap.flow_count() == total
    assert received_rows(tap.batches) == expected
    assert {t for t, _b in tap.batches} == {b"flows.5"}
    for _t, b in tap.batches:
        assert set(b.columns["flow_version"].tolist()) == {5}
        assert {to_text(bytes(e)) for e in b.columns["exporter"]} == {"127.0.0.1"}
        assert (b.columns["time_end"] >= b.columns["time_start"]).all()
        assert b.count <= 4096
    assert tap.gaps.total_gaps == 0
    health = tap.wait_event(lambda e: e["counters"]["datagrams"] == datagrams)
    assert health["counters"]["flows"] == total


def test_collector_publishes_exporter_health_with_counters(collector_env):
    proc, tap, cfg = collector_env(instance_id="edge-1")
    sent = send_udp(cfg["collector"]["netflow_port"], payloads("softflowd_v5_dns"))
    flows = sum(truth_rows("softflowd_v5_dns").values())
    ev = tap.wait_event(lambda e: e["counters"]["datagrams"] == sent and e["exporters"])
    assert ev["kind"] == "collector"
    assert ev["collector"] == ev["source"] == "edge-1"
    assert ev["stats_interval"] == 0.3  # the analyzer takes a collector silent for three of these as stopped
    assert ev["counters"]["flows"] == flows
    assert ev["counters"]["kernel_drops"] == 0
    ports = {cfg["collector"]["netflow_port"], cfg["collector"]["ipfix_port"], cfg["collector"]["sflow_port"]}
    assert {s["port"] for s in ev["socket"]} == ports
    for s in ev["socket"]:
        assert s["rcvbuf_requested"] == 8 << 20
        assert s["rcvbuf_granted"] > 0
        assert s["kernel_drops"] == 0
    assert sorted(ev["listen"]) == sorted(f"127.0.0.1:{p}" for p in ports)
    (exp,) = ev["exporters"]
    assert exp["exporter"] == "127.0.0.1"
    assert exp["version"] == 5
    assert exp["packets"] == sent
    assert exp["flows"] == flows
    assert exp["decode_errors"] == {}
    assert ev["process"]["rss_bytes"] > 0
    assert ev["process"]["pid"] == proc.proc.pid
    # both listeners take any version: the same packets on the IPFIX port count too
    send_udp(cfg["collector"]["ipfix_port"], payloads("softflowd_v5_dns"))
    tap.wait_event(lambda e: e["counters"]["datagrams"] == 2 * sent and e["counters"]["flows"] == 2 * flows)


def test_collector_counts_bad_datagrams_and_keeps_running(collector_env):
    proc, tap, cfg = collector_env()
    port = cfg["collector"]["netflow_port"]
    send_udp(port, [b"", b"\x00", b"\x00\x05garbage", b"\x00\x63" + bytes(40)])
    good = send_udp(port, payloads("softflowd_v5_dns"))
    flows = sum(truth_rows("softflowd_v5_dns").values())
    assert tap.wait_flows(flows) == flows
    ev = tap.wait_event(lambda e: e["counters"]["datagrams"] >= good + 3)
    errors = sum(sum(x["decode_errors"].values()) for x in ev["exporters"])
    assert errors >= 3
    assert ev["counters"]["loop_errors"] == 0
    assert proc.proc.poll() is None


def test_sigterm_publishes_everything_received(collector_env):
    # Nothing is cut by size or age: every flow must go out in the stop path.
    proc, tap, cfg = collector_env(batch_max_flows=1_000_000, batch_max_age="10m")
    port = cfg["collector"]["netflow_port"]
    sent = 0
    expected = 0
    for _round in range(20):
        for name in V5_FILES:
            sent += send_udp(port, payloads(name))
            expected += sum(truth_rows(name).values())
    # On loopback a datagram is in the socket buffer when sendto returns; stop right away so part
    # of them is still in the kernel buffer and must be drained.
    tap.pump(0)
    assert tap.flow_count() == 0  # nothing is cut before the stop
    assert proc.stop() == 0
    assert tap.wait_flows(expected) == expected
    tap.pump(300)
    final = tap.events[-1]  # the stop path's health event comes after the last batch
    assert tap.topics[-1] == bus.TOPIC_EXPORTER
    assert final["counters"]["datagrams"] == sent
    assert final["counters"]["published_flows"] == expected == tap.flow_count()
    assert final["counters"]["pending_flows"] == 0
    assert tap.gaps.total_gaps == 0
    assert "msg=stopped" in proc.log()


def test_flows_received_before_the_bus_has_a_subscriber_are_not_lost(tmp_path):
    """A collector started before its store: datagrams that arrive first wait in the kernel until
    a subscriber appears, instead of being published into the void (PUB drops without one)."""
    cfg = stack_config(tmp_path, collector={"stats_interval": "300ms"})
    path = write_config(tmp_path / "collector.yaml", cfg)
    proc = ServiceProcess("collector", path).start()
    tap = None
    try:
        port = cfg["collector"]["netflow_port"]
        expected = 0
        for name in V5_FILES:
            send_udp(port, payloads(name))
            expected += sum(truth_rows(name).values())
        time.sleep(0.5)  # the store comes up later (well within the collector's 5 s wait)
        tap = BusTap(cfg["bus"]["publish_endpoint"])
        assert tap.wait_flows(expected) == expected
        assert received_rows(tap.batches) == sum((truth_rows(n) for n in V5_FILES), Counter())
        assert "bus subscriber present" in proc.log()
    finally:
        proc.stop()
        if tap is not None:
            tap.close()


def test_bad_config_exits_non_zero_with_the_key(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "bad.yaml"
    path.write_text("collector:\n  netflow_port: 70000\n")
    r = subprocess.run([sys.executable, "-m", "flowlens_collector", "--config", str(path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "collector.netflow_port" in r.stderr


def test_port_in_use_exits_non_zero_naming_the_port_and_its_key(tmp_path):
    import socket
    import subprocess
    import sys

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        cfg = stack_config(tmp_path, collector={"ipfix_port": port})  # the NetFlow port binds first
        path = write_config(tmp_path / "c.yaml", cfg)
        r = subprocess.run([sys.executable, "-m", "flowlens_collector", "--config", str(path)],
                           capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert "cannot bind" in last and f"127.0.0.1:{port}" in last and "collector.ipfix_port" in last, r.stderr


V9_TEMPLATE_FILE = "pynetflow_v9_softflowd"


def _v9_split():
    """(datagrams carrying a template FlowSet, data-only datagrams, flows in the data-only ones) of
    a real softflowd v9 capture."""
    import struct

    from flowlens_collector.decode import Decoder

    dgs = payloads(V9_TEMPLATE_FILE)
    with_template = [d for d in dgs if struct.unpack_from(">H", d, 20)[0] == 0]
    data_only = [d for d in dgs if struct.unpack_from(">H", d, 20)[0] != 0]
    d = Decoder()
    d.decode(with_template, [("192.0.2.10", 40000)] * len(with_template), int(time.time() * 1000))
    flows = d.decode(data_only, [("192.0.2.10", 40000)] * len(data_only), int(time.time() * 1000)).count
    assert with_template and data_only and flows > 0
    return with_template, data_only, flows


def test_templates_persist_across_a_restart(collector_env, tmp_path):
    """Templates learnt before a restart decode data sent after it (same exporter port), with
    nothing held and nothing counted as lost."""
    import socket

    from support.services import free_port

    with_template, data_only, flows = _v9_split()
    source = ("127.0.0.1", free_port(socket.SOCK_DGRAM))
    tpath = tmp_path / "templates.json"
    # no spool: the first run's unconfirmed batches (no store here) are not sent again by the second
    proc, tap, cfg = collector_env(template_path=str(tpath), spool_path="")
    port = cfg["collector"]["netflow_port"]
    send_udp(port, with_template[:1], source=source)
    tap.wait_event(lambda e: any(x.get("templates", 0) > 0 for x in e["exporters"]))
    assert proc.stop() == 0
    state = json.loads(tpath.read_text())
    assert state["format"] == 2 and state["templates"]
    assert all(s["refreshed_ms"] for s in state["sessions"] if s["port"] == source[1])
    tap.close()
    # restart on the same config: templates come back from the file
    tap2 = BusTap(cfg["bus"]["publish_endpoint"])
    proc2 = ServiceProcess("collector", Path(proc.config_path)).start()
    try:
        tap2.wait_event(lambda e: e.get("kind") == "collector")
        assert "msg=\"templates loaded\"" in proc2.log()
        ev = tap2.wait_event(lambda e: e["counters"]["templates_loaded"] > 0)
        assert ev["counters"]["templates_loaded"] > 0
        # data without templates, from the same exporter port: decoded with the loaded ones
        send_udp(port, data_only, source=source)
        assert tap2.wait_flows(flows) == flows
        ev = tap2.wait_event(lambda e: any(x.get("flows", 0) >= flows for x in e["exporters"]))
        [row] = [x for x in ev["exporters"] if x.get("flows", 0) >= flows]
        assert row["first_seen"] > 0 and row["pending_sets"] == 0 and row["decode_errors"] == {}, row
        assert row["pending_dropped"] == {} and row["templates_dropped"] == {}, row
    finally:
        proc2.stop()
        tap2.close()


def _write_raw_pcap(path: Path, datagrams) -> None:
    """A classic pcap (linktype 101, raw IPv4) of real exporters' datagrams with their own addresses."""
    import socket
    import struct

    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)]
    for d in datagrams:
        udp = struct.pack("!HHHH", d.sport, d.dport, 8 + len(d.payload), 0) + d.payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                         socket.inet_aton(d.src), socket.inet_aton(d.dst)) + udp
        out.append(struct.pack("<IIII", int(d.ts), 0, len(ip), len(ip)) + ip)
    path.write_bytes(b"".join(out))


def test_replay_keeps_exporters_apart_at_the_collector(collector_env, tmp_path, capsys):
    from flowmodel.replay import main as replay_main

    proc, tap, cfg = collector_env()
    import dataclasses

    names = ["softflowd_v5_dns", "pmacct_v5_http"]
    # both captures were exported from 127.0.0.1: give each its own router address, as two exporters
    merged = [dataclasses.replace(d, src=f"10.9.9.{i + 1}") for i, n in enumerate(names)
              for d in read_datagrams(str(DATA / f"{n}.pcap"))]
    assert len({d.src for d in merged}) == 2
    cap = tmp_path / "two-exporters.pcap"
    _write_raw_pcap(cap, merged)
    assert replay_main([str(cap), "--to", f"127.0.0.1:{cfg['collector']['netflow_port']}", "--speed", "max",
                        "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "-> from 127.0.0.1:" in out and "-> from 127.0.0.2:" in out
    per_exporter = {n: sum(truth_rows(n).values()) for n in names}
    total = sum(per_exporter.values())
    assert tap.wait_flows(total) == total
    ev = tap.wait_event(lambda e: sum(x["flows"] for x in e["exporters"]) == total)
    assert sorted((x["exporter"], x["flows"]) for x in ev["exporters"]) == [
        ("127.0.0.1", per_exporter[names[0]]), ("127.0.0.2", per_exporter[names[1]])]
