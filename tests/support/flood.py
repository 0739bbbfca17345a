"""A flood of export datagrams from many exporter addresses and observation domains, for the
flood tests (issue 13 item 5): each exporter is a loopback address of 127.0.0.0/8 (Linux routes
the whole block to lo, so binding 127.a.b.c needs no setup), each sends a few observation domains'
worth of NetFlow v5, v9 and IPFIX datagrams with templates of random shapes, some of them mutated
(bit flips and truncation after the header, so the (exporter, domain) a datagram counts on stays
known) and some garbage of an unknown version.

``plan`` builds the datagrams and says which (exporter, domain) pairs they name; ``send`` sends
them from their addresses, paced so loopback does not drop.
"""
from __future__ import annotations

import random
import socket
import struct
import time
from dataclasses import dataclass, field

EXPORT_S = int(time.time()) - 120
# information elements with their usual lengths: addresses, ports, protocol, counters, interfaces, AS
FIELD_POOL = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 4), (2, 4), (10, 2), (14, 2), (16, 2), (17, 2),
              (5, 1), (6, 1), (9, 1), (13, 1), (15, 4), (21, 4), (22, 4)]


def exporter_address(i: int) -> str:
    """The i-th flood exporter: 127.1.0.1 onwards, never .0 or .255 in the last byte."""
    return f"127.{1 + i // 62_500}.{(i // 250) % 250 + 1}.{i % 250 + 1}"


@dataclass
class Plan:
    datagrams: list[tuple[str, bytes]] = field(default_factory=list)  # (exporter address, payload)
    pairs: set[tuple[str, int]] = field(default_factory=set)           # (exporter, domain) they name
    exporters: int = 0


def _fields(rng: random.Random) -> list[tuple[int, int]]:
    base = FIELD_POOL[:7]
    extra = rng.sample(FIELD_POOL[7:], rng.randint(0, 6))
    return base + extra


def _record(fields, rng: random.Random) -> bytes:
    out = b""
    for ie, ln in fields:
        if ie in (21, 22):  # last/first switched: inside the export's uptime
            out += struct.pack(">I", 50_000 + rng.randint(0, 1000))
        else:
            out += rng.getrandbits(8 * ln).to_bytes(ln, "big")
    return out


def _v9(domain: int, seq: int, tid: int, fields, records: int, rng) -> bytes:
    tmpl = struct.pack(">HH", tid, len(fields)) + b"".join(struct.pack(">HH", ie, ln) for ie, ln in fields)
    data = b"".join(_record(fields, rng) for _ in range(records))
    sets = struct.pack(">HH", 0, 4 + len(tmpl)) + tmpl + struct.pack(">HH", tid, 4 + len(data)) + data
    return struct.pack(">HHIIII", 9, 1 + records, 100_000, EXPORT_S, seq, domain) + sets


def _ipfix(domain: int, seq: int, tid: int, fields, records: int, rng) -> bytes:
    fields = [(ie, ln) for ie, ln in fields if ie not in (21, 22)] + [(152, 8), (153, 8)]
    tmpl = struct.pack(">HH", tid, len(fields)) + b"".join(struct.pack(">HH", ie, ln) for ie, ln in fields)
    recs = []
    for _ in range(records):
        r = _record(fields[:-2], rng)
        end_ms = EXPORT_S * 1000 - rng.randint(0, 60_000)
        recs.append(r + struct.pack(">QQ", end_ms - 1000, end_ms))
    data = b"".join(recs)
    body = struct.pack(">HH", 2, 4 + len(tmpl)) + tmpl + struct.pack(">HH", tid, 4 + len(data)) + data
    return struct.pack(">HHIII", 10, 16 + len(body), EXPORT_S, seq, domain) + body


def _v5(domain: int, seq: int, records: int, rng) -> bytes:
    head = struct.pack(">HHIIIIBBH", 5, records, 100_000, EXPORT_S, 0, seq, domain >> 8, domain & 0xFF, 0)
    recs = b"".join(rng.getrandbits(32).to_bytes(4, "big") * 2 + bytes(4) +
                    struct.pack(">HHIIIIHHBBBBHHBBH", 1, 2, 5, 500, 90_000, 99_000, rng.randint(1, 65535), 80,
                                0, 0, 6, 0, 0, 0, 0, 0, 0) for _ in range(records))
    return head + recs


def _mutate(payload: bytes, header: int, rng: random.Random) -> bytes:
    """Flip bits or cut the datagram after its header: the exporter and domain it names stay."""
    b = bytearray(payload)
    if rng.random() < 0.5:
        return bytes(b[:rng.randint(header, len(b))])
    for _ in range(rng.randint(1, 8)):
        pos = rng.randrange(header * 8, len(b) * 8)
        b[pos // 8] ^= 1 << (pos % 8)
    return bytes(b)


def domain_of(payload: bytes) -> int:
    """The observation domain a flood datagram counts on: v9 source id, IPFIX domain, v5 engine
    type and id; 0 for a datagram of another version."""
    version = struct.unpack_from(">H", payload)[0]
    if version == 9:
        return struct.unpack_from(">I", payload, 16)[0]
    if version == 10:
        return struct.unpack_from(">I", payload, 12)[0]
    if version == 5:
        return (payload[20] << 8) | payload[21]
    return 0


def v5_datagram(domain: int, seq: int, records: int, seed: int = 0) -> bytes:
    """One NetFlow v5 datagram of ``records`` flows under engine ``domain`` (type << 8 | id)."""
    return _v5(domain, seq, records, random.Random(seed))


def plan(exporters: int, domains_per_exporter: int, seed: int = 13) -> Plan:
    """Per exporter, ``domains_per_exporter`` domains (v9, IPFIX and v5 in turn), one datagram each
    of 1 to 8 records under a fresh template; every fifth mutated, and per exporter one datagram of
    an unknown version (counted on its domain 0)."""
    rng = random.Random(seed)
    p = Plan(exporters=exporters)
    for i in range(exporters):
        ip = exporter_address(i)
        for k in range(domains_per_exporter):
            domain = (i * domains_per_exporter + k) % 65_000 + 1
            kind = k % 3
            records = rng.randint(1, 8)
            if kind == 0:
                payload, header = _v9(domain, 1, rng.randint(256, 65535), _fields(rng), records, rng), 20
            elif kind == 1:
                payload, header = _ipfix(domain, 0, rng.randint(256, 65535), _fields(rng), records, rng), 16
            else:
                payload, header = _v5(domain, 0, records, rng), 24
            if rng.random() < 0.2:
                payload = _mutate(payload, header, rng)
            p.datagrams.append((ip, payload))
            p.pairs.add((ip, domain))
        p.datagrams.append((ip, struct.pack(">H", 77) + rng.randbytes(rng.randint(0, 60))))
        p.pairs.add((ip, 0))
    return p


def send(p: Plan, port: int, host: str = "127.0.0.1", per_pause: int = 400, pause_s: float = 0.004) -> int:
    """Send every datagram from its exporter address (one socket per exporter); a short pause every
    ``per_pause`` datagrams keeps the collector's receive buffer from overflowing."""
    sent = 0
    sock, bound = None, None
    try:
        for ip, payload in p.datagrams:
            if ip != bound:
                if sock is not None:
                    sock.close()
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind((ip, 0))
                bound = ip
            sock.sendto(payload, (host, port))
            sent += 1
            if per_pause and sent % per_pause == 0:
                time.sleep(pause_s)
    finally:
        if sock is not None:
            sock.close()
    return sent
