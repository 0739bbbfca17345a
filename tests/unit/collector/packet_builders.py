"""Hand-built NetFlow v5/v9 and IPFIX packets for the pure decoder tests: bytes in, nothing else."""
from __future__ import annotations

import struct

EXP = ("192.0.2.1", 4000)
EXPORT_S = 1_700_000_000
DAY_MS = 86_400_000


def v4(a: str) -> bytes:
    return bytes(int(x) for x in a.split("."))


def be(value: int, length: int) -> bytes:
    return value.to_bytes(length, "big")


def set_(set_id: int, body: bytes, pad_to: int = 0) -> bytes:
    """A flowset/set; ``pad_to`` pads its end to that multiple (as some exporters do)."""
    if pad_to:
        body += bytes(-(len(body) + 4) % pad_to)
    return struct.pack(">HH", set_id, len(body) + 4) + body


def tmpl_v9(tid: int, fields) -> bytes:
    return struct.pack(">HH", tid, len(fields)) + b"".join(struct.pack(">HH", ie, ln) for ie, ln in fields)


def tmpl_ipfix(tid: int, fields) -> bytes:
    """fields: (ie, length) or (ie, length, enterprise number)."""
    out = struct.pack(">HH", tid, len(fields))
    for f in fields:
        if len(f) == 3 and f[2]:
            out += struct.pack(">HHI", f[0] | 0x8000, f[1], f[2])
        else:
            out += struct.pack(">HH", f[0], f[1])
    return out


def options_ipfix(tid: int, scope, opts) -> bytes:
    return struct.pack(">HHH", tid, len(scope) + len(opts), len(scope)) + \
        b"".join(struct.pack(">HH", ie, ln) for ie, ln in list(scope) + list(opts))


def v5_packet(nflows: int, seq: int, secs: int = EXPORT_S) -> bytes:
    head = struct.pack(">HHIIIIBBH", 5, nflows, 100_000, secs, 0, seq, 0, 0, 0)
    rec = v4("10.0.0.1") + v4("10.0.0.2") + bytes(4) + struct.pack(">HHIIIIHHBBBBHHBBH", 1, 2, 5, 500, 90_000,
                                                                         99_000, 1000, 80, 0, 0, 6, 0, 0, 0, 0, 0, 0)
    return head + rec * nflows


def v9_packet(sets, *, uptime=100_000, secs=EXPORT_S, seq=1, source_id=0, count=None) -> bytes:
    """``count``: the header's record count when it should not be the number of sets (it is a hint)."""
    return struct.pack(">HHIIII", 9, len(sets) if count is None else count, uptime, secs, seq, source_id) + \
        b"".join(sets)


def ipfix_packet(sets, *, export_s=EXPORT_S, seq=0, domain=0) -> bytes:
    body = b"".join(sets)
    return struct.pack(">HHIII", 10, 16 + len(body), export_s, seq, domain) + body


BASIC_V4 = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 4), (2, 4)]


def basic_record(src="10.0.0.1", dst="10.0.0.2", sport=1000, dport=80, proto=6, nbytes=500, pkts=5) -> bytes:
    return v4(src) + v4(dst) + be(sport, 2) + be(dport, 2) + be(proto, 1) + be(nbytes, 4) + be(pkts, 4)


def stats_of(dec) -> dict:
    """The one exporter's stats row."""
    (st,) = dec.exporter_stats()
    return st
