"""The analyzer as a process on the real bus (hosted by the store): flow batches published as a
collector would, advisories and the analyzer's health event read back from the bus, garbage
survived, the `analyze` command over a stored range, orderly stop and config errors."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import zmq

from flowmodel import addr, bus
from flowmodel.pcap import read_datagrams
from flowmodel.schema import FlowBatch
from support.services import PYTHON, REPO, ServiceProcess, ServiceStack, send_udp, wait_until, write_config

DATA = Path(__file__).resolve().parents[1] / "data"
FAST = {"interval": "2s", "window": "60s", "watermark": "1s", "idle_after": "1s", "health_interval": "1s",
        "update_change": 0.01}
T0 = 1_700_000_040_000


def scan_batch(n_ports: int = 150) -> FlowBatch:
    n = n_ports
    return FlowBatch({
        "time_start": np.full(n, T0 + 1000, np.int64), "time_end": T0 + 1000 + np.arange(n, dtype=np.int64),
        "src_addr": addr.from_texts(["172.16.0.55"] * n), "dst_addr": addr.from_texts(["10.0.0.5"] * n),
        "src_port": np.full(n, 40000, np.uint16), "dst_port": np.arange(1, n + 1, dtype=np.uint16),
        "protocol": np.full(n, 6, np.uint8), "bytes": np.full(n, 44, np.uint64), "packets": np.ones(n, np.uint64),
        "tcp_flags": np.full(n, 2, np.uint8)}, n)


def test_flows_on_the_bus_become_advisories_and_garbage_is_survived(tmp_path):
    with ServiceStack(tmp_path, ["store", "analyzer"], analysis=FAST) as stack:
        ctx = zmq.Context()
        pub = ctx.socket(zmq.PUB)
        sub = ctx.socket(zmq.SUB)
        try:
            for s in (pub, sub):
                s.setsockopt(zmq.LINGER, 0)
            pub.connect(stack.cfg["bus"]["publish_endpoint"])
            sub.connect(stack.cfg["bus"]["subscribe_endpoint"])
            sub.setsockopt(zmq.SUBSCRIBE, b"advisory")
            sub.setsockopt(zmq.SUBSCRIBE, b"exporter")
            seq = bus.Sequencer("collector@test:1")
            got: dict[str, dict] = {}

            def receive():
                while sub.poll(50):
                    topic, body = sub.recv_multipart()
                    msg = bus.decode_body(body)
                    got[msg.get("key") or f"{topic.decode()}:{msg.get('kind')}"] = msg

            def seen_batch():
                # PUB/SUB joins late: publish (garbage, then the batch) until the analyzer's health
                # event says a batch arrived; then stop, so flow time can move on when idle.
                receive()
                health = got.get("exporter:analyzer")
                if health and health["counters"]["batches"] >= 1:
                    return True
                pub.send_multipart([b"flows.9", b"\x00not msgpack"])
                pub.send_multipart([b"flows.9", bus.encode_batch(scan_batch(), seq)])
                sub.poll(300)  # pace the resends by waiting for the next message, not by sleeping
                return False

            wait_until(seen_batch, 30, 0.05)
            wait_until(lambda: receive() or "scan:172.16.0.55" in got, 20, 0.05)
            adv = got["scan:172.16.0.55"]
            assert adv["state"] == "raised" and adv["severity"] == "CRITICAL"
            assert adv["description"].startswith("172.16.0.55 contacted 150 ports on 10.0.0.5 in 60 s")
            assert adv["first_seen"] % 2000 == 0 and T0 + 1000 < adv["first_seen"] <= T0 + 4000  # flow time, on interval
            health = got["exporter:analyzer"]
            assert health["process"]["rss_bytes"] > 0 and health["source"].startswith("analyzer@")
            assert health["counters"]["bad_messages"] >= 1 and health["counters"]["bad_reasons"]["codec"] >= 1
            # The store persisted the advisory the analyzer published.
            client = stack.client()
            try:
                stored = wait_until(lambda: [a for a in client.advisories(analyzer="scan") if a["key"] == "scan:172.16.0.55"], 10)
                assert stored[0]["severity"] == "CRITICAL"
            finally:
                client.close()
        finally:
            pub.close(0)
            sub.close(0)
            ctx.term()
    assert stack.procs["analyzer"].proc.returncode == 0
    assert "msg=stopped" in stack.procs["analyzer"].log()


def test_analyze_command_finds_the_same_scan_as_the_live_analyzer(tmp_path):
    with ServiceStack(tmp_path, ["store", "collector", "analyzer"], analysis=FAST) as stack:
        client = stack.client()
        try:
            send_udp(stack.netflow_port, [d.payload for d in read_datagrams(str(DATA / "softflowd_v9_scan.pcap"))])
            live = wait_until(lambda: [a for a in client.advisories(analyzer="scan")
                                       if a["key"] == "scan:127.0.0.1" and a["evidence"]["ports"] == 300], 30)[0]
            stored = client.flows(limit=1000)
            ends = stored.batch["time_end"]
            since, until = int(ends.min()) - 60_000, int(ends.max()) + 60_000
        finally:
            client.close()
        out = subprocess.run([PYTHON, "-m", "flowlens_analyzer", "analyze", "--config", str(stack.config_path),
                              "--since", str(since), "--until", str(until), "--format", "json"],
                             capture_output=True, text=True, timeout=60, cwd=REPO)
        table = subprocess.run([PYTHON, "-m", "flowlens_analyzer", "analyze", "--config", str(stack.config_path),
                                "--since", str(since), "--until", str(until)], capture_output=True, text=True,
                               timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    found = {a["key"]: a for a in map(json.loads, out.stdout.splitlines())}
    assert found["scan:127.0.0.1"]["description"] == live["description"]
    assert found["scan:127.0.0.1"]["first_seen"] == live["first_seen"]
    assert "scan:127.0.0.1 port 22" in found
    assert table.returncode == 0 and "CRITICAL" in table.stdout and "likely a port scan" in table.stdout


def test_bad_config_exits_non_zero_with_the_reason(tmp_path):
    path = write_config(tmp_path / "bad.yaml", {"analysis": {"scan_threshold": "many"}})
    proc = subprocess.run([PYTHON, "-m", "flowlens_analyzer", "--config", str(path)], capture_output=True, text=True,
                          timeout=30, cwd=REPO)
    assert proc.returncode != 0
    assert "scan_threshold" in proc.stderr and "integer" in proc.stderr
    proc = subprocess.run([PYTHON, "-m", "flowlens_analyzer", "analyze", "--config", str(path), "--since", "1h"],
                          capture_output=True, text=True, timeout=30, cwd=REPO)
    assert proc.returncode != 0 and "scan_threshold" in proc.stderr


def test_starts_and_stops_without_a_store(tmp_path):
    """The bus may be down and the store unreachable: the analyzer still starts (no baseline) and stops cleanly."""
    from support.services import stack_config

    cfg = stack_config(tmp_path, analysis=FAST, query={"timeout": "1s"})
    proc = ServiceProcess("analyzer", write_config(tmp_path / "flowlens.yaml", cfg)).start()
    t0 = time.monotonic()
    assert proc.stop() == 0
    assert time.monotonic() - t0 < 10
    assert "no baseline from the store" in proc.log()


def publish_until_stored(stack, batch: FlowBatch, key: str) -> dict:
    """Publish a flow batch as a collector would, again until the analyzer's health event counts a batch
    (PUB/SUB joins late), then no more (flow time moves on when idle); wait for the store to hold ``key``."""
    ctx = zmq.Context()
    pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
    for s in (pub, sub):
        s.setsockopt(zmq.LINGER, 0)
    pub.connect(stack.cfg["bus"]["publish_endpoint"])
    sub.connect(stack.cfg["bus"]["subscribe_endpoint"])
    sub.setsockopt(zmq.SUBSCRIBE, bus.TOPIC_EXPORTER)
    client = stack.client()
    seq = bus.Sequencer("collector@test:1")
    try:
        def arrived():
            while sub.poll(50):
                msg = bus.decode_body(sub.recv_multipart()[1])
                if msg.get("kind") == "analyzer" and msg["counters"]["batches"] >= 1:
                    return True
            pub.send_multipart([b"flows.9", bus.encode_batch(batch, seq)])
            sub.poll(300)  # paced by the next health event, not by sleeping
            return False

        wait_until(arrived, 30, 0.05)
        return wait_until(lambda: [a for a in client.advisories(include_resolved=True) if a["key"] == key], 30)[0]
    finally:
        client.close()
        pub.close(0)
        sub.close(0)
        ctx.term()


def test_a_restarted_analyzer_takes_over_the_open_advisories_and_resolves_them(tmp_path):
    # review 4, finding 2: open advisories lived only in the analyzer's memory; after a restart they stayed
    # "raised" in the store for good.
    fast = {**FAST, "window": "10s", "resolve_after": "4s", "update_every": "1h"}
    with ServiceStack(tmp_path, ["store", "analyzer"], analysis=fast) as stack:
        raised = publish_until_stored(stack, scan_batch(), "scan:172.16.0.55")
        assert raised["state"] == "raised"
        assert stack.procs["analyzer"].stop() == 0
        stack.procs["analyzer"] = ServiceProcess("analyzer", stack.config_path).start()
        log = stack.procs["analyzer"]
        assert "msg=\"open advisories taken over from the store\" advisories=" in log.log()
        client = stack.client()
        try:
            resolved = wait_until(lambda: [a for a in client.advisories(include_resolved=True)
                                           if a["key"] == "scan:172.16.0.55" and a["state"] == "resolved"], 30)[0]
            assert client.advisories(state="raised,updated") == []  # nothing else left open either
        finally:
            client.close()
    assert resolved["first_seen"] == raised["first_seen"]  # the same advisory, resolved; not a new one
    assert resolved["description"] == raised["description"]
    assert "key=scan:172.16.0.55 state=resolved" in log.log()


def test_analyze_exits_3_when_the_store_is_unreachable_and_host_bits_are_refused(tmp_path):
    # review 4, finding 12: `analyze` exited 1 where `query` exits 3; 10.0.0.1/8 was taken silently.
    from support.services import stack_config

    path = write_config(tmp_path / "dead.yaml", stack_config(tmp_path, query={"timeout": "1s", "retries": 0}))
    proc = subprocess.run([PYTHON, "-m", "flowlens_analyzer", "analyze", "--config", str(path), "--since", "1h"],
                          capture_output=True, text=True, timeout=30, cwd=REPO)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.startswith("flowlens analyze: ")
    path = write_config(tmp_path / "bits.yaml", {"analysis": {"local_networks": ["10.0.0.1/8"]}})
    proc = subprocess.run([PYTHON, "-m", "flowlens_analyzer", "--config", str(path)], capture_output=True, text=True,
                          timeout=30, cwd=REPO)
    assert proc.returncode != 0
    assert "local_networks" in proc.stderr and "'10.0.0.1/8' has host bits set (did you mean 10.0.0.0/8?)" in proc.stderr
