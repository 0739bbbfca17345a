"""NetFlow v5: fixed 24-byte header plus ``count`` fixed 48-byte records.

Pure functions: ``parse_header`` checks one datagram, ``parse_headers`` checks many at once (the
decoder's path), ``decode_records`` turns the records of many
datagrams (already concatenated) into flow-schema columns with one ``frombuffer``.
"""
from __future__ import annotations

import struct

import numpy as np

from flowmodel.addr import ipv4_column_from_raw
from flowmodel.schema import HINT_CONST, HINT_IPV4

HEADER = struct.Struct(">HHIIIIBBH")
HEADER_LEN = HEADER.size  # 24
RECORD_LEN = 48
MAX_COUNT = 30  # Cisco's documented maximum; we accept more if the datagram really holds them

HEADER_DTYPE = np.dtype([
    ("version", ">u2"), ("count", ">u2"), ("uptime", ">u4"), ("secs", ">u4"), ("nsecs", ">u4"),
    ("sequence", ">u4"), ("engine_type", "u1"), ("engine_id", "u1"), ("sampling", ">u2"),
])
assert HEADER_DTYPE.itemsize == HEADER_LEN

# parse_headers status codes -> decode error reason (0 = usable)
OK, TRUNCATED_HEADER, ZERO_COUNT, TRUNCATED_RECORDS = 0, 1, 2, 3
REASONS = ("ok", "truncated_header", "zero_count", "truncated_records")

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


def gather(buf, starts: np.ndarray, width: int) -> np.ndarray:
    """(len(starts), width) uint8 copy of the ``width`` bytes at each start of the bytes ``buf``.

    Every ``start + width`` must be <= len(buf). One fancy index over a sliding-window view: no
    per-row Python.
    """
    win = np.ndarray((max(len(buf) - width + 1, 0), width), dtype=np.uint8, buffer=buf, strides=(1, 1))
    return win[starts]


def even_stride(offsets: np.ndarray) -> int | None:
    """The distance between consecutive datagrams when it is the same for all (0 for one datagram),
    else None: datagrams joined back to back with equal lengths, or held in fixed receive slots."""
    n = len(offsets)
    if n < 2:
        return 0
    stride = int(offsets[1] - offsets[0])
    if stride <= 0 or (n > 2 and not (offsets[2:] - offsets[1:-1] == stride).all()):
        return None
    return stride


def parse_headers(buf, offsets: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Headers of many v5 datagrams held back to back in the bytes ``buf``.

    Datagram i is ``buf[offsets[i]:offsets[i] + lengths[i]]``. Returns (headers, status): a
    HEADER_DTYPE array (zeros where the header is truncated; a strided view into ``buf`` when all
    datagrams have the same length) and per datagram one of OK, TRUNCATED_HEADER, ZERO_COUNT,
    TRUNCATED_RECORDS -- the checks of ``parse_header``, vectorised.
    """
    n = len(offsets)
    size = int(lengths[0]) if n else 0
    stride = even_stride(offsets) if n and size >= HEADER_LEN and (lengths == size).all() else None
    if stride is not None:
        headers = np.ndarray((n,), dtype=HEADER_DTYPE, buffer=buf, offset=int(offsets[0]), strides=(stride,))
        count = headers["count"].astype(np.int64)
        status = np.where(HEADER_LEN + count * RECORD_LEN > size, TRUNCATED_RECORDS, OK)
        status[count == 0] = ZERO_COUNT
        return headers, status
    full = lengths >= HEADER_LEN
    headers = np.zeros(n, dtype=HEADER_DTYPE)
    if full.any():
        headers[full] = gather(buf, offsets[full], HEADER_LEN).view(HEADER_DTYPE).reshape(-1)
    count = headers["count"].astype(np.int64)
    status = np.where(HEADER_LEN + count * RECORD_LEN > lengths, TRUNCATED_RECORDS, OK)
    status[count == 0] = ZERO_COUNT
    status[~full] = TRUNCATED_HEADER
    return headers, status


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


def decode_records(raw: bytes, counts: np.ndarray, headers: np.ndarray) -> dict[str, np.ndarray]:
    """Columns of the records ``raw`` (concatenated 48-byte records of several datagrams).

    ``counts[i]`` records came from datagram i whose header values are ``headers[i]`` =
    (uptime_ms, export_ms, sampling_rate, observation_domain).
    """
    headers = np.asarray(headers, dtype=np.int64).reshape(-1, 4)
    return decode_columns(np.frombuffer(raw, dtype=RECORD_DTYPE), np.asarray(counts, dtype=np.int64),
                          headers[:, 0], headers[:, 1], headers[:, 2], headers[:, 3])


# What every v5 batch is, whatever its values (FlowBatch.hints): v5 carries IPv4 only.
V5_HINTS = {"src_addr": HINT_IPV4, "dst_addr": HINT_IPV4, "next_hop": HINT_IPV4, "flow_version": HINT_CONST}


def hints_for(sampling: np.ndarray, domain: np.ndarray, one_exporter: bool) -> dict[str, str]:
    """FlowBatch.hints of a group's columns: V5_HINTS, and HINT_CONST for each header-derived
    column whose per-datagram values (``sampling``, ``domain``: one per datagram) are all equal."""
    hints = dict(V5_HINTS)
    for name, values in (("sampling_rate", sampling), ("observation_domain", domain)):
        if len(values) == 1 or (values == values[0]).all():
            hints[name] = HINT_CONST
    if one_exporter:
        hints["exporter"] = HINT_CONST
    return hints


def _spread(values: np.ndarray, counts: np.ndarray, n: int, uniform: int) -> np.ndarray:
    """values[i] repeated counts[i] times (``uniform`` = the one count when all are equal, else 0)."""
    if len(values) == 1 or (values == values[0]).all():  # one exporter's header fields rarely change in a group
        return np.full(n, values[0], dtype=values.dtype)
    return np.repeat(values, uniform if uniform else counts)


def decode_columns(rec: np.ndarray, counts: np.ndarray, uptime_ms: np.ndarray, export_ms: np.ndarray,
                   sampling: np.ndarray, domain: np.ndarray) -> dict[str, np.ndarray]:
    """Columns of the RECORD_DTYPE array ``rec``: ``counts[i]`` records of datagram i, whose header
    gave ``uptime_ms[i]``, ``export_ms[i]`` (int64 ms), ``sampling[i]`` (rate, >= 1) and ``domain[i]``."""
    n = len(rec)
    uniform = int(counts[0]) if len(counts) and (counts == counts[0]).all() else 0
    uptime = _spread(uptime_ms.astype(np.uint32), counts, n, uniform)
    export = _spread(export_ms.astype(np.int64), counts, n, uniform)
    protocol = rec["protocol"]
    dst_port = rec["dst_port"].astype(np.uint16)
    icmp = (protocol == 1) | (protocol == 58)
    cols = {
        "time_start": export - (uptime - rec["first"].astype(np.uint32)).view(np.int32),
        "time_end": export - (uptime - rec["last"].astype(np.uint32)).view(np.int32),
        "src_addr": ipv4_column_from_raw(rec["src"]),
        "dst_addr": ipv4_column_from_raw(rec["dst"]),
        "next_hop": ipv4_column_from_raw(rec["nexthop"]),
        "src_port": rec["src_port"].astype(np.uint16),
        "dst_port": dst_port,
        "protocol": protocol.copy(),
        "bytes": rec["bytes"].astype(np.uint64),
        "packets": rec["packets"].astype(np.uint64),
        "sampling_rate": _spread(sampling.astype(np.uint32), counts, n, uniform),
        "tcp_flags": rec["tcp_flags"].copy(),
        "tos": rec["tos"].copy(),
        "input_if": rec["input"].astype(np.uint32),
        "output_if": rec["output"].astype(np.uint32),
        "src_as": rec["src_as"].astype(np.uint32),
        "dst_as": rec["dst_as"].astype(np.uint32),
        "observation_domain": _spread(domain.astype(np.uint32), counts, n, uniform),
        "flow_version": np.full(n, 5, dtype=np.uint8),
        # v5 carries ICMP type*256+code in the destination port: keep the port, split it out too.
        "icmp_type": np.where(icmp, dst_port >> 8, 0).astype(np.uint8) if icmp.any() else np.zeros(n, np.uint8),
        "icmp_code": np.where(icmp, dst_port & 0xFF, 0).astype(np.uint8) if icmp.any() else np.zeros(n, np.uint8),
        "src_mask": rec["src_mask"].copy(),
        "dst_mask": rec["dst_mask"].copy(),
    }
    return cols
