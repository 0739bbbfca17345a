"""Shared pieces of the ingest/e2e/resources benchmarks: real service processes on free loopback
ports (tests/support/services.py), a bus counter, the load generator as a child process."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import psutil
import zmq

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))

from support.services import ServiceProcess, free_port, stack_config, write_config  # noqa: E402

from flowmodel import bus  # noqa: E402

try:  # the measuring process handles the same large bus messages: same malloc tuning as the collector
    from flowlens_collector.memory import tune_malloc

    tune_malloc()
except ImportError:
    pass

__all__ = ["ServiceProcess", "free_port", "stack_config", "write_config", "BusCounter", "Load", "cpu_seconds",
           "rss_bytes"]


class BusCounter:
    """Counts flows in ``flows.*`` batches (msgpack 'count', no column decoding) and bus seq gaps.

    With ``ack_endpoint`` it also stands in for the store's side of confirmed delivery (see
    flowmodel.bus TOPIC_ACK): it takes each stream's batches in order, counts a resent batch once,
    and publishes acks there, so a collector keeps publishing instead of holding batches for a store
    that is not in the benchmark."""

    ACK_INTERVAL_S = 0.1

    def __init__(self, endpoint: str, bind: bool, ack_endpoint: str | None = None):
        self.ctx = zmq.Context()
        self.acks = None
        if ack_endpoint:
            self.acks = self.ctx.socket(zmq.PUB)
            self.acks.setsockopt(zmq.LINGER, 0)
            self.acks.bind(ack_endpoint)
        self.stream_seq: dict[str, int] = {}   # stream -> highest batch_seq taken in order
        self.stream_flows: dict[str, int] = {}  # stream -> flows in the batches taken
        self.stream_lost: dict[str, int] = {}   # stream -> flows the collector dropped (resend from_seq)
        self.duplicates = 0
        self._next_ack = 0.0
        self._ack_sequencer = bus.Sequencer("bench-acks")
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RCVHWM, 1_000_000)
        self.sub.setsockopt(zmq.RCVBUF, 8 << 20)
        self.sub.subscribe(b"")
        (self.sub.bind if bind else self.sub.connect)(endpoint)
        self.flows = 0
        self.batches = 0
        self.events: list[dict] = []
        self.gaps = bus.GapCounter()

    def pump(self, timeout_ms: int = 50) -> int:
        n = 0
        while self.sub.poll(timeout_ms):
            topic, body = self.sub.recv_multipart(copy=False)
            if topic.bytes.startswith(bus.TOPIC_FLOWS_PREFIX):
                msg = _envelope_and_count(body.buffer)
                self.gaps.observe(msg["source"], int(msg["seq"]))
                n += 1
                timeout_ms = 0
                if self._take(msg):
                    self.flows += int(msg["count"])
                    self.batches += 1
                continue
            msg = msgpack.unpackb(body.buffer, raw=False)
            if topic.bytes == bus.TOPIC_RESEND:
                self._resend(msg)
            self.gaps.observe(msg["source"], int(msg["seq"]))
            if topic.bytes == bus.TOPIC_EXPORTER:
                msg.pop("exporters", None)
                self.events.append(msg)
                if len(self.events) > 1000:
                    del self.events[:500]
            n += 1
            timeout_ms = 0
        self._send_acks()
        return n

    def _take(self, msg: dict) -> bool:
        """Whether a flow batch is new; only in-order batches of a stream are taken (as the store does)."""
        stream = msg.get("stream")
        if stream is None or self.acks is None:
            return True
        last = self.stream_seq.get(stream, 0)
        if int(msg["batch_seq"]) != last + 1:
            self.duplicates += int(msg["batch_seq"]) <= last
            return False
        self.stream_seq[stream] = last + 1
        self.stream_flows[stream] = int(msg.get("flows_before", 0)) + int(msg["count"])
        return True

    def _resend(self, msg: dict) -> None:
        """The collector resends from its oldest batch; batches it dropped before that are lost."""
        stream, from_seq = msg.get("stream"), int(msg.get("from_seq", 0))
        if self.acks is None or stream is None:
            return
        last = self.stream_seq.get(stream, 0)
        if from_seq > last + 1:
            flows_before = int(msg.get("flows_before", 0))
            lost = max(0, flows_before - self.stream_flows.get(stream, 0))
            self.stream_lost[stream] = self.stream_lost.get(stream, 0) + lost
            self.stream_seq[stream], self.stream_flows[stream] = from_seq - 1, flows_before

    def _send_acks(self) -> None:
        if self.acks is None or not self.stream_seq or time.monotonic() < self._next_ack:
            return
        self._next_ack = time.monotonic() + self.ACK_INTERVAL_S
        acks = {s: [seq, self.stream_lost.get(s, 0)] for s, seq in self.stream_seq.items()}
        body = bus.encode_event({"acks": acks}, self._ack_sequencer)
        try:
            self.acks.send_multipart([bus.TOPIC_ACK, body], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    def wait_event(self, timeout_s: float = 15.0) -> dict:
        seen = len(self.events)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.pump(100)
            if len(self.events) > seen:
                return self.events[-1]
        raise RuntimeError(f"no health event on the bus within {timeout_s} s")

    def settle(self, target: int, quiet_s: float = 1.0, max_s: float = 20.0) -> int:
        """Pump until ``target`` flows arrived or nothing arrived for ``quiet_s``."""
        deadline = time.monotonic() + max_s
        last_change = time.monotonic()
        last = self.flows
        while self.flows < target and time.monotonic() < deadline:
            self.pump(50)
            if self.flows != last:
                last, last_change = self.flows, time.monotonic()
            elif time.monotonic() - last_change > quiet_s:
                break
        return self.flows

    def close(self) -> None:
        self.sub.close()
        if self.acks is not None:
            self.acks.close(linger=0)
        self.ctx.term()


def _envelope_and_count(buf) -> dict:
    """count/source/seq of a flow batch body, skipping the column bytes instead of copying them:
    the measuring process should cost the machine as little as possible."""
    up = msgpack.Unpacker(raw=False, max_buffer_size=len(buf) + 1)
    up.feed(buf)
    out = {}
    for _ in range(up.read_map_header()):
        key = up.unpack()
        if key in ("count", "source", "seq", "stream", "batch_seq", "flows_before"):
            out[key] = up.unpack()
        else:
            up.skip()
    return out


class Load:
    """One run of bench.loadgen in its own process."""

    def __init__(self, port: int, flows: int, flows_per_s: float | None, max_seconds: float):
        cmd = [sys.executable, "-m", "bench.loadgen", "--port", str(port), "--flows", str(int(flows)),
               "--flows-per-s", str(int(flows_per_s or 0)), "--max-seconds", str(max_seconds)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)

    def running(self) -> bool:
        return self.proc.poll() is None

    def result(self, timeout_s: float = 60) -> dict:
        out, _ = self.proc.communicate(timeout=timeout_s)
        if self.proc.returncode != 0:
            raise RuntimeError(f"load generator failed with {self.proc.returncode}")
        return json.loads(out.strip().splitlines()[-1])


def cpu_seconds(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def rss_bytes(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def udp_socket_rows(port: int) -> list[list[str]]:
    """The /proc/net/udp and udp6 rows (split into fields) of the sockets bound to ``port``."""
    rows = []
    for path in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(path) as f:
                next(f)
                rows += [parts for parts in (line.split() for line in f)
                         if len(parts) >= 13 and int(parts[1].rsplit(":", 1)[1], 16) == port]
        except OSError:
            continue
    return rows


def udp_drops(port: int) -> int:
    """Kernel drop counter of whatever UDP socket is bound to ``port`` on loopback (0 if none)."""
    return sum(int(parts[12]) for parts in udp_socket_rows(port))


def udp_queue_bytes(port: int) -> int | None:
    """Bytes waiting in the receive queue of the UDP socket bound to ``port`` (None if none is bound)."""
    rows = udp_socket_rows(port)
    return sum(int(parts[4].split(":")[1], 16) for parts in rows) if rows else None


def udp_bound(port: int) -> bool:
    return bool(udp_socket_rows(port))
