"""Hand-written pcap bytes for tests: raw IPv4/IPv6 UDP packets, fragmented or whole, in a classic
pcap file (linktype 101 raw IP, or 1 Ethernet)."""
from __future__ import annotations

import socket
import struct
from pathlib import Path


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def ipv4(src: str, dst: str, body: bytes, ident: int = 0, offset: int = 0, more: bool = False, proto: int = 17) -> bytes:
    flags = (0x2000 if more else 0) | (offset // 8)
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), ident, flags, 64, proto, 0,
                       socket.inet_aton(src), socket.inet_aton(dst)) + body


def ipv4_fragments(src: str, dst: str, sport: int, dport: int, payload: bytes, ident: int, size: int) -> list[bytes]:
    """A UDP datagram cut into IPv4 fragments of ``size`` bytes of IP payload (a multiple of 8)."""
    body = udp(sport, dport, payload)
    return [ipv4(src, dst, body[o:o + size], ident, o, o + size < len(body)) for o in range(0, len(body), size)]


def ipv6(src: str, dst: str, nxt: int, body: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(body), nxt, 64, socket.inet_pton(socket.AF_INET6, src),
                       socket.inet_pton(socket.AF_INET6, dst)) + body


def ipv6_fragments(src: str, dst: str, sport: int, dport: int, payload: bytes, ident: int, size: int) -> list[bytes]:
    body = udp(sport, dport, payload)
    out = []
    for o in range(0, len(body), size):
        more = o + size < len(body)
        frag_header = struct.pack("!BBHI", 17, 0, o | int(more), ident)
        out.append(ipv6(src, dst, 44, frag_header + body[o:o + size]))
    return out


def ethernet(ip_packet: bytes) -> bytes:
    frame = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip_packet
    return frame + b"\x00" * max(0, 60 - len(frame))  # padded to the Ethernet minimum, as on the wire


def write_pcap(path: Path, packets, linktype: int = 101, start_ts: float = 1_700_000_000.0) -> Path:
    """``packets``: raw packets, or (ts, packet) pairs."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype)]
    for i, p in enumerate(packets):
        ts, pkt = p if isinstance(p, tuple) else (start_ts + i * 0.001, p)
        out.append(struct.pack("<IIII", int(ts), int(round((ts % 1) * 1e6)) % 1_000_000, len(pkt), len(pkt)) + pkt)
    path.write_bytes(b"".join(out))
    return path
