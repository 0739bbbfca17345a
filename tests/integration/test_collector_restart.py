"""Collector restarts through real processes (issue 13 item 3): a v9 or IPFIX exporter keeps its
sequence numbers going while the collector is stopped (SIGTERM) or killed (SIGKILL); after the
restart what it sent meanwhile is counted as lost, exactly; templates from before the restart decode
data at once."""
from __future__ import annotations

import json
import re
import signal
import socket
import struct
import threading
import time
from pathlib import Path

from support.services import ServiceProcess, stack_config, wait_until, write_config

EXPORT_S = int(time.time()) - 60
DOMAIN = 7
FIELDS = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 4), (2, 4)]  # src, dst, ports, proto, bytes, packets


def _set(set_id: int, body: bytes) -> bytes:
    return struct.pack(">HH", set_id, len(body) + 4) + body


def _template(ipfix: bool) -> bytes:
    body = struct.pack(">HH", 300, len(FIELDS)) + b"".join(struct.pack(">HH", ie, ln) for ie, ln in FIELDS)
    return _set(2 if ipfix else 0, body)


def _records(n: int) -> bytes:
    rec = bytes([10, 0, 0, 1, 10, 0, 0, 2]) + struct.pack(">HHBII", 1000, 80, 6, 500, 5)
    return _set(300, rec * n)


def v9(seq: int, records: int = 1, template: bool = False) -> bytes:
    sets = ([_template(False)] if template else []) + [_records(records)]
    return struct.pack(">HHIIII", 9, len(sets), 100_000, EXPORT_S, seq, DOMAIN) + b"".join(sets)


def ipfix(seq: int, records: int, template: bool = False) -> bytes:
    body = (_template(True) if template else b"") + _records(records)
    return struct.pack(">HHIII", 10, 16 + len(body), EXPORT_S, seq, DOMAIN) + body


class Stack:
    """A store and a collector on one config; the collector stopped, killed and started again."""

    def __init__(self, tmp_path: Path):
        self.cfg = stack_config(tmp_path, collector={"stats_interval": "200ms"})
        self.path = write_config(tmp_path / "flowlens.yaml", self.cfg)
        self.template_path = Path(self.cfg["collector"]["template_path"])
        self.sequence_path = self.template_path.with_name("templates.sequences.json")
        self.store = ServiceProcess("store", self.path).start()
        self.collector: ServiceProcess | None = None
        self.exporter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # one source port throughout
        self.exporter.bind(("127.0.0.1", 0))
        from flowmodel.client import StoreClient
        self.client = StoreClient(self.cfg["query"]["endpoint"], timeout_s=5, retries=1)

    def start_collector(self) -> ServiceProcess:
        self.collector = ServiceProcess("collector", self.path).start()
        return self.collector

    def send(self, payload: bytes, ipfix_port: bool = False) -> None:
        port = self.cfg["collector"]["ipfix_port" if ipfix_port else "netflow_port"]
        self.exporter.sendto(payload, ("127.0.0.1", port))

    def rows(self) -> list[dict]:
        """The exporters reply's rows of our exporter from the collector started last."""
        reply = self.client.exporters()
        pid = self.collector.proc.pid
        sources = {c["collector"] for c in reply["collectors"] if (c.get("process") or {}).get("pid") == pid}
        return [r for r in reply["exporters"]
                if r.get("collector") in sources and r.get("exporter") == "127.0.0.1"
                and r.get("observation_domain") == DOMAIN]

    def row_when(self, predicate) -> dict:
        def one():
            rows = self.rows()
            assert len(rows) <= 1, rows  # one row per (collector, exporter, domain)
            return rows[0] if rows and predicate(rows[0]) else None
        return wait_until(one, timeout_s=20)

    def close(self) -> None:
        if self.collector is not None:
            self.collector.stop()
        self.store.stop()
        self.client.close()
        self.exporter.close()


def stopped_datagrams(proc: ServiceProcess) -> int:
    """The datagrams a collector received in its run, from its 'stopped' log line."""
    for line in proc.lines:
        if "stopped" in line:
            m = re.search(r"\bdatagrams[\"=:\s]+(\d+)", line)
            if m:
                return int(m.group(1))
    raise AssertionError("no 'stopped' line with datagrams:\n" + proc.log())


class Sender(threading.Thread):
    """Sends v9 export packets of one record at about ``rate`` per second, sequence numbers from 1."""

    def __init__(self, stack: Stack, rate: int):
        super().__init__(daemon=True)
        self.stack, self.rate = stack, rate
        self.sent = 0
        self.halt = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.halt.is_set():
            self.stack.send(v9(self.sent + 1, template=self.sent == 0))
            self.sent += 1
            ahead = self.sent / self.rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)


def test_v9_packets_sent_while_the_collector_was_stopped_are_counted_lost(tmp_path):
    stack = Stack(tmp_path)
    sender = Sender(stack, rate=500)
    try:
        first = stack.start_collector()
        sender.start()
        stack.row_when(lambda r: r["flows"] >= 300)
        assert first.stop() == 0  # SIGTERM while the exporter keeps sending
        received_1 = stopped_datagrams(first)
        lost_1 = stack.row_when(lambda r: r["packets"] == received_1)["sequence_lost"]
        second = stack.start_collector()
        stack.row_when(lambda r: r["packets"] >= 300)
        sender.halt.set()
        sender.join(5)
        assert second.stop() == 0
        received_2 = stopped_datagrams(second)
        row = stack.row_when(lambda r: r["packets"] == received_2)
        down = sender.sent - received_1 - received_2
        assert down > 0, "the exporter sent nothing while the collector was down"
        assert lost_1 + row["sequence_lost"] == down
        assert row["flows"] == received_2 and row["pending_sets"] == 0 and row["sequence_resets"] == 0
    finally:
        sender.halt.set()
        stack.close()


def _saved_next(stack: Stack) -> int | None:
    try:
        streams = json.loads(stack.sequence_path.read_text())["streams"]
    except (OSError, ValueError, KeyError):
        return None
    return next((s[4] for s in streams if s[0] == "127.0.0.1" and s[3] == DOMAIN), None)


def test_ipfix_after_sigkill_templates_decode_at_once_and_the_gap_is_lost(tmp_path):
    stack = Stack(tmp_path)
    try:
        stack.start_collector()
        records, seq = 4, 0
        t_template = time.monotonic()
        stack.send(ipfix(seq, records, template=True), ipfix_port=True)
        seq += records
        for _ in range(49):
            stack.send(ipfix(seq, records), ipfix_port=True)
            seq += records
        stack.row_when(lambda r: r["flows"] == 50 * records)
        # the sequence state saved reaches the last message; the kill comes 2 s after the template
        wait_until(lambda: _saved_next(stack) == seq, timeout_s=10)
        time.sleep(max(0.0, 2.0 - (time.monotonic() - t_template)))
        stack.collector.proc.send_signal(signal.SIGKILL)
        stack.collector.proc.wait(10)
        for _ in range(30):  # 30 messages, 120 records, while the collector is gone
            stack.send(ipfix(seq, records), ipfix_port=True)
            seq += records
        new = stack.start_collector()
        assert "templates loaded" in new.log() and "sequence state loaded" in new.log()
        for _ in range(20):  # data only: decoded with the template saved before the kill
            stack.send(ipfix(seq, records), ipfix_port=True)
            seq += records
        row = stack.row_when(lambda r: r["packets"] == 20)
        assert row["flows"] == 20 * records and row["pending_sets"] == 0
        assert row["sequence_lost"] == 30 * records and row["sequence_resets"] == 0
        assert not row["decode_errors"]
    finally:
        stack.close()


def test_sigkill_mid_stream_counts_exactly_what_no_run_kept(tmp_path):
    """The collector SIGKILLed while an exporter keeps sending, without waiting for any save: the
    restarted collector continues each exporter's numbering from the last mark whose flows were made
    durable (seqmarks.py), so sent = stored + counted lost, exactly (v9 packets of one flow each)."""
    stack = Stack(tmp_path)
    sender = Sender(stack, rate=1000)
    try:
        stack.start_collector()
        sender.start()
        stack.row_when(lambda r: r["flows"] >= 1500)
        stack.collector.proc.send_signal(signal.SIGKILL)
        stack.collector.proc.wait(10)
        at_kill = sender.sent
        wait_until(lambda: sender.sent >= at_kill + 500, timeout_s=10)  # sent while no collector runs
        second = stack.start_collector()
        stack.row_when(lambda r: r["packets"] >= 1000)
        sender.halt.set()
        sender.join(5)
        assert second.stop() == 0
        row = stack.row_when(lambda r: r["packets"] == stopped_datagrams(second))
        lost = row["sequence_lost"]

        def settled():
            status = stack.client.status()
            return status if status["flows_committed"] + lost >= sender.sent else None
        try:
            status = wait_until(settled, timeout_s=20)
        except AssertionError:
            status = stack.client.status()
        stored = status["flows_committed"]
        assert status["delivery"]["lost_flows"] == 0 and status["delivery"]["duplicate_flows"] >= 0
        assert lost >= 500 and row["sequence_resets"] == 0
        assert sender.sent == stored + lost, f"sent {sender.sent}, stored {stored}, counted lost {lost}"
    finally:
        sender.halt.set()
        stack.close()
