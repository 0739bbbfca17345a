"""Confirmed delivery through real processes: the store SIGKILLed under load and brought back on
the same SQLite file; a spool too small for the outage; a collector restarted with batches held.
Every assertion is an exact count of flows."""
from __future__ import annotations

import re
import signal
import sys
import threading
from pathlib import Path

from support.services import REPO, ServiceProcess, stack_config, wait_until, write_config

sys.path.insert(0, str(REPO))
from bench import loadgen  # noqa: E402

RATE = 30_000      # flows/s, v9
DOWN_S = 15


def start_stack(tmp_path: Path, **collector):
    cfg = stack_config(tmp_path, collector={"ipfix_port": 0, "stats_interval": "500ms", "template_path": "",
                                            "resend_timeout": "1s", **collector},
                       store={"ring_capacity": 10_000})
    path = write_config(tmp_path / "flowlens.yaml", cfg)
    store = ServiceProcess("store", path).start()
    coll = ServiceProcess("collector", path).start()
    return cfg, path, store, coll


def status(cfg) -> dict:
    from flowmodel.client import StoreClient
    with StoreClient(cfg["query"]["endpoint"], timeout_s=5, retries=2) as client:
        return client.status()


def collector_counters(cfg) -> dict:
    from flowmodel.client import StoreClient
    with StoreClient(cfg["query"]["endpoint"], timeout_s=5, retries=2) as client:
        cols = client.exporters()["collectors"]
    return max(cols, key=lambda c: c.get("last_seen") or 0)["counters"] if cols else {}  # the running collector


def send_in_background(cfg, flows: int) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def run():
        result.update(loadgen.run(cfg["collector"]["netflow_port"], RATE, flows, 120.0, version=9))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


def outage(cfg, path, store, flows: int, down_s: float):
    """Send ``flows`` at RATE; 4 s in, SIGKILL the store, keep it down ``down_s``, start it again."""
    sender, sent = send_in_background(cfg, flows)
    wait_until(lambda: status(cfg)["flows_committed"] > 0, timeout_s=10)
    threading.Event().wait(4.0)
    store.proc.send_signal(signal.SIGKILL)
    store.proc.wait(10)
    threading.Event().wait(down_s)
    store = ServiceProcess("store", path).start()
    sender.join(120)
    return store, sent


def settle(cfg, coll):
    """Stop the collector (its last health event follows what it held), then read both sides."""
    wait_until(lambda: collector_counters(cfg).get("unconfirmed_flows", 1) == 0, timeout_s=60, interval_s=0.5)
    assert coll.stop() == 0, coll.log()
    wait_until(lambda: status(cfg)["write_queue"]["depth"] == 0, timeout_s=20)
    return status(cfg), collector_counters(cfg)


def test_store_killed_for_15s_under_load_loses_nothing(tmp_path):
    cfg, path, store, coll = start_stack(tmp_path)
    try:
        store, sent = outage(cfg, path, store, RATE * 25, DOWN_S)
        st, c = settle(cfg, coll)
        stored = st["sqlite"]["rows"]
        print(f"\nstore down {DOWN_S} s at {RATE} v9 flows/s: sent {sent['flows']}, collector decoded {c['flows']},"
              f" kernel drops {c['kernel_drops']}, stored {stored}, resent {c['resent_flows']},"
              f" spool dropped {c['spool_dropped_flows']}, store duplicates {st['delivery']['duplicate_flows']}")
        assert c["resent_flows"] > 0
        assert c["spool_dropped_flows"] == 0 and c["lost_flows"] == 0 and st["delivery"]["lost_flows"] == 0
        assert stored == c["flows"]                      # every decoded flow stored once
    finally:
        coll.stop()
        assert store.stop() == 0, store.log()


def test_store_down_longer_than_the_spool_counts_every_lost_flow(tmp_path):
    cfg, path, store, coll = start_stack(tmp_path, unacked_max_bytes="1MiB", spool_max_bytes="2MiB")
    try:
        store, sent = outage(cfg, path, store, RATE * 25, DOWN_S)
        st, c = settle(cfg, coll)
        stored = st["sqlite"]["rows"]
        lost = c["lost_flows"]
        print(f"\nstore down {DOWN_S} s, spool 2 MiB: sent {sent['flows']}, decoded {c['flows']}, stored {stored},"
              f" lost (collector) {lost}, dropped from its spool {c['spool_dropped_flows']},"
              f" lost (store) {st['delivery']['lost_flows']}")
        assert lost > 0
        assert lost == c["flows"] - stored
        assert st["delivery"]["lost_flows"] == lost
        assert c["spool_dropped_flows"] >= lost  # less any batch committed just before the kill, its ack lost
    finally:
        coll.stop()
        assert store.stop() == 0, store.log()


def test_collector_restart_with_batches_held_stores_each_once(tmp_path):
    """The store is away when the collector stops: what it held is spooled, sent by the next run, stored once."""
    cfg, path, store, coll = start_stack(tmp_path)
    try:
        sender, sent = send_in_background(cfg, RATE * 4)
        threading.Event().wait(1.5)
        store.proc.send_signal(signal.SIGKILL)
        store.proc.wait(10)
        sender.join(60)
        assert coll.stop() == 0, coll.log()
        decoded = int(re.search(r"msg=stopped .*?\bflows=(\d+)", coll.log()).group(1))
        store = ServiceProcess("store", path).start()
        coll = ServiceProcess("collector", path).start()
        assert "spooled batches taken back" in coll.log()
        st, c = settle(cfg, coll)
        print(f"\ncollector restart: sent {sent['flows']}, decoded {decoded}, stored {st['sqlite']['rows']},"
              f" store duplicates {st['delivery']['duplicate_flows']}")
        assert st["delivery"]["lost_flows"] == 0
        assert st["sqlite"]["rows"] == decoded
    finally:
        coll.stop()
        assert store.stop() == 0, store.log()
