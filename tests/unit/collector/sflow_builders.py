"""Build sFlow v5 datagrams and the packets inside them, field by field, for decoder tests.

Written from the sFlow v5 specification (sflow.org SFLOW-DATAGRAM5 / SFLOW-STRUCTS5): XDR, every
field a big-endian 32-bit word or a 4-byte padded opaque.
"""
from __future__ import annotations

import ipaddress
import struct


def u32(*values: int) -> bytes:
    return struct.pack(f">{len(values)}I", *values)


def address(text: str | None) -> bytes:
    if text is None:
        return u32(0)
    ip = ipaddress.ip_address(text)
    return u32(1 if ip.version == 4 else 2) + ip.packed


def datagram(samples: list[bytes], agent: str | None = "192.0.2.1", sub_agent: int = 0, sequence: int = 1,
             uptime_ms: int = 1000, count: int | None = None, version: int = 5) -> bytes:
    return (u32(version) + address(agent) + u32(sub_agent, sequence, uptime_ms,
                                                len(samples) if count is None else count) + b"".join(samples))


def _sample(fmt: int, body: bytes, length: int | None = None) -> bytes:
    return u32(fmt, len(body) if length is None else length) + body


def flow_sample(records: list[bytes], sequence: int = 1, source_id: int = 5, rate: int = 1000, pool: int = 0,
                drops: int = 0, input_if: int = 1, output_if: int = 2, count: int | None = None,
                length: int | None = None) -> bytes:
    body = u32(sequence, source_id, rate, pool, drops, input_if, output_if,
               len(records) if count is None else count) + b"".join(records)
    return _sample(1, body, length)


def expanded_flow_sample(records: list[bytes], sequence: int = 1, source_type: int = 0, source_index: int = 5,
                         rate: int = 1000, pool: int = 0, drops: int = 0, input_if: tuple = (0, 1),
                         output_if: tuple = (0, 2)) -> bytes:
    body = u32(sequence, source_type, source_index, rate, pool, drops, *input_if, *output_if,
               len(records)) + b"".join(records)
    return _sample(3, body)


def counter_sample(records: list[bytes], sequence: int = 1, source_id: int = 5, expanded: bool = False) -> bytes:
    if expanded:
        return _sample(4, u32(sequence, source_id >> 24, source_id & 0xFFFFFF, len(records)) + b"".join(records))
    return _sample(2, u32(sequence, source_id, len(records)) + b"".join(records))


def record(fmt: int, data: bytes, length: int | None = None) -> bytes:
    return u32(fmt, len(data) if length is None else length) + data


def _pad(b: bytes) -> bytes:
    return b + bytes(-len(b) % 4)


def raw_header(packet: bytes, protocol: int = 1, frame_length: int | None = None, stripped: int = 4,
               header_length: int | None = None) -> bytes:
    frame = len(packet) + 4 if frame_length is None else frame_length
    hl = len(packet) if header_length is None else header_length
    return record(1, u32(protocol, frame, stripped, hl) + _pad(packet))


def sampled_ethernet(length: int, src_mac: bytes = b"\x02" * 6, dst_mac: bytes = b"\x04" * 6,
                     ethertype: int = 0x0800) -> bytes:
    return record(2, u32(length) + _pad(src_mac) + _pad(dst_mac) + u32(ethertype))


def sampled_ip(length: int, protocol: int, src: str, dst: str, src_port: int, dst_port: int, tcp_flags: int = 0,
               tos: int = 0) -> bytes:
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    fmt = 3 if a.version == 4 else 4
    return record(fmt, u32(length, protocol) + a.packed + b.packed + u32(src_port, dst_port, tcp_flags, tos))


def extended_switch(src_vlan: int, dst_vlan: int = 0, src_priority: int = 0, dst_priority: int = 0) -> bytes:
    return record(1001, u32(src_vlan, src_priority, dst_vlan, dst_priority))


def extended_router(next_hop: str, src_mask: int, dst_mask: int) -> bytes:
    return record(1002, address(next_hop) + u32(src_mask, dst_mask))


def extended_gateway(next_hop: str, router_as: int, src_as: int, peer_as: int, segments: list[list[int]],
                     communities: tuple = (), local_pref: int = 100) -> bytes:
    path = b"".join(u32(2, len(seg), *seg) for seg in segments)
    return record(1003, address(next_hop) + u32(router_as, src_as, peer_as, len(segments)) + path
                  + u32(len(communities), *communities) + u32(local_pref))


def if_counters(if_index: int, in_octets: int, out_octets: int, speed: int = 10**9, **words: int) -> bytes:
    names = ("in_ucast_pkts", "in_multicast_pkts", "in_broadcast_pkts", "in_discards", "in_errors",
             "in_unknown_protos")
    outs = ("out_ucast_pkts", "out_multicast_pkts", "out_broadcast_pkts", "out_discards", "out_errors")
    data = (u32(if_index, 6) + struct.pack(">Q", speed) + u32(1, 3) + struct.pack(">Q", in_octets)
            + u32(*(words.get(n, 0) for n in names)) + struct.pack(">Q", out_octets)
            + u32(*(words.get(n, 0) for n in outs)) + u32(words.get("promiscuous_mode", 0)))
    return record(1, data)


# -- packets ---------------------------------------------------------------------------------------

def ethernet(payload: bytes, ethertype: int, tags: tuple = ()) -> bytes:
    """Ethernet II with (tpid, vlan id) tags, outermost first."""
    head = b"\x00\x11\x22\x33\x44\x55" + b"\x00\x66\x77\x88\x99\xaa"
    for tpid, vid in tags:
        head += struct.pack(">H", tpid) + struct.pack(">H", vid)
    return head + struct.pack(">H", ethertype) + payload


def mpls(payload: bytes, labels: list[int]) -> bytes:
    out = b""
    for i, label in enumerate(labels):
        bottom = 1 if i == len(labels) - 1 else 0
        out += struct.pack(">I", (label << 12) | (bottom << 8) | 64)
    return out + payload


def ipv4(src: str, dst: str, protocol: int, payload: bytes, tos: int = 0, fragment_offset: int = 0,
         options: bytes = b"") -> bytes:
    ihl = 5 + len(options) // 4
    return (struct.pack(">BBHHHBBH", 0x40 | ihl, tos, 4 * ihl + len(payload), 1, fragment_offset, 64, protocol, 0)
            + ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed + options + payload)


def ipv6(src: str, dst: str, next_header: int, payload: bytes, traffic_class: int = 0) -> bytes:
    first = (6 << 28) | (traffic_class << 20)
    return (struct.pack(">IHBB", first, len(payload), next_header, 64) + ipaddress.ip_address(src).packed
            + ipaddress.ip_address(dst).packed + payload)


def ipv6_extension(next_header: int, payload: bytes, size: int = 8) -> bytes:
    """A hop-by-hop / routing / destination options header of ``size`` bytes (a multiple of 8)."""
    return struct.pack(">BB", next_header, size // 8 - 1) + bytes(size - 2) + payload


def ipv6_fragment(next_header: int, payload: bytes, offset: int = 0, more: bool = True) -> bytes:
    return struct.pack(">BBHI", next_header, 0, (offset << 3) | int(more), 7) + payload


def tcp(src_port: int, dst_port: int, flags: int, payload: bytes = b"") -> bytes:
    return struct.pack(">HHIIBBHHH", src_port, dst_port, 1, 0, 0x50, flags, 1024, 0, 0) + payload


def udp(src_port: int, dst_port: int, payload: bytes = b"") -> bytes:
    return struct.pack(">HHHH", src_port, dst_port, 8 + len(payload), 0) + payload


def icmp(icmp_type: int, code: int, payload: bytes = b"") -> bytes:
    return struct.pack(">BBHI", icmp_type, code, 0, 0) + payload
