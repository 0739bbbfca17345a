"""`flowlens up` keeps the healthy services running while one crash-loops: the failing one is
restarted with growing delays (capped by --max-backoff), a CRITICAL advisory names it and quotes its
last error, and it resolves once the service has stayed up (--stable-after). Real processes; the
faults are natural ones: the store's SQLite path is a directory it cannot open, the web's port is
held by another socket."""
from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

from flowmodel.client import StoreClient
from flowmodel.pcap import read_datagrams
from support.services import REPO, send_udp, stack_config, wait_until, write_config

DATA = Path(__file__).resolve().parents[1] / "data"
WINDOW = {"since": 0, "until": 4_000_000_000_000}
MAX_BACKOFF_S = 1.0


class Up:
    """`flowlens up` with short backoff settings, its (prefixed) output collected line by line."""

    def __init__(self, path, services, stable_after_s: float):
        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "flowmodel.cli", "up", "--config", str(path),
                                      "--services", ",".join(services), "--stop-timeout", "20",
                                      "--max-backoff", str(MAX_BACKOFF_S), "--stable-after", str(stable_after_s)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def has(self, pattern: str) -> list[str]:
        return [line for line in list(self.lines) if re.search(pattern, line)]

    def backoffs(self, child: str) -> list[float]:
        return [float(re.search(r"backoff_s=([\d.]+)", line).group(1))
                for line in self.has(rf'msg="service exited, restarting" child={child} ')]

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


def payloads(name):
    return [d.payload for d in read_datagrams(str(DATA / f"{name}.pcap"))]


def flow_records(name) -> int:
    return json.loads((DATA / f"{name}.totals.json").read_text())["flow_records"]


def healthz(listen: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://{listen}/healthz", timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def crashloop_advisory(client: StoreClient, service: str) -> dict | None:
    rows = client.advisories(analyzer="supervisor", include_resolved=True, limit=100, **WINDOW)
    return next((a for a in rows if a.get("key") == f"supervisor:crashloop:{service}"), None)


def count_flows(client: StoreClient, **filters) -> int:
    n, cursor = 0, None
    while True:
        page = client.flows(limit=1000, cursor=cursor, **WINDOW, **filters)
        n += len(page)
        cursor = page.next_cursor
        if not cursor or not len(page):
            return n


def assert_backs_off(backoffs: list[float]) -> None:
    """0.5 s, then doubled each time, never above --max-backoff."""
    assert backoffs[:2] == [0.5, 1.0], backoffs
    assert all(b == MAX_BACKOFF_S for b in backoffs[2:]), backoffs


def test_up_keeps_collector_and_web_up_while_the_store_crash_loops(tmp_path):
    blocker = tmp_path / "flowlens.db-wal"
    blocker.mkdir()  # a directory where SQLite's WAL file goes: the store exits at start, every time (a
    # directory at the SQLite path itself is refused when the config loads, stopping flowlens up too)
    cfg = stack_config(tmp_path, store={"sqlite_path": str(tmp_path / "flowlens.db"), "sqlite_retention": "3650d",
                                        "rollup_retention": "3650d"})
    path = write_config(tmp_path / "flowlens.yaml", cfg)
    up = Up(path, ["store", "web", "collector"], stable_after_s=12)
    try:
        wait_until(lambda: up.has(r"^collector\s* \| .*msg=ready") and up.has(r"^web\s* \| .*msg=ready"),
                   timeout_s=60, interval_s=0.1)
        wait_until(lambda: len(up.backoffs("store")) >= 5, timeout_s=60, interval_s=0.1)
        crit = up.has(r"level=critical .*msg=\"service is crash-looping, the others keep running\" child=store ")
        assert crit and "disk I/O error" in crit[-1], up.log()
        assert_backs_off(up.backoffs("store"))
        assert not up.has(r"^store\s* \| .*msg=ready"), up.log()

        # the web answers (the store is down: 503, saying so) and the collector receives and counts
        status, body = healthz(cfg["web"]["listen"])
        assert (status, body["ok"]) == (503, False), body
        send_udp(cfg["collector"]["netflow_port"], payloads("softflowd_v5_dns"), source=("127.0.0.2", 0))

        blocker.rmdir()  # the obstacle goes: the next restart opens the database
        wait_until(lambda: up.has(r"^store\s* \| .*msg=ready"), timeout_s=30, interval_s=0.1)
        with StoreClient(cfg["query"]["endpoint"], timeout_s=5, retries=1) as client:
            # the advisory raised while the store was down lands once it is back, still open
            advisory = wait_until(lambda: crashloop_advisory(client, "store"), timeout_s=30, interval_s=0.2)
            assert (advisory["severity"], advisory["state"]) in {("CRITICAL", "raised"), ("CRITICAL", "updated")}, advisory
            assert advisory["subject"] == "store", advisory
            assert "disk I/O error" in advisory["description"], advisory
            assert advisory["evidence"]["crashes"] >= 3, advisory
            # the collector kept running and delivers to the store that came back
            send_udp(cfg["collector"]["netflow_port"], payloads("pmacct_v5_http"), source=("127.0.0.3", 0))
            expected = flow_records("pmacct_v5_http")
            wait_until(lambda: count_flows(client, exporter="127.0.0.3") >= expected, timeout_s=30, interval_s=0.2)
            assert count_flows(client, exporter="127.0.0.3") == expected
            # stayed up --stable-after: resolved
            resolved = wait_until(lambda: (a := crashloop_advisory(client, "store")) and a["state"] == "resolved" and a,
                                  timeout_s=60, interval_s=0.2)
            assert resolved["severity"] == "CRITICAL", resolved
        assert up.has(r'msg="service recovered from its crash loop" child=store '), up.log()
        status, body = healthz(cfg["web"]["listen"])
        assert (status, body["ok"]) == (200, True), body
    finally:
        rc = up.stop()
    assert rc == 0, up.log()
    # one collector process all along, which counted the flows sent while the store was down
    assert len(up.has(r"msg=started child=collector ")) == 1, up.log()
    assert len(up.has(r"msg=started child=web ")) == 1, up.log()
    stopped = up.has(r"^collector\s* \| .*msg=stopped ")
    counted = int(re.search(r"\bflows=(\d+)", stopped[-1]).group(1))
    assert counted == flow_records("softflowd_v5_dns") + flow_records("pmacct_v5_http"), stopped


def test_up_keeps_store_and_collector_up_while_the_web_crash_loops(tmp_path):
    cfg = stack_config(tmp_path)
    path = write_config(tmp_path / "flowlens.yaml", cfg)
    host, port = cfg["web"]["listen"].rsplit(":", 1)
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind((host, int(port)))
    holder.listen()  # the web's port is taken: it exits at start, every time
    up = Up(path, ["store", "web", "collector"], stable_after_s=6)
    try:
        wait_until(lambda: up.has(r"^collector\s* \| .*msg=ready"), timeout_s=60, interval_s=0.1)
        with StoreClient(cfg["query"]["endpoint"], timeout_s=5, retries=1) as client:
            advisory = wait_until(lambda: crashloop_advisory(client, "web"), timeout_s=60, interval_s=0.2)
            assert (advisory["severity"], advisory["subject"]) == ("CRITICAL", "web"), advisory
            assert advisory["state"] in ("raised", "updated"), advisory
            assert "address already in use" in advisory["description"], advisory
            assert_backs_off(up.backoffs("web"))
            # store and collector went on: flows sent now are stored
            send_udp(cfg["collector"]["netflow_port"], payloads("pmacct_v5_http"), source=("127.0.0.3", 0))
            expected = flow_records("pmacct_v5_http")
            wait_until(lambda: count_flows(client) >= expected, timeout_s=30, interval_s=0.2)
            assert count_flows(client) == expected
            holder.close()  # the port is free: the web comes up and stays up
            wait_until(lambda: up.has(r"^web\s* \| .*msg=ready"), timeout_s=30, interval_s=0.1)
            resolved = wait_until(lambda: (a := crashloop_advisory(client, "web")) and a["state"] == "resolved" and a,
                                  timeout_s=60, interval_s=0.2)
            assert resolved["subject"] == "web", resolved
        status, body = healthz(cfg["web"]["listen"])
        assert (status, body["ok"]) == (200, True), body
    finally:
        holder.close()
        rc = up.stop()
    assert rc == 0, up.log()
    assert len(up.has(r"msg=started child=store ")) == 1, up.log()
    assert len(up.has(r"msg=started child=collector ")) == 1, up.log()
