"""Traffic for the fault benchmarks (bench.faults), each kind in its own process so the sender never
competes with the measuring process, printing one JSON line of what it sent:

    python -m bench.faultload paced --port P --version 9 --flows-per-s 30000 --seconds 20
    python -m bench.faultload flood --port P --noise-port Q --exporters 10000 --domains 7 --seconds 4
    python -m bench.faultload scans --port P --rounds 4 --scanners 1000 --ports 25 --every 2.5

``paced``: bench.loadgen's stream (30 flows a packet, template every 1000 packets, continuous
sequence numbers; v5 and v9 export times of the moment each packet goes, so flow times move on as
they would from a router) sent with ``sendto`` on an unconnected socket, so a collector that is killed and
restarted does not stop the sender (a connected socket gets ECONNREFUSED, and bench.loadgen stops).

``flood``: from each of ``exporters`` loopback addresses (127.1.x.y), per observation domain one
valid v9 datagram (template and RECORDS data records: the flows counted as sent) to ``port`` and one
fuzzed datagram to ``noise-port``: random sets, templates and data for ids that never meet, set
lengths past the end, IPFIX lengths that lie, unknown versions. Noise uses its own domains
(NOISE_DOMAIN up), so it can never decode into flows; kernel drops on the two ports tell valid from
noise.

``scans``: NetFlow v5 from one exporter (127.3.0.1): each round, ``scanners`` new sources
(10.<100+round>.x.y) each probe ``ports`` TCP ports of one host with a single SYN, so every one
of them is a vertical scan to the analyzer (with analysis.scan_threshold below ``ports``): a CRITICAL
advisory per source and round.
"""
from __future__ import annotations

import argparse
import json
import random
import socket
import struct
import sys
import time

import numpy as np

from . import loadgen

RECORDS = 10                 # data records in each valid flood datagram
NOISE_DOMAIN = 1 << 20       # noise datagrams use observation domains from here up, one each
TEMPLATE_ID = loadgen.TEMPLATE_ID


def _v9_template_set() -> bytes:
    fields = loadgen.TEMPLATE_FIELDS[9]
    spec = struct.pack(">HH", TEMPLATE_ID, len(fields)) + b"".join(
        struct.pack(">HH", ie, np.dtype(t).itemsize) for _n, ie, t in fields)
    return struct.pack(">HH", 0, 4 + len(spec)) + spec


def _v9_data_set(records: int, seed: int) -> bytes:
    record, _ = loadgen.templated_dtypes(9)
    rows = loadgen._flows(records * 64, record, int(time.time() * 1000), 9)
    start = (seed % 64) * records
    body = rows[start:start + records].tobytes()
    body += bytes(-len(body) % 4)
    return struct.pack(">HH", TEMPLATE_ID, 4 + len(body)) + body


def valid_v9(domain: int, seq: int, data_set: bytes, template_set: bytes, records: int) -> bytes:
    """A v9 export packet with the template and one data set: decodes on its own, in any order."""
    return struct.pack(">HHIIII", 9, records + 1, loadgen.UPTIME_MS, int(time.time()), seq, domain) \
        + template_set + data_set


def noise(rng: random.Random, domain: int) -> bytes:
    """One fuzzed datagram of ``domain``; never decodable into flows (see the module docstring)."""
    kind = rng.randrange(6)
    head = struct.pack(">HHIIII", 9, rng.randrange(1, 40), loadgen.UPTIME_MS, int(time.time()),
                       rng.getrandbits(32), domain)
    junk = rng.randbytes(rng.randrange(0, 600))
    if kind == 0:   # sets of reserved ids (4-255) with random bodies
        sets = b"".join(struct.pack(">HH", rng.randrange(4, 256), 4 + n) + rng.randbytes(n)
                        for n in (rng.randrange(0, 120) for _ in range(rng.randrange(1, 6))))
        return head + sets
    if kind == 1:   # IPFIX whose length field lies
        return struct.pack(">HHIII", 10, rng.randrange(16, 65535), int(time.time()), rng.getrandbits(32),
                           domain) + junk
    if kind == 2:   # templates (ids 256-511) of random fields; no data ever refers to them
        n = rng.randrange(1, 40)
        spec = struct.pack(">HH", rng.randrange(256, 512), n) + b"".join(
            struct.pack(">HH", rng.randrange(1, 400), rng.randrange(0, 20)) for _ in range(n))
        return head + struct.pack(">HH", 0, 4 + len(spec)) + spec
    if kind == 3:   # data for a template id (1024 up) nobody defines: held, then dropped or expired
        body = rng.randbytes(rng.randrange(4, 400))
        return head + struct.pack(">HH", rng.randrange(1024, 65536), 4 + len(body)) + body
    if kind == 4:   # a set longer than the datagram
        return head + struct.pack(">HH", rng.randrange(256, 65536), len(junk) + 5 + rng.randrange(1, 9000)) + junk
    return struct.pack(">H", rng.choice((0, 1, 6, 8, 11, 0xFFFF))) + junk  # no known version


def _address(block: int, i: int) -> str:
    return f"127.{block}.{(i >> 8) & 255}.{i & 255}"


def paced(port: int, version: int, flows_per_s: float, seconds: float) -> dict:
    stream = loadgen.Stream(version)
    raw = stream.packets.view("u1").reshape(len(stream.packets), stream.packet_len)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    dest = (loadgen.TARGET_HOST, port)
    per_s = flows_per_s / loadgen.RECORDS_PER_PACKET
    header = stream.packets["header"]
    sent = templates = errors = 0
    start = time.perf_counter()
    while True:
        now = time.perf_counter()
        if now - start >= seconds:
            break
        due = start + sent / per_s
        if due > now:
            time.sleep(due - now)
        try:
            if version != 5 and sent % loadgen.TEMPLATE_EVERY == 0:
                sock.sendto(stream.template_packet(), dest)
                templates += 1
            pos = sent % len(raw)
            stream.stamp(pos, 1)
            if version != 10:   # export time now: v5/v9 flow times follow it, so an analyzer's flow clock moves
                header["unix_secs"][pos] = int(time.time())
            sock.sendto(raw[pos], dest)
            sent += 1
        except OSError:  # ENOBUFS and the like: the datagram did not go; try the same one again
            errors += 1
            time.sleep(0.0005)
    sock.close()
    return {"flows": sent * loadgen.RECORDS_PER_PACKET, "datagrams": sent + templates, "templates": templates,
            "send_errors": errors, "seconds": time.perf_counter() - start, "version": version}


def flood(port: int, noise_port: int, exporters: int, domains: int, seconds: float, seed: int = 13) -> dict:
    rng = random.Random(seed)
    template_set = _v9_template_set()
    data_sets = [_v9_data_set(RECORDS, k) for k in range(16)]
    valid = noisy = 0
    start = time.perf_counter()
    per_exporter_s = seconds / exporters
    for i in range(exporters):
        due = start + i * per_exporter_s
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((_address(1, i + 1), 0))
            for d in range(domains):
                s.sendto(valid_v9(1 + d, 0, data_sets[(i + d) % 16], template_set, RECORDS), ("127.0.0.1", port))
                valid += 1
                s.sendto(noise(rng, NOISE_DOMAIN + i * domains + d), ("127.0.0.1", noise_port))
                noisy += 1
    return {"flows": valid * RECORDS, "datagrams": valid, "noise_datagrams": noisy, "exporters": exporters,
            "domains": exporters * domains * 2, "seconds": time.perf_counter() - start}


def scan_packets(round_: int, scanners: int, ports: int, seq0: int) -> list[bytes]:
    """NetFlow v5 packets of one round of ``scans`` (flow sequence from ``seq0``), exported now."""
    per = loadgen.RECORDS_PER_PACKET
    n = scanners * ports
    k = np.arange(n)
    rec = np.zeros(-(-n // per) * per, dtype=loadgen.RECORD_DTYPE)
    rec["src"][:n] = ((10 << 24) | ((100 + round_) << 16)) + 1 + k // ports
    rec["dst"][:n] = 0xC0000201                                   # 192.0.2.1
    rec["src_port"][:n], rec["dst_port"][:n] = 40000, 1000 + k % ports
    rec["protocol"][:n], rec["tcp_flags"][:n], rec["packets"][:n], rec["bytes"][:n] = 6, 0x02, 1, 44
    rec["first"][:n] = rec["last"][:n] = loadgen.UPTIME_MS - 10
    pk = np.zeros(len(rec) // per, dtype=loadgen.PACKET_DTYPE)
    pk["records"] = rec.reshape(-1, per)
    h = pk["header"]
    now = time.time()
    h["version"], h["uptime"], h["unix_secs"], h["unix_nsecs"] = 5, loadgen.UPTIME_MS, int(now), int(now % 1 * 1e9)
    h["count"] = np.minimum(per, n - np.arange(len(pk)) * per)
    h["sequence"] = seq0 + np.arange(len(pk)) * per
    raw = pk.view(np.uint8).reshape(len(pk), -1)
    return [raw[i, :loadgen.HEADER_LEN + int(h["count"][i]) * loadgen.RECORD_LEN].tobytes() for i in range(len(pk))]


def scans(port: int, rounds: int, scanners: int, ports: int, every_s: float) -> dict:
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.3.0.1", 0))
        start = time.perf_counter()
        for r in range(rounds):
            time.sleep(max(0.0, start + r * every_s - time.perf_counter()))
            for i, packet in enumerate(scan_packets(r, scanners, ports, sent)):
                s.sendto(packet, ("127.0.0.1", port))
                if i % 100 == 99:
                    time.sleep(0.002)   # paced: the scans must arrive, the advisories are what is measured
            sent += scanners * ports
    return {"flows": sent, "scanners": rounds * scanners}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="fault benchmark traffic (127.0.0.1 only)")
    sub = p.add_subparsers(dest="kind", required=True)
    a = sub.add_parser("paced")
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--version", type=int, choices=loadgen.VERSIONS, default=9)
    a.add_argument("--flows-per-s", type=float, required=True)
    a.add_argument("--seconds", type=float, required=True)
    f = sub.add_parser("flood")
    f.add_argument("--port", type=int, required=True)
    f.add_argument("--noise-port", type=int, required=True)
    f.add_argument("--exporters", type=int, default=10_000)
    f.add_argument("--domains", type=int, default=7)
    f.add_argument("--seconds", type=float, default=4.0)
    s = sub.add_parser("scans")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--rounds", type=int, default=4)
    s.add_argument("--scanners", type=int, default=1000)
    s.add_argument("--ports", type=int, default=25)
    s.add_argument("--every", type=float, default=2.5, help="seconds between rounds")
    a = p.parse_args(argv)
    if a.kind == "paced":
        out = paced(a.port, a.version, a.flows_per_s, a.seconds)
    elif a.kind == "flood":
        out = flood(a.port, a.noise_port, a.exporters, a.domains, a.seconds)
    else:
        out = scans(a.port, a.rounds, a.scanners, a.ports, a.every)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
