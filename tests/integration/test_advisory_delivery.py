"""Advisories reach the store's SQLite exactly once, apart from flow batches: a storm of advisories
sent through the analyzer's sender (flowmodel.eventbox.EventSender, with its bus copy) while flow
batches flood the bus, and the store SIGKILLed and restarted in the middle of it."""
from __future__ import annotations

import sqlite3
import threading
import time

import numpy as np
import zmq

from flowmodel import addr, bus
from flowmodel.eventbox import EventSender
from flowmodel.schema import FlowBatch
from support.services import ServiceProcess, stack_config, wait_until, write_config

KEYS = 300
EVENTS_PER_KEY = 10   # raised, then updated: the stored row's update count says how many were applied
BATCH_FLOWS = 4096
FLOOD_BATCHES_PER_S = 40  # up to 160,000 flows/s offered to the bus, past what the store's queues hold


def flow_batch(n: int) -> FlowBatch:
    rng = np.random.default_rng(1)
    t0 = bus.now_ms() - 5000
    return FlowBatch({
        "time_start": np.full(n, t0, np.int64), "time_end": t0 + np.arange(n, dtype=np.int64),
        "src_addr": addr.from_texts([f"10.0.{i % 250}.{i % 200}" for i in range(n)]),
        "dst_addr": addr.from_texts(["192.0.2.1"] * n), "src_port": rng.integers(1024, 65535, n).astype(np.uint16),
        "dst_port": np.full(n, 443, np.uint16), "protocol": np.full(n, 6, np.uint8),
        "bytes": np.full(n, 1500, np.uint64), "packets": np.ones(n, np.uint64),
        "exporter": addr.from_texts(["198.51.100.1"] * n)}, n)


class Flood(threading.Thread):
    """Flow batches on the bus at a steady rate (as a collector without confirmed delivery), from its own socket."""

    def __init__(self, endpoint: str):
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.halt = threading.Event()
        self.sent = 0
        self.seconds = 0.0

    def run(self) -> None:
        t0 = time.monotonic()
        ctx = zmq.Context()
        pub = ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 0)
        pub.connect(self.endpoint)
        seq = bus.Sequencer("flood@test:1")
        batch = flow_batch(BATCH_FLOWS)
        try:
            while not self.halt.is_set():
                try:
                    pub.send_multipart([bus.flows_topic(9), bus.encode_batch(batch, seq)], zmq.NOBLOCK)
                    self.sent += 1
                except zmq.Again:
                    pass
                self.halt.wait(1 / FLOOD_BATCHES_PER_S)
        finally:
            self.seconds = time.monotonic() - t0
            pub.close(linger=0)
            ctx.term()


def storm_event(key: int, n: int) -> dict:
    t = 1_790_000_000_000 + n * 1000
    return {"key": f"storm:{key}", "analyzer": "storm", "subject": f"10.9.0.{key % 250}",
            "severity": "WARNING", "state": "raised" if n == 0 else "updated", "first_seen": t, "last_seen": t,
            "title": f"storm {key}", "description": f"event {n} of key {key}", "action": "none",
            "evidence": {"n": n}, "filter": {}}


def stored(db_path) -> dict[str, int]:
    db = sqlite3.connect(db_path)
    try:
        return dict(db.execute("SELECT key, updates FROM advisories WHERE key LIKE 'storm:%'"))
    finally:
        db.close()


def test_an_advisory_storm_under_flow_load_is_stored_once_across_a_store_kill(tmp_path):
    cfg = stack_config(tmp_path, bus={"events_resend_timeout": "1s"},
                       store={"sqlite_retention": "3650d", "advisory_retention": "3650d"})
    path = write_config(tmp_path / "flowlens.yaml", cfg)
    store = ServiceProcess("store", path).start()
    flood = Flood(cfg["bus"]["publish_endpoint"])
    ctx = zmq.Context()
    bus_pub = ctx.socket(zmq.PUB)  # the bus copy, as the analyzer publishes it
    bus_pub.setsockopt(zmq.LINGER, 0)
    bus_pub.connect(cfg["bus"]["publish_endpoint"])
    sequencer = bus.Sequencer("storm@test:1")
    sender = EventSender(cfg["bus"]["events_endpoint"], sequencer.source, max_events=100_000, resend_after_s=1.0,
                         high_water_mark=1000, context=ctx).start()
    restarted: list[ServiceProcess] = []
    restart_errors: list[BaseException] = []

    def kill_and_restart():
        try:
            store.proc.kill()  # SIGKILL: what it took but had not committed is gone with it
            store.proc.wait(10)
            restarted.append(ServiceProcess("store", path).start())
        except BaseException as e:  # the test fails on it below
            restart_errors.append(e)

    killer = threading.Thread(target=kill_and_restart, daemon=True)
    from flowmodel.client import StoreClient
    try:
        flood.start()
        with StoreClient(cfg["query"]["endpoint"], timeout_s=10, retries=1) as client:
            wait_until(lambda: client.status()["flows_in"] > 0, timeout_s=30)  # the flood reaches the store
        total = KEYS * EVENTS_PER_KEY
        in_flight_at_kill = 0
        for n in range(EVENTS_PER_KEY):
            for key in range(KEYS):
                body = sender.send(bus.TOPIC_ADVISORY, storm_event(key, n), lambda b: bus.encode_event(b, sequencer))
                try:
                    bus_pub.send_multipart([bus.TOPIC_ADVISORY, body], zmq.NOBLOCK)
                except zmq.Again:
                    pass
                if n == EVENTS_PER_KEY // 3 and key == KEYS // 2:
                    # the store dies with part of the storm confirmed, part sent and unconfirmed, part unsent
                    in_flight_at_kill = sender.outbox.sent
                    killer.start()
            deadline = time.monotonic() + 0.3  # rounds of KEYS advisories, spread over the store's restart
            while time.monotonic() < deadline:
                sender.pump()
                sender.sock.poll(50)
        killer.join(60)
        assert not restart_errors, restart_errors
        assert restarted, "the store did not come back"
        assert sender.flush(90), f"unconfirmed after 90 s: {sender.stats()}"
        flood.halt.set()
        flood.join(10)
        with StoreClient(cfg["query"]["endpoint"], timeout_s=10, retries=1) as client:
            status = client.status()
        rows = stored(cfg["storage"]["sqlite_path"])
        print(f"flood {flood.sent * BATCH_FLOWS / flood.seconds:,.0f} flows/s for {flood.seconds:.1f} s; in flight at the kill {in_flight_at_kill}; sender {sender.stats()}; store events {status['events']}; "
              f"bus gaps of the storm's bus copies {status['bus']['sources'].get(sequencer.source)}")
        assert sender.stats()["lost"] == 0 and sender.stats()["confirmed"] == total
        assert len(rows) == KEYS, f"{KEYS - len(rows)} keys missing"
        wrong = {k: v for k, v in rows.items() if v != EVENTS_PER_KEY}
        assert not wrong, f"keys whose events were not applied exactly {EVENTS_PER_KEY} times: {list(wrong.items())[:10]}"
        assert status["events"]["lost"] == 0 and status["events"]["refused"] == 0
        assert flood.sent > 0

        # Confirmations lost: a sender with the same stream sends its first 1,000 again, to a store
        # restarted once more. The marks in SQLite make every one a duplicate: nothing changes.
        restarted[-1].stop()
        restarted.append(ServiceProcess("store", path).start())
        again = EventSender(cfg["bus"]["events_endpoint"], sequencer.source, max_events=100_000, resend_after_s=1.0,
                            high_water_mark=1000, context=ctx)
        again.outbox.stream = sender.outbox.stream
        again.start()
        try:
            for i in range(1000):
                again.send(bus.TOPIC_ADVISORY, storm_event(i % KEYS, i // KEYS), lambda b: bus.encode_event(b, sequencer))
            assert again.flush(30), again.stats()
        finally:
            again.close()
        with StoreClient(cfg["query"]["endpoint"], timeout_s=10, retries=1) as client:
            replay = client.status()["events"]
        assert replay["duplicates"] >= 1 and replay["taken"] == 0, replay
        assert stored(cfg["storage"]["sqlite_path"]) == rows
    finally:
        flood.halt.set()
        sender.close()
        bus_pub.close(linger=0)
        ctx.term()
        for proc in [*restarted, store]:
            proc.stop()


def test_a_health_event_reaches_the_store_on_the_events_socket(tmp_path):
    """Nothing is published on the bus here: the analyzer's health event lands in the store's status
    through the events socket alone, sent once and not held."""
    cfg = stack_config(tmp_path)
    store = ServiceProcess("store", write_config(tmp_path / "flowlens.yaml", cfg)).start()
    ctx = zmq.Context()
    sequencer = bus.Sequencer("analyzer@test:9")
    sender = EventSender(cfg["bus"]["events_endpoint"], sequencer.source, max_events=10, resend_after_s=1.0,
                         high_water_mark=10, context=ctx).start()
    from flowmodel.client import StoreClient
    try:
        body = {"kind": "analyzer", "collector": sequencer.source, "process": {"rss_bytes": 1, "pid": 9},
                "counters": {"advisories_lost": 0}, "listen": [], "socket": [], "exporters": []}
        with StoreClient(cfg["query"]["endpoint"], timeout_s=10, retries=1) as client:
            def landed():
                if not sender.send_snapshot(bus.TOPIC_EXPORTER, bus.encode_event(body, sequencer)):
                    sender.sock.poll(100)  # not connected yet: IMMEDIATE refuses it, try again
                    return None
                status = client.status()
                return [s for s in status["services"] if s["source"] == sequencer.source] and status
            status = wait_until(landed, timeout_s=20, interval_s=0.2)
            assert status["events"]["health_events"] >= 1
            assert status["bus"]["sources"].get(sequencer.source) is None  # it did not come over the bus
            assert not sender.outbox.pending  # a snapshot is not held for confirmation
    finally:
        sender.close()
        ctx.term()
        assert store.stop() == 0, store.log()
