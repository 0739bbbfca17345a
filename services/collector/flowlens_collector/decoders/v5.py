"""NetFlow v5: fixed 24-byte header plus ``count`` fixed 48-byte records.

Pure functions: ``parse_header`` checks one datagram, ``decode_records`` turns the records of many
datagrams (already concatenated) into flow-schema columns with one ``frombuffer``.
"""
from __future__ import annotations

import struct

import numpy as np

from flowmodel.schema import ADDR

HEADER = struct.Struct(">HHIIIIBBH")
HEADER_LEN = HEADER.size  # 24
RECORD_LEN = 48
MAX_COUNT = 30  # Cisco's documented maximum; we accept more if the datagram really holds them

RECORD_DTYPE = np.dtype([
    # addresses read as little-endian u4 so their network-order bytes are copied as they are
    ("src", "<u4"), ("dst", "<u4"), ("nexthop", "<u4"),
    ("input", ">u2"), ("output", ">u2"), ("packets", ">u4"), ("bytes", ">u4"),
    ("first", ">u4"), ("last", ">u4"), ("src_port", ">u2"), ("dst_port", ">u2"),
    ("pad1", "u1"), ("tcp_flags", "u1"), ("protocol", "u1"), ("tos", "u1"),
    ("src_as", ">u2"), ("dst_as", ">u2"), ("src_mask", "u1"), ("dst_mask", "u1"), ("pad2", ">u2"),
])
assert RECORD_DTYPE.itemsize == RECORD_LEN


class V5Error(ValueError):
    """A datagram that is not a usable v5 export; ``reason`` names the counter."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def parse_header(buf) -> tuple:
    """(count, sys_uptime_ms, unix_secs, unix_nsecs, flow_sequence, engine_type, engine_id, sampling_field).

    Raises V5Error for a truncated header or a count the datagram cannot hold.
    """
    if len(buf) < HEADER_LEN:
        raise V5Error("truncated_header")
    _v, count, uptime, secs, nsecs, seq, etype, eid, sampling = HEADER.unpack_from(buf, 0)
    if count == 0:
        raise V5Error("zero_count")
    if HEADER_LEN + count * RECORD_LEN > len(buf):
        raise V5Error("truncated_records")
    return count, uptime, secs, nsecs, seq, etype, eid, sampling


def sampling_rate(sampling_field: int) -> int:
    """The v5 header's sampling field: top 2 bits mode, low 14 bits interval; 0 means unsampled."""
    interval = sampling_field & 0x3FFF
    return interval if interval else 1


def uptime_to_abs_ms(value: np.ndarray, uptime_ms: np.ndarray, export_ms: np.ndarray) -> np.ndarray:
    """Absolute ms of sysUptime-relative times.

    The difference uptime - value is taken modulo 2^32 as a signed 32-bit number, so a sysUptime that
    rolled over (~49.7 days) after the flow started, or a FIRST/LAST_SWITCHED just under 2^32 from an
    exporter whose uptime base is behind its flow clock, both land next to the export time instead of
    weeks away.
    """
    delta = (uptime_ms.astype(np.uint32) - value.astype(np.uint32)).view(np.int32)
    return export_ms - delta


def ipv4_mapped(raw_le_u4: np.ndarray) -> np.ndarray:
    """IPv4 addresses held as little-endian u4 views of their network-order bytes -> ADDR column."""
    n = len(raw_le_u4)
    out = np.zeros((n, 4), dtype="<u4")
    out[:, 2] = 0xFFFF0000  # bytes 10 and 11 = 0xff
    out[:, 3] = raw_le_u4
    return out.view(ADDR).reshape(n)


def decode_records(raw: bytes, counts: np.ndarray, headers: np.ndarray) -> dict[str, np.ndarray]:
    """Columns of the records ``raw`` (concatenated 48-byte records of several datagrams).

    ``counts[i]`` records came from datagram i whose header values are ``headers[i]`` =
    (uptime_ms, export_ms, sampling_rate, observation_domain).
    """
    rec = np.frombuffer(raw, dtype=RECORD_DTYPE)
    n = len(rec)
    per = np.repeat(headers, counts, axis=0) if len(counts) > 1 else np.broadcast_to(headers[0], (n, 4))
    uptime = per[:, 0]
    export_ms = per[:, 1]
    protocol = rec["protocol"]
    dst_port = rec["dst_port"].astype(np.uint16)
    icmp = (protocol == 1) | (protocol == 58)
    cols = {
        "time_start": uptime_to_abs_ms(rec["first"], uptime, export_ms),
        "time_end": uptime_to_abs_ms(rec["last"], uptime, export_ms),
        "src_addr": ipv4_mapped(rec["src"]),
        "dst_addr": ipv4_mapped(rec["dst"]),
        "next_hop": ipv4_mapped(rec["nexthop"]),
        "src_port": rec["src_port"].astype(np.uint16),
        "dst_port": dst_port,
        "protocol": protocol.copy(),
        "bytes": rec["bytes"].astype(np.uint64),
        "packets": rec["packets"].astype(np.uint64),
        "sampling_rate": per[:, 2].astype(np.uint32),
        "tcp_flags": rec["tcp_flags"].copy(),
        "tos": rec["tos"].copy(),
        "input_if": rec["input"].astype(np.uint32),
        "output_if": rec["output"].astype(np.uint32),
        "src_as": rec["src_as"].astype(np.uint32),
        "dst_as": rec["dst_as"].astype(np.uint32),
        "observation_domain": per[:, 3].astype(np.uint32),
        "flow_version": np.full(n, 5, dtype=np.uint8),
        # v5 carries ICMP type*256+code in the destination port: keep the port, split it out too.
        "icmp_type": np.where(icmp, dst_port >> 8, 0).astype(np.uint8),
        "icmp_code": np.where(icmp, dst_port & 0xFF, 0).astype(np.uint8),
        "src_mask": rec["src_mask"].copy(),
        "dst_mask": rec["dst_mask"].copy(),
    }
    return cols
