"""Our own NetFlow v5 load generator: prebuilt packets of 30 distinct flows, sent in bursts with
``sendmmsg`` (libc through ctypes; a tight ``send`` loop where that is missing) to 127.0.0.1 only,
for a bounded count and time.

Run as its own process so the sender never competes with the measuring process's GIL:

    python -m bench.loadgen --port 2055 --flows-per-s 1000000 --flows 2000000 --max-seconds 5

prints one JSON line: {"datagrams": N, "flows": N, "seconds": S, "method": "sendmmsg"}.
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import socket
import sys
import time

import numpy as np

TARGET_HOST = "127.0.0.1"    # never anything else: benchmarks stay on loopback
RECORDS_PER_PACKET = 30
HEADER_LEN = 24
RECORD_LEN = 48
PACKET_LEN = HEADER_LEN + RECORDS_PER_PACKET * RECORD_LEN   # 1464 bytes
DEFAULT_DISTINCT_PACKETS = 2048                             # 61,440 distinct flows before repeating

HEADER_DTYPE = np.dtype([("version", ">u2"), ("count", ">u2"), ("uptime", ">u4"), ("unix_secs", ">u4"),
                         ("unix_nsecs", ">u4"), ("sequence", ">u4"), ("engine_type", "u1"), ("engine_id", "u1"),
                         ("sampling", ">u2")])
RECORD_DTYPE = np.dtype([("src", ">u4"), ("dst", ">u4"), ("nexthop", ">u4"), ("input", ">u2"), ("output", ">u2"),
                         ("packets", ">u4"), ("bytes", ">u4"), ("first", ">u4"), ("last", ">u4"),
                         ("src_port", ">u2"), ("dst_port", ">u2"), ("pad1", "u1"), ("tcp_flags", "u1"),
                         ("protocol", "u1"), ("tos", "u1"), ("src_as", ">u2"), ("dst_as", ">u2"),
                         ("src_mask", "u1"), ("dst_mask", "u1"), ("pad2", ">u2")])
PACKET_DTYPE = np.dtype([("header", HEADER_DTYPE), ("records", RECORD_DTYPE, (RECORDS_PER_PACKET,))])
assert PACKET_DTYPE.itemsize == PACKET_LEN


def build_packets(n_packets: int = DEFAULT_DISTINCT_PACKETS, now_s: float | None = None) -> np.ndarray:
    """``n_packets`` v5 export packets (structured array) whose 30 x n flows are all distinct."""
    now_s = time.time() if now_s is None else now_s
    uptime_ms = 3_600_000  # the exporter booted an hour ago
    pk = np.zeros(n_packets, dtype=PACKET_DTYPE)
    h = pk["header"]
    h["version"] = 5
    h["count"] = RECORDS_PER_PACKET
    h["uptime"] = uptime_ms
    h["unix_secs"] = int(now_s)
    h["unix_nsecs"] = int((now_s % 1) * 1e9)
    h["sequence"] = np.arange(n_packets, dtype=np.uint64) * RECORDS_PER_PACKET
    r = np.zeros(n_packets * RECORDS_PER_PACKET, dtype=RECORD_DTYPE)  # a field view cannot be flattened in place
    i = np.arange(r.size, dtype=np.uint64)
    r["src"] = 0x0A000000 + (i % (1 << 24))                      # 10.x.y.z, one per flow
    r["dst"] = 0xC0A80000 + (i * 7919) % 65536                     # 192.168.x.y
    r["nexthop"] = 0xC0A800FE
    r["input"], r["output"] = 1 + i % 8, 9 + i % 8
    r["packets"] = 1 + i % 100
    r["bytes"] = 64 + (i % 1400) * (1 + i % 100)
    r["last"] = uptime_ms - (i % 1000)
    r["first"] = r["last"] - (i % 30_000)
    r["src_port"] = 1024 + i % 60000
    r["dst_port"] = np.array([53, 80, 443, 22, 123, 8080], dtype=np.uint64)[i % 6]
    r["protocol"] = np.where(r["dst_port"] == 53, 17, 6)
    r["tcp_flags"] = np.where(r["protocol"] == 6, 0x1B, 0)
    r["src_as"], r["dst_as"] = 64512 + i % 100, 64612 + i % 100
    r["src_mask"], r["dst_mask"] = 24, 16
    pk["records"] = r.reshape(n_packets, RECORDS_PER_PACKET)
    return pk


# ---------------------------------------------------------------------------- sendmmsg via ctypes

class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.POINTER(_IoVec)), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t), ("msg_flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


class Sender:
    """Sends slices of a contiguous packet buffer over a connected UDP socket."""

    def __init__(self, sock: socket.socket, packets: np.ndarray):
        self.sock = sock
        self.raw = packets.view(np.uint8).reshape(len(packets), PACKET_LEN)
        self.n = len(packets)
        self.method = "send"
        self._sendmmsg = None
        libc_name = ctypes.util.find_library("c")
        libc = ctypes.CDLL(libc_name, use_errno=True) if libc_name else None
        fn = getattr(libc, "sendmmsg", None) if libc is not None else None
        if fn is not None and sys.platform.startswith("linux"):
            fn.argtypes = [ctypes.c_int, ctypes.POINTER(_MMsgHdr), ctypes.c_uint, ctypes.c_int]
            fn.restype = ctypes.c_int
            base = self.raw.ctypes.data
            self._iov = (_IoVec * self.n)()
            self._msgs = (_MMsgHdr * self.n)()
            for k in range(self.n):
                self._iov[k].iov_base = base + k * PACKET_LEN
                self._iov[k].iov_len = PACKET_LEN
                self._msgs[k].msg_hdr.msg_iov = ctypes.pointer(self._iov[k])
                self._msgs[k].msg_hdr.msg_iovlen = 1
            self._msg_size = ctypes.sizeof(_MMsgHdr)
            self._msgs_addr = ctypes.addressof(self._msgs)
            self._sendmmsg = fn
            self.method = "sendmmsg"

    def send(self, start: int, count: int) -> int:
        """Send packets [start, start+count) (no wrap); returns how many went out."""
        if self._sendmmsg is not None:
            sent = 0
            fd = self.sock.fileno()
            while sent < count:
                ptr = ctypes.cast(self._msgs_addr + (start + sent) * self._msg_size, ctypes.POINTER(_MMsgHdr))
                r = self._sendmmsg(fd, ptr, count - sent, 0)
                if r < 0:
                    err = ctypes.get_errno()
                    if err in (11, 105, 111):  # EAGAIN, ENOBUFS, ECONNREFUSED (no listener yet): retry/skip
                        if err == 111:
                            return sent
                        time.sleep(0.0001)
                        continue
                    raise OSError(err, "sendmmsg failed")
                sent += r
            return sent
        send = self.sock.send
        for k in range(start, start + count):
            send(self.raw[k])
        return count


def run(port: int, flows_per_s: float | None, max_flows: int, max_seconds: float,
        distinct_packets: int = DEFAULT_DISTINCT_PACKETS) -> dict:
    """Send ``max_flows`` flows (rounded up to whole packets) at ``flows_per_s`` (None = as fast as
    possible), stopping early at ``max_seconds``."""
    packets = build_packets(distinct_packets)
    seq = packets["header"]["sequence"]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.connect((TARGET_HOST, port))
    sender = Sender(sock, packets)
    total = -(-max_flows // RECORDS_PER_PACKET)
    burst = 32
    dps = None if not flows_per_s else flows_per_s / RECORDS_PER_PACKET
    if dps:
        burst = int(max(1, min(64, dps / 4000)))  # about 4000 bursts/s: smooth enough for 200 ms batches
    sent = 0
    next_seq = 0
    start = time.perf_counter()
    deadline = start + max_seconds
    pos = 0
    while sent < total:
        now = time.perf_counter()
        if now >= deadline:
            break
        if dps:
            due = start + sent / dps
            if due > now:
                time.sleep(due - now)
        k = min(burst, total - sent, sender.n - pos)
        # v5 sequence numbers count flows: keep them continuous across repeats of the packet ring
        seq[pos:pos + k] = next_seq + np.arange(k, dtype=np.uint64) * RECORDS_PER_PACKET
        n = sender.send(pos, k)
        sent += n
        next_seq += n * RECORDS_PER_PACKET
        pos = (pos + n) % sender.n
        if n < k:
            break
    seconds = time.perf_counter() - start
    sock.close()
    return {"datagrams": sent, "flows": sent * RECORDS_PER_PACKET, "seconds": seconds, "method": sender.method}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="NetFlow v5 load generator (127.0.0.1 only)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--flows-per-s", type=float, default=0, help="0 = as fast as possible")
    p.add_argument("--flows", type=int, required=True, help="flows to send (bounded)")
    p.add_argument("--max-seconds", type=float, default=10.0)
    a = p.parse_args(argv)
    print(json.dumps(run(a.port, a.flows_per_s or None, a.flows, a.max_seconds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
