"""The history benchmark's load (bench/history.py step 1): the flows of bench.flowgen cut into IPFIX
datagrams whose flowStart/End carry the flows' historic times, sent over UDP on 127.0.0.1 to a
FlowLens collector and to nfcapd (one process per 5-minute slice), paced on both receive queues and
on the store's committed count so nothing is lost; then the checks that it was not.
"""
from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import nfdumpfiles as nf
from .harness import free_port, udp_drops

SLICE_MS = nf.SLICE_MS
HOUR_MS = 3_600_000

# IPFIX template of the benchmark's exporter: (record column, IE, big-endian type)
TEMPLATE_ID = 256
DOMAIN = 1
IPFIX_FIELDS = [("src", 8, ">u4"), ("dst", 12, ">u4"), ("src_port", 7, ">u2"), ("dst_port", 11, ">u2"),
                ("protocol", 4, "u1"), ("tos", 5, "u1"), ("tcp_flags", 6, "u1"), ("input_if", 10, ">u4"),
                ("output_if", 14, ">u4"), ("packets", 2, ">u8"), ("bytes", 1, ">u8"),
                ("time_start", 152, ">u8"), ("time_end", 153, ">u8")]
RECORD = np.dtype([(name, t) for name, _ie, t in IPFIX_FIELDS])
PER_PACKET = 25                         # 20 + 25 x 55 = 1,395-byte datagrams
QUEUE_HIGH = 4 << 20                    # a receiver's UDP queue above this: wait until it is below QUEUE_LOW
QUEUE_LOW = 1 << 20
NFCAPD_TRIES = 3                        # a slice's nfcapd file that misses flows is made again (nfcapd alone)
STORE_BACKLOG = 150_000                 # flows sent but not committed at most (the write queue holds 262,144 rows)


# ---------------------------------------------------------------------------- IPFIX datagrams

def template_packet(export_s: int, seq: int) -> bytes:
    spec = struct.pack(">HH", TEMPLATE_ID, len(IPFIX_FIELDS)) + b"".join(
        struct.pack(">HH", ie, np.dtype(t).itemsize) for _n, ie, t in IPFIX_FIELDS)
    body = struct.pack(">HH", 2, 4 + len(spec)) + spec
    return struct.pack(">HHIII", 10, 16 + len(body), export_s, seq, DOMAIN) + body


def data_packets(cols: dict, export_s: int, seq: int) -> list[bytes]:
    """The flows of ``cols`` as IPFIX data datagrams of PER_PACKET records (the last one shorter);
    ``seq`` is the count of data records sent before them."""
    n = len(cols["time_end"])
    rec = np.empty(n, RECORD)
    rec["src"] = _ipv4(cols["src_addr"])
    rec["dst"] = _ipv4(cols["dst_addr"])
    for name in ("src_port", "dst_port", "protocol", "tos", "tcp_flags", "input_if", "output_if", "packets",
                 "bytes", "time_start", "time_end"):
        rec[name] = cols[name]
    raw = rec.tobytes()
    size = RECORD.itemsize
    out = []
    for i in range(0, n, PER_PACKET):
        k = min(PER_PACKET, n - i)
        body = struct.pack(">HH", TEMPLATE_ID, 4 + k * size) + raw[i * size:(i + k) * size]
        out.append(struct.pack(">HHIII", 10, 16 + len(body), export_s, seq + i, DOMAIN) + body)
    return out


def _ipv4(column: np.ndarray) -> np.ndarray:
    """The IPv4 address of IPv4-mapped V16 addresses, as host-order uint32."""
    return column.view(np.uint8).reshape(-1, 16)[:, 12:16].copy().view(">u4").ravel().astype(np.uint32)


# ---------------------------------------------------------------------------- loading

@dataclass
class Loaded:
    flows: int
    start_ms: int
    end_ms: int
    load_s: float
    seal_s: float
    checks: dict = field(default_factory=dict)
    redone: list = field(default_factory=list)    # nfcapd files that missed flows and were made again


class Sender:
    """One UDP socket sending each datagram to the collector and to nfcapd, never letting either
    receive queue grow past QUEUE_HIGH (then it waits for the reader: lossless on loopback)."""

    def __init__(self, ports: list[int]):
        self.ports = ports
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self.datagrams = 0

    def send(self, datagrams: list[bytes], ports: list[int] | None = None) -> None:
        targets = [("127.0.0.1", p) for p in (ports or self.ports)]
        for i, d in enumerate(datagrams):
            if i % 64 == 0:
                self._pace()
            for t in targets:
                self.sock.sendto(d, t)
        self.datagrams += len(datagrams)

    def _pace(self) -> None:
        for p in self.ports:
            if (nf.udp_queue_bytes(p) or 0) > QUEUE_HIGH:
                nf.wait_drained(p, timeout_s=60, below=QUEUE_LOW)

    def close(self) -> None:
        self.sock.close()


def slice_counts(n: int, slices: int) -> list[int]:
    base, extra = divmod(n, slices)
    return [base + (1 if i < extra else 0) for i in range(slices)]


def load(n: int, start_ms: int, end_ms: int, cfg: dict, client, files_dir: Path, work_dir: Path,
         log=print) -> Loaded:
    """Generate and send every slice of [start, end) to the collector and to per-slice nfcapd."""
    from .flowgen import generate

    collector_port = cfg["collector"]["ipfix_port"]
    nfcapd_port = free_port(socket.SOCK_DGRAM)
    slices = (end_ms - start_ms) // SLICE_MS
    counts = slice_counts(n, slices)
    sink = nf.SliceCollector(files_dir, work_dir, nfcapd_port)
    sender = Sender([collector_port, nfcapd_port])
    committed = 0
    sent = 0
    redone: list[str] = []
    t0 = time.monotonic()
    last_log = t0
    try:
        for i, count in enumerate(counts):
            s0 = start_ms + i * SLICE_MS
            cols = generate(count, s0, s0 + SLICE_MS, seed=1)
            export_s = (s0 + SLICE_MS) // 1000
            datagrams = [template_packet(export_s, sent)] + data_packets(cols, export_s, sent)
            ports = None   # the first time to both, again to nfcapd alone
            for attempt in range(NFCAPD_TRIES):
                sink.start(s0)
                sender.send(datagrams, ports)
                drops = udp_drops(nfcapd_port)
                got = nf.file_flows(sink.finish())
                if got == count:
                    break
                redone.append(f"{nf.file_name(s0)}: {got} of {count} flows (kernel drops {drops})")
                log(f"    history: nfcapd file {redone[-1]}; made again")
                ports = [nfcapd_port]
            else:
                raise RuntimeError(f"nfcapd lost flows of slice {nf.file_name(s0)} {NFCAPD_TRIES} times: {redone[-3:]}")
            sent += count
            while sent - committed > STORE_BACKLOG:
                committed = client.status()["flows_committed"]
                if sent - committed > STORE_BACKLOG:
                    time.sleep(0.05)
            if time.monotonic() - last_log > 30:
                last_log = time.monotonic()
                log(f"    history: sent {sent:,} of {n:,} flows ({sent / (last_log - t0):,.0f}/s),"
                    f" store committed {committed:,}")
        committed = wait_committed(client, n)
        load_s = time.monotonic() - t0
    finally:
        sender.close()
        sink.stop_process()
    log(f"    history: {n:,} flows loaded in {load_s:.1f} s ({n / load_s:,.0f} flows/s); {sink.files} nfcapd files")
    t1 = time.monotonic()
    st = wait_sealed(client, log)
    seal_s = time.monotonic() - t1
    checks = lossless_checks(client, st, n, files_dir, collector_port)
    checks["nfcapd files made again"] = len(redone)
    return Loaded(n, start_ms, end_ms, load_s, seal_s, checks, redone)


def wait_committed(client, n: int, quiet_s: float = 60.0) -> int:
    """Until the store has committed ``n`` flows; fails when the count stops moving for ``quiet_s``."""
    last, last_change = -1, time.monotonic()
    while True:
        committed = client.status()["flows_committed"]
        if committed >= n:
            return committed
        if committed != last:
            last, last_change = committed, time.monotonic()
        elif time.monotonic() - last_change > quiet_s:
            raise RuntimeError(f"the store committed {committed:,} of {n:,} flows and no more for {quiet_s:.0f} s")
        time.sleep(0.1)


def wait_sealed(client, log=print, quiet_s: float = 300.0) -> dict:
    """Until every partition in the store's status is sealed (seal progress or a deadline)."""
    last, last_change, last_log = -1, time.monotonic(), time.monotonic()
    while True:
        st = client.status()
        parts = st["sqlite"]["partitions"]
        sealed = sum(1 for p in parts if p["sealed"])
        if parts and sealed == len(parts):
            return st
        progress = (sealed, st["write_queue"]["seal_steps"])
        if progress != last:
            last, last_change = progress, time.monotonic()
        elif time.monotonic() - last_change > quiet_s:
            raise RuntimeError(f"the store sealed {sealed} of {len(parts)} partitions and no more for {quiet_s:.0f} s")
        if time.monotonic() - last_log > 30:
            last_log = time.monotonic()
            log(f"    history: {sealed} of {len(parts)} partitions sealed")
        time.sleep(0.5)


def lossless_checks(client, st: dict, n: int, files_dir: Path, collector_port: int) -> dict:
    """Every count that says nothing was lost; raises naming the first that disagrees."""
    collectors = client.exporters()["collectors"]
    decoded = sum(int(c.get("counters", {}).get("flows", 0)) for c in collectors)
    nf_flows, nf_bytes = nf.total_flows(files_dir)
    checks = {"store committed": st["flows_committed"], "store rows in partitions": st["sqlite"]["rows"],
              "collector decoded": decoded, "nfdump flows": nf_flows}
    problems = [f"{k} {v:,} != {n:,}" for k, v in checks.items() if v != n]
    extra = {"shed flows": st["write_queue"]["shed_flows"], "bus gaps": st["bus"]["gaps_total"],
             "kernel drops (collector socket)": udp_drops(collector_port),
             "out of range flows": st["sqlite"]["out_of_range_flows"]}
    problems += [f"{k} {v:,}" for k, v in extra.items() if v]
    if problems:
        raise RuntimeError("flows were lost on the way: " + "; ".join(problems))
    return {**checks, **extra, "nfdump bytes": nf_bytes}
