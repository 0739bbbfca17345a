"""SIGTERM loses nothing that was received: the store alone (ring -> SQLite at stop), and the whole
`flowlens up` supervisor (collectors stopped first, store last), counted after a store restart
from the SQLite file alone. Also: `flowlens up` restarts a service that crashed."""
from __future__ import annotations

import importlib.util
import json
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path


from flowmodel.client import StoreClient
from flowmodel.pcap import read_datagrams
from support.services import REPO, ServiceProcess, send_udp, stack_config, wait_until, write_config

DATA = Path(__file__).resolve().parents[1] / "data"
CAPTURES = ("softflowd_v5_dns", "pmacct_v5_http")
WINDOW = {"since": 0, "until": 4_000_000_000_000}


def payloads(name):
    return [d.payload for d in read_datagrams(str(DATA / f"{name}.pcap"))]


def expected_count(*names):
    return sum(json.loads((DATA / f"{n}.totals.json").read_text())["flow_records"] for n in names)


def count_flows(client: StoreClient) -> int:
    n, cursor = 0, None
    while True:
        page = client.flows(limit=1000, cursor=cursor, **WINDOW)
        n += len(page)
        cursor = page.next_cursor
        if not cursor or not len(page):
            return n


def config(tmp_path):
    cfg = stack_config(tmp_path, store={"sqlite_retention": "3650d", "rollup_retention": "3650d"})
    return cfg, write_config(tmp_path / "flowlens.yaml", cfg)


def count_after_restart(cfg, path) -> int:
    """A fresh store on the same SQLite file: its ring is empty, so every flow comes from SQLite."""
    store = ServiceProcess("store", path).start()
    try:
        with StoreClient(cfg["query"]["endpoint"], timeout_s=5, retries=1) as client:
            return count_flows(client)
    finally:
        assert store.stop() == 0, store.log()


def test_store_sigterm_commits_what_it_holds(tmp_path):
    cfg, path = config(tmp_path)
    store = ServiceProcess("store", path).start()
    collector = ServiceProcess("collector", path).start()
    try:
        send_udp(cfg["collector"]["netflow_port"], payloads("softflowd_v5_dns"), source=("127.0.0.2", 0))
        with StoreClient(cfg["query"]["endpoint"], timeout_s=5, retries=1) as client:
            wait_until(lambda: count_flows(client) >= 409, timeout_s=20, interval_s=0.2)
    finally:
        rc_collector = collector.stop()
        rc_store = store.stop()
    assert (rc_collector, rc_store) == (0, 0), store.log()
    db = sqlite3.connect(f"file:{cfg['storage']['sqlite_path']}?mode=ro", uri=True)
    assert db.execute("pragma integrity_check").fetchone() == ("ok",)
    db.close()
    assert count_after_restart(cfg, path) == 409


class Up:
    """`flowlens up` as a process, its (prefixed) output collected line by line."""

    def __init__(self, path, services):
        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "flowmodel.cli", "up", "--config", str(path),
                                      "--services", ",".join(services), "--stop-timeout", "20"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def has(self, pattern: str) -> list[str]:
        return [line for line in list(self.lines) if re.search(pattern, line)]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.reader.join(5)

    def log(self) -> str:
        return "\n".join(self.lines)


def runnable_services() -> list[str]:
    """The services whose package can start (`python -m flowlens_<name>`); store and collector are required."""
    return [s for s in ("store", "analyzer", "web", "collector") if importlib.util.find_spec(f"flowlens_{s}.__main__")]


def test_up_sigterm_stops_in_order_and_loses_nothing(tmp_path):
    cfg, path = config(tmp_path)
    services = runnable_services()
    assert {"store", "collector"} <= set(services)
    up = Up(path, services)
    try:
        wait_until(lambda: up.has(r"service=flowlens .*msg=ready"), timeout_s=60, interval_s=0.1)
        for name, src in zip(CAPTURES, ("127.0.0.2", "127.0.0.3")):
            send_udp(cfg["collector"]["netflow_port"], payloads(name), source=(src, 0))
    finally:
        rc = up.stop()  # at once: what the kernel already holds counts as received
    assert rc == 0, up.log()
    # every child's lines carry its name; each logged its ready line through the supervisor
    for name in services:
        assert up.has(rf"^{name}\s* \| .*msg=ready"), (name, up.log())
    # collectors stopped before the store
    stopped = [re.search(r"msg=stopped child=([\w-]+)", line).group(1) for line in up.has(r"msg=stopped child=")]
    assert sorted(stopped) == sorted(services), stopped
    assert stopped[0] == "collector" and stopped[-1] == "store", stopped
    assert count_after_restart(cfg, path) == expected_count(*CAPTURES)


def test_up_restarts_a_crashed_service(tmp_path):
    cfg, path = config(tmp_path)
    up = Up(path, ["store", "collector"])
    try:
        wait_until(lambda: up.has(r"service=flowlens .*msg=ready"), timeout_s=60, interval_s=0.1)
        pid = int(re.search(r"pid=(\d+)", up.has(r"msg=started child=collector ")[0]).group(1))
        import os
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: up.has(r"msg=\"service exited, restarting\" child=collector"), timeout_s=10)
        wait_until(lambda: len(up.has(r"^collector\s* \| .*msg=ready")) >= 2, timeout_s=30)
        send_udp(cfg["collector"]["netflow_port"], payloads("pmacct_v5_http"), source=("127.0.0.3", 0))
        with StoreClient(cfg["query"]["endpoint"], timeout_s=5, retries=1) as client:
            wait_until(lambda: count_flows(client) >= 62, timeout_s=20, interval_s=0.2)
            assert count_flows(client) == 62
    finally:
        rc = up.stop()
    assert rc == 0, up.log()
    assert "restarts_last_minute=1" in up.has(r"restarting")[0]
