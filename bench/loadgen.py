"""Our own NetFlow v5 / v9 / IPFIX load generator: prebuilt packets of 30 distinct flows, sent in
bursts with ``sendmmsg`` (libc through ctypes; a tight ``send`` loop where that is missing) to
127.0.0.1 only, for a bounded count and time.

v9 and IPFIX use one fixed-length IPv4 template (softflowd-like: addresses, ports, protocol, tos,
TCP flags, in/out interface, packets, bytes, first/last switched for v9 or flowStart/EndMilliseconds
for IPFIX), sent before the first data packet and again every ``TEMPLATE_EVERY`` data packets.
Sequence numbers stay continuous across repeats of the packet ring: v5 and IPFIX count data records,
v9 counts export packets (template packets included).

Run as its own process so the sender never competes with the measuring process's GIL:

    python -m bench.loadgen --version 9 --port 2055 --flows-per-s 1000000 --flows 2000000 --max-seconds 5

prints one JSON line: {"datagrams": N, "flows": N, "seconds": S, "method": "sendmmsg", "version": 9}
(datagrams counts data and template packets, flows only data records).
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import socket
import struct
import sys
import time

import numpy as np

TARGET_HOST = "127.0.0.1"    # never anything else: benchmarks stay on loopback
VERSIONS = (5, 9, 10)
RECORDS_PER_PACKET = 30
DEFAULT_DISTINCT_PACKETS = 2048                             # 61,440 distinct flows before repeating
TEMPLATE_EVERY = 1000                                       # data packets between template refreshes
TEMPLATE_ID = 256
SOURCE_ID = 7                                               # v9 source id / IPFIX observation domain
UPTIME_MS = 3_600_000                                       # the exporter booted an hour ago

# ---------------------------------------------------------------------------- NetFlow v5

HEADER_LEN = 24
RECORD_LEN = 48
PACKET_LEN = HEADER_LEN + RECORDS_PER_PACKET * RECORD_LEN   # 1464 bytes

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

# ---------------------------------------------------------------------------- v9 / IPFIX template

# (record field, IE / v9 field type, numpy type); the numpy type's size is the field length.
_COMMON_FIELDS = [("src", 8, ">u4"), ("dst", 12, ">u4"), ("src_port", 7, ">u2"), ("dst_port", 11, ">u2"),
                  ("protocol", 4, "u1"), ("tos", 5, "u1"), ("tcp_flags", 6, "u1"), ("input", 10, ">u2"),
                  ("output", 14, ">u2"), ("packets", 2, ">u4"), ("bytes", 1, ">u4")]
TEMPLATE_FIELDS = {
    9: _COMMON_FIELDS + [("first", 22, ">u4"), ("last", 21, ">u4")],       # sysUptime ms
    10: _COMMON_FIELDS + [("first", 152, ">u8"), ("last", 153, ">u8")],    # flowStart/EndMilliseconds
}
V9_HEADER_DTYPE = np.dtype([("version", ">u2"), ("count", ">u2"), ("uptime", ">u4"), ("unix_secs", ">u4"),
                            ("sequence", ">u4"), ("source_id", ">u4")])
IPFIX_HEADER_DTYPE = np.dtype([("version", ">u2"), ("length", ">u2"), ("export_time", ">u4"), ("sequence", ">u4"),
                               ("domain", ">u4")])
SET_HEADER_DTYPE = np.dtype([("id", ">u2"), ("length", ">u2")])


def templated_dtypes(version: int) -> tuple[np.dtype, np.dtype]:
    """(record dtype, packet dtype) of a v9 (9) or IPFIX (10) data packet: header, one data set of
    RECORDS_PER_PACKET records, padded to a 4-byte boundary."""
    record = np.dtype([(name, t) for name, _ie, t in TEMPLATE_FIELDS[version]])
    body = SET_HEADER_DTYPE.itemsize + RECORDS_PER_PACKET * record.itemsize
    pad = -body % 4
    fields = [("header", V9_HEADER_DTYPE if version == 9 else IPFIX_HEADER_DTYPE), ("set", SET_HEADER_DTYPE),
              ("records", record, (RECORDS_PER_PACKET,))]
    if pad:
        fields.append(("pad", "u1", (pad,)))
    return record, np.dtype(fields)


def _flows(n: int, record: np.dtype, now_ms: int, version: int) -> np.ndarray:
    """``n`` distinct flows as records of ``record``; times relative to sysUptime for v5/v9."""
    r = np.zeros(n, dtype=record)
    i = np.arange(n, dtype=np.uint64)
    r["src"] = 0x0A000000 + (i % (1 << 24))                      # 10.x.y.z, one per flow
    r["dst"] = 0xC0A80000 + (i * 7919) % 65536                     # 192.168.x.y
    r["input"], r["output"] = 1 + i % 8, 9 + i % 8
    r["packets"] = 1 + i % 100
    r["bytes"] = 64 + (i % 1400) * (1 + i % 100)
    last = UPTIME_MS - (i % 1000)
    first = last - (i % 30_000)
    if version == 10:
        boot_ms = np.uint64(now_ms - UPTIME_MS)
        last, first = boot_ms + last, boot_ms + first
    r["last"], r["first"] = last, first
    r["src_port"] = 1024 + i % 60000
    r["dst_port"] = np.array([53, 80, 443, 22, 123, 8080], dtype=np.uint64)[i % 6]
    r["protocol"] = np.where(r["dst_port"] == 53, 17, 6)
    r["tcp_flags"] = np.where(r["protocol"] == 6, 0x1B, 0)
    return r


class Stream:
    """The prebuilt data packets of one version (a ring), the template packet, and the sequence
    numbering that keeps the stream continuous however the ring is replayed."""

    def __init__(self, version: int, n_packets: int = DEFAULT_DISTINCT_PACKETS, now_s: float | None = None):
        if version not in VERSIONS:
            raise ValueError(f"unsupported version {version}")
        now_s = time.time() if now_s is None else now_s
        self.version = version
        self.export_s = int(now_s)
        self.next_seq = 0
        n_flows = n_packets * RECORDS_PER_PACKET
        if version == 5:
            self.packets = pk = np.zeros(n_packets, dtype=PACKET_DTYPE)
            h = pk["header"]
            h["version"], h["count"], h["uptime"] = 5, RECORDS_PER_PACKET, UPTIME_MS
            h["unix_secs"], h["unix_nsecs"] = int(now_s), int((now_s % 1) * 1e9)
            r = _flows(n_flows, RECORD_DTYPE, int(now_s * 1000), 5)  # a field view cannot be flattened
            r["nexthop"] = 0xC0A800FE
            r["src_as"], r["dst_as"] = 64512 + np.arange(n_flows) % 100, 64612 + np.arange(n_flows) % 100
            r["src_mask"], r["dst_mask"] = 24, 16
            pk["records"] = r.reshape(n_packets, RECORDS_PER_PACKET)
            self.data_units, self.template_units = RECORDS_PER_PACKET, 0   # flows
        else:
            record, dtype = templated_dtypes(version)
            self.packets = pk = np.zeros(n_packets, dtype=dtype)
            h = pk["header"]
            h["version"] = version
            if version == 9:
                h["count"], h["uptime"], h["unix_secs"], h["source_id"] = RECORDS_PER_PACKET, UPTIME_MS, \
                    self.export_s, SOURCE_ID
                self.data_units, self.template_units = 1, 1                   # export packets
            else:
                h["length"], h["export_time"], h["domain"] = dtype.itemsize, self.export_s, SOURCE_ID
                self.data_units, self.template_units = RECORDS_PER_PACKET, 0  # data records
            pk["set"]["id"] = TEMPLATE_ID
            pk["set"]["length"] = dtype.itemsize - h.dtype.itemsize          # set header + records + padding
            pk["records"] = _flows(n_flows, record, int(now_s * 1000), version).reshape(n_packets,
                                                                                         RECORDS_PER_PACKET)
        self.seq = pk["header"]["sequence"]
        self.packet_len = pk.dtype.itemsize
        self.stamp(0, n_packets)   # numbered as if the ring went out once; run() renumbers as it sends
        self.next_seq = 0

    def template_packet(self) -> bytes | None:
        """The template export packet numbered at the current position (None for v5); advances the
        sequence by what a template packet counts."""
        if self.version == 5:
            return None
        fields = TEMPLATE_FIELDS[self.version]
        spec = struct.pack(">HH", TEMPLATE_ID, len(fields)) + b"".join(
            struct.pack(">HH", ie, np.dtype(t).itemsize) for _n, ie, t in fields)
        if self.version == 9:
            body = struct.pack(">HH", 0, 4 + len(spec)) + spec
            head = struct.pack(">HHIIII", 9, 1, UPTIME_MS, self.export_s, self.next_seq, SOURCE_ID)
        else:
            body = struct.pack(">HH", 2, 4 + len(spec)) + spec
            head = struct.pack(">HHIII", 10, 16 + len(body), self.export_s, self.next_seq, SOURCE_ID)
        self.next_seq += self.template_units
        return head + body

    def stamp(self, pos: int, k: int) -> None:
        """Number ring packets [pos, pos+k) as the next k data packets of the stream."""
        self.seq[pos:pos + k] = self.next_seq + np.arange(k, dtype=np.uint64) * self.data_units
        self.next_seq += k * self.data_units

    def datagrams(self, n_data: int) -> list[bytes]:
        """The first ``n_data`` data packets of the stream with their template packets, exactly as
        ``run`` sends them (for the self-check)."""
        raw = self.packets.view(np.uint8).reshape(len(self.packets), self.packet_len)
        out = []
        for j in range(n_data):
            if j % TEMPLATE_EVERY == 0 and self.version != 5:
                out.append(self.template_packet())
            pos = j % len(self.packets)
            self.stamp(pos, 1)
            out.append(raw[pos].tobytes())
        return out


def build_packets(n_packets: int = DEFAULT_DISTINCT_PACKETS, now_s: float | None = None) -> np.ndarray:
    """``n_packets`` v5 export packets (structured array) whose 30 x n flows are all distinct."""
    return Stream(5, n_packets, now_s).packets


def self_check(version: int, n_data: int = 1200, group: int = 64) -> str:
    """Decode the first ``n_data`` data packets of a stream (ring shorter than that, a template
    refresh inside) with the collector's Decoder, in groups like the collector's; raises when a
    flow is missing, an error or a sequence gap is counted, or a value differs. Returns a summary."""
    from flowlens_collector.decode import Decoder

    now_s = time.time()
    stream = Stream(version, 256, now_s)
    datagrams = stream.datagrams(n_data)
    decoder = Decoder()
    source = ("127.0.0.1", 40000)
    batches = [decoder.decode(datagrams[i:i + group], [source] * len(datagrams[i:i + group]), int(now_s * 1000))
               for i in range(0, len(datagrams), group)]
    flows = sum(b.count for b in batches)
    expected = n_data * RECORDS_PER_PACKET
    problems = []
    if flows != expected:
        problems.append(f"{flows} flows decoded, {expected} sent")
    for st in decoder.exporter_stats():
        if st["decode_errors"] or st["sequence_lost"] or st["sequence_backward"] or st["pending_sets"]:
            problems.append(f"exporter stats {st}")
    first = batches[0]
    want = stream.packets["records"][0]
    got_src = bytes(first.columns["src_addr"][0])
    if got_src != bytes(10) + b"\xff\xff" + int(want["src"][0]).to_bytes(4, "big"):
        problems.append(f"first src {got_src.hex()}")
    for col, field in (("bytes", "bytes"), ("packets", "packets"), ("dst_port", "dst_port"),
                       ("src_port", "src_port"), ("protocol", "protocol"), ("input_if", "input")):
        if not np.array_equal(first.columns[col][:RECORDS_PER_PACKET].astype(np.uint64),
                              want[field].astype(np.uint64)):
            problems.append(f"column {col} differs")
    span = first.columns["time_end"][:RECORDS_PER_PACKET] - first.columns["time_start"][:RECORDS_PER_PACKET]
    if not np.array_equal(span.astype(np.int64), (want["last"] - want["first"]).astype(np.int64)):
        problems.append("flow durations differ")
    if int(first.columns["flow_version"][0]) != version:
        problems.append(f"flow_version {int(first.columns['flow_version'][0])}")
    if problems:
        raise AssertionError(f"v{version} load does not decode as sent: " + "; ".join(problems))
    return (f"{len(datagrams)} datagrams ({stream.packet_len} B data packets) -> {flows:,} flows,"
            f" no errors or sequence gaps")


# ---------------------------------------------------------------------------- sendmmsg via ctypes

# struct mmsghdr as the collector declares it for recvmmsg; sendmmsg takes the same layout.
from flowlens_collector.recvmmsg import _IoVec, _MMsgHdr  # noqa: E402


class Sender:
    """Sends slices of a contiguous buffer of equal-length packets over a connected UDP socket."""

    def __init__(self, sock: socket.socket, packets: np.ndarray):
        self.sock = sock
        self.packet_len = packets.dtype.itemsize
        self.raw = packets.view(np.uint8).reshape(len(packets), self.packet_len)
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
                self._iov[k].iov_base = base + k * self.packet_len
                self._iov[k].iov_len = self.packet_len
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

    def send_one(self, packet: bytes) -> bool:
        """One extra datagram (a template packet); False when nobody listens."""
        while True:
            try:
                self.sock.send(packet)
                return True
            except (BlockingIOError, InterruptedError):
                time.sleep(0.0001)
            except OSError as e:
                if e.errno == 105:   # ENOBUFS: retry like the bursts
                    time.sleep(0.0001)
                    continue
                if isinstance(e, ConnectionRefusedError):
                    return False
                raise


def run(port: int, flows_per_s: float | None, max_flows: int, max_seconds: float,
        distinct_packets: int = DEFAULT_DISTINCT_PACKETS, version: int = 5) -> dict:
    """Send ``max_flows`` flows (rounded up to whole packets) at ``flows_per_s`` (None = as fast as
    possible), stopping early at ``max_seconds``; v9/IPFIX template packets come on top."""
    stream = Stream(version, distinct_packets)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.connect((TARGET_HOST, port))
    sender = Sender(sock, stream.packets)
    total = -(-max_flows // RECORDS_PER_PACKET)
    burst = 32
    dps = None if not flows_per_s else flows_per_s / RECORDS_PER_PACKET
    if dps:
        burst = int(max(1, min(64, dps / 4000)))  # about 4000 bursts/s: smooth enough for 200 ms batches
    sent = 0
    templates = 0
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
        if version != 5 and sent % TEMPLATE_EVERY == 0:
            if not sender.send_one(stream.template_packet()):
                break
            templates += 1
        k = min(burst, total - sent, sender.n - pos)
        if version != 5:
            k = min(k, TEMPLATE_EVERY - sent % TEMPLATE_EVERY)  # the refresh goes exactly at its turn
        stream.stamp(pos, k)
        n = sender.send(pos, k)
        sent += n
        pos = (pos + n) % sender.n
        if n < k:
            break
    seconds = time.perf_counter() - start
    sock.close()
    return {"datagrams": sent + templates, "flows": sent * RECORDS_PER_PACKET, "seconds": seconds,
            "method": sender.method, "version": version}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="NetFlow v5/v9/IPFIX load generator (127.0.0.1 only)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--version", type=int, choices=VERSIONS, default=5, help="5, 9 or 10 (IPFIX)")
    p.add_argument("--flows-per-s", type=float, default=0, help="0 = as fast as possible")
    p.add_argument("--flows", type=int, required=True, help="flows to send (bounded)")
    p.add_argument("--max-seconds", type=float, default=10.0)
    a = p.parse_args(argv)
    print(json.dumps(run(a.port, a.flows_per_s or None, a.flows, a.max_seconds, version=a.version)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
