"""A store whose SQLite file sits on a small tmpfs: its writes fail when the file system is full,
status and the store's health event say so (rows waiting, the error, since when), nothing is
confirmed past the failure, and once the file system is enlarged every flow sent is stored, once,
and the failure resolves (status, /metrics lines, the analyzer's advisory)."""
from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest
import zmq

from flowlens_analyzer import health
from flowlens_analyzer.common import Context
from flowlens_web import metrics
from flowmodel.bus import TOPIC_EXPORTER, Sequencer, encode_batch, flows_topic
from flowmodel.client import StoreClient
from flowmodel.config import load_config
from support.services import ServiceProcess, stack_config, wait_until, write_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "store"))
from store_testdata import T0, make_batch  # noqa: E402

BATCH = 4000
BATCHES = 30  # 120,000 flows: far more than an 8 MiB file system holds, less than the write queue


@pytest.fixture
def small_fs(tmp_path):
    d = tmp_path / "fs"
    d.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command here to make a small file system")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs for the full disk ({r.stderr.strip() or r.returncode})")
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_disk_full_keeps_every_flow_and_resumes_when_space_returns(tmp_path, small_fs):
    cfg = stack_config(tmp_path, store={"sqlite_path": str(small_fs / "flowlens.db"), "sqlite_retention": "3650d",
                                        "rollup_retention": "3650d", "advisory_retention": "3650d",
                                        "ring_capacity": 5000, "write_max_rows": 8000})
    path = write_config(tmp_path / "flowlens.yaml", cfg)
    proc = ServiceProcess("store", path).start()
    client = StoreClient(cfg["query"]["endpoint"], timeout_s=5, retries=1)
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.connect(cfg["bus"]["publish_endpoint"])
    sub = ctx.socket(zmq.SUB)  # the store's own health events (kind=store) as the analyzer gets them
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, TOPIC_EXPORTER)
    sub.connect(cfg["bus"]["subscribe_endpoint"])
    state, actx = health.HealthState(), Context(load_config(path))
    seq = Sequencer("disk-full-test")
    stream = "disk-full-test/1"

    def publish(i: int) -> None:
        b = make_batch(BATCH, t0=T0 + i * BATCH * 10, spacing_ms=10, seed=i)
        pub.send_multipart([flows_topic(9), encode_batch(b, seq, stream=stream, batch_seq=i + 1,
                                                         flows_before=i * BATCH)])

    def store_findings():
        while sub.poll(0):
            topic, body = sub.recv_multipart()
            msg = msgpack.unpackb(body, raw=False)
            if msg.get("kind") == "store":
                state.observe(msg, msg["sent_at"])
        return [f for f in health.analyze(state, actx, int(time.time() * 1000), {})
                if f.subject.startswith("store write")]

    try:
        wait_until(lambda: client.status()["flows_in"] or publish(0), timeout_s=15)  # batch 1 until taken
        for i in range(1, BATCHES):
            publish(i)
            time.sleep(0.02)
        wait_until(lambda: client.status()["write_queue"]["write_failing_since"], timeout_s=30)
        s = client.status()
        wq = s["write_queue"]
        assert wq["write_errors"] >= 1 and "full" in wq["last_write_error"]
        assert wq["failed_rows"] > 0 and wq["rows_waiting"] >= wq["failed_rows"] and wq["filesystem"] == str(small_fs)
        wait_until(lambda: client.status()["flows_in"] == BATCHES * BATCH, timeout_s=20)
        s = client.status()
        committed = s["flows_committed"]
        assert committed < BATCHES * BATCH
        assert s["write_queue"]["rows_waiting"] == BATCHES * BATCH - committed  # nothing shed, nothing lost
        assert s["sqlite"]["rows"] == committed  # the partition counters claim only what is there
        assert s["write_queue"]["shed_flows"] == 0
        text = metrics.render(metrics.LatencyHistogram(), None, s)
        assert "flowlens_store_write_failing 1" in text
        assert f"flowlens_store_rows_waiting {BATCHES * BATCH - committed}" in text
        found = wait_until(store_findings, timeout_s=15)
        assert found[0].severity == "CRITICAL"
        assert ": database or disk is full; " in found[0].description and "wait in memory" in found[0].description
        assert found[0].action.startswith(f"Free space on {small_fs} ")
        attempts = s["write_queue"]["write_errors"]
        wait_until(lambda: client.status()["write_queue"]["write_errors"] > attempts, timeout_s=15)  # retried
        subprocess.run(["mount", "-o", "remount,size=64m", str(small_fs)], check=True)
        wait_until(lambda: client.status()["flows_committed"] == BATCHES * BATCH, timeout_s=40)
        wait_until(lambda: client.status()["write_queue"]["write_failing_since"] is None, timeout_s=15)  # events too
        s = client.status()
        wq = s["write_queue"]
        assert wq["write_failing_since"] is None and wq["rows_waiting"] == 0 and wq["failed_rows"] == 0
        assert s["sqlite"]["rows"] == BATCHES * BATCH and wq["shed_flows"] == 0
        assert "flowlens_store_write_failing 0" in metrics.render(metrics.LatencyHistogram(), None, s)
        wait_until(lambda: not store_findings(), timeout_s=15)  # the advisory resolves
    finally:
        pub.close(linger=0)
        sub.close(linger=0)
        client.close()
        proc.stop()
    db = sqlite3.connect(str(small_fs / "flowlens.db"))
    try:
        parts = [r[0] for r in db.execute("SELECT name FROM partitions")]
        stored = sum(db.execute(f"SELECT count(*) FROM {n}").fetchone()[0] for n in parts
                     if db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (n,)).fetchone())
        stored += db.execute("SELECT coalesce(sum(rows), 0) FROM blocks").fetchone()[0]
        assert stored == BATCHES * BATCH
        assert db.execute("SELECT batch_seq, flows FROM streams WHERE stream = ?", (stream,)).fetchone() == \
            (BATCHES, BATCHES * BATCH)
    finally:
        db.close()
