"""Read UDP datagrams out of pcap and pcapng files (Ethernet, Linux cooked v1/v2, raw IP, loopback).

Used by ``flowlens replay`` and by tests that feed real exporters' packets. Pure: bytes in,
datagrams out; IPv4 fragments and non-UDP packets are skipped and counted.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator


@dataclass(frozen=True)
class Datagram:
    ts: float          # capture time, seconds since epoch
    src: str           # source address as text
    sport: int
    dst: str
    dport: int
    payload: bytes
    frame: int         # 1-based frame number in the file


@dataclass
class ReadStats:
    frames: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


class PcapError(ValueError):
    pass


# link types
_ETHERNET, _RAW, _NULL, _LOOP, _SLL, _SLL2, _RAW4, _RAW6 = 1, 101, 0, 108, 113, 276, 228, 229


def read_datagrams(path: str, stats: ReadStats | None = None) -> Iterator[Datagram]:
    stats = stats if stats is not None else ReadStats()
    with open(path, "rb") as f:
        magic = f.read(4)
        f.seek(0)
        if magic == b"\x0a\x0d\x0d\x0a":
            frames = _pcapng_frames(f)
        elif magic in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
            frames = _pcap_frames(f)
        else:
            raise PcapError(f"{path} is not a pcap or pcapng file (magic {magic.hex()})")
        for n, (ts, linktype, data) in enumerate(frames, 1):
            stats.frames += 1
            d = _udp_of(linktype, data, ts, n, stats)
            if d is not None:
                yield d


def _pcap_frames(f: BinaryIO):
    hdr = f.read(24)
    if len(hdr) < 24:
        raise PcapError("truncated pcap header")
    magic = hdr[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(endian + "I", hdr[20:24])[0] & 0x0FFFFFFF
    rec = struct.Struct(endian + "IIII")
    while True:
        h = f.read(16)
        if len(h) < 16:
            return
        sec, frac, incl, _orig = rec.unpack(h)
        data = f.read(incl)
        if len(data) < incl:
            return
        yield sec + frac / (1e9 if nano else 1e6), linktype, data


def _pcapng_frames(f: BinaryIO):
    endian = "<"
    interfaces: list[tuple[int, float]] = []  # (linktype, ts units per second)
    while True:
        head = f.read(8)
        if len(head) < 8:
            return
        btype = struct.unpack(endian + "I", head[:4])[0]
        if btype == 0x0A0D0D0A:
            bom = f.read(4)
            endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            blen = struct.unpack(endian + "I", head[4:8])[0]
            f.read(blen - 12)
            interfaces = []
            continue
        blen = struct.unpack(endian + "I", head[4:8])[0]
        if blen < 12:
            raise PcapError("pcapng block shorter than 12 bytes")
        body = f.read(blen - 8)
        if len(body) < blen - 8:
            return
        if btype == 1:  # interface description
            linktype = struct.unpack(endian + "H", body[:2])[0]
            resol = 1e6
            opts = body[8:-4]
            i = 0
            while i + 4 <= len(opts):
                code, olen = struct.unpack(endian + "HH", opts[i:i + 4])
                if code == 0:
                    break
                if code == 9 and olen >= 1:
                    v = opts[i + 4]
                    resol = float(2 ** (v & 0x7F)) if v & 0x80 else float(10 ** v)
                i += 4 + ((olen + 3) & ~3)
            interfaces.append((linktype, resol))
        elif btype == 6:  # enhanced packet
            iface, hi, lo, cap, _orig = struct.unpack(endian + "IIIII", body[:20])
            linktype, resol = interfaces[iface] if iface < len(interfaces) else (_ETHERNET, 1e6)
            yield ((hi << 32) | lo) / resol, linktype, body[20:20 + cap]
        elif btype == 3:  # simple packet
            linktype, _r = interfaces[0] if interfaces else (_ETHERNET, 1e6)
            yield 0.0, linktype, body[4:-4]


def _udp_of(linktype: int, data: bytes, ts: float, frame: int, stats: ReadStats) -> Datagram | None:
    off = 0
    ethertype = None
    if linktype == _ETHERNET:
        off = 14
        ethertype = struct.unpack("!H", data[12:14])[0] if len(data) >= 14 else None
        while ethertype in (0x8100, 0x88A8) and len(data) >= off + 4:
            ethertype = struct.unpack("!H", data[off + 2:off + 4])[0]
            off += 4
    elif linktype == _SLL:
        off, ethertype = 16, (struct.unpack("!H", data[14:16])[0] if len(data) >= 16 else None)
    elif linktype == _SLL2:
        off, ethertype = 20, (struct.unpack("!H", data[0:2])[0] if len(data) >= 20 else None)
    elif linktype in (_NULL, _LOOP):
        off = 4
    elif linktype in (_RAW, _RAW4, _RAW6):
        off = 0
    else:
        stats.skip(f"linktype {linktype}")
        return None
    if len(data) <= off:
        stats.skip("truncated")
        return None
    version = data[off] >> 4
    if ethertype is not None and ethertype not in (0x0800, 0x86DD):
        stats.skip("not ip")
        return None
    if version == 4:
        ihl = (data[off] & 0x0F) * 4
        if len(data) < off + ihl + 8:
            stats.skip("truncated")
            return None
        if data[off + 9] != 17:
            stats.skip("not udp")
            return None
        flags_frag = struct.unpack("!H", data[off + 6:off + 8])[0]
        if flags_frag & 0x3FFF:
            stats.skip("ip fragment")
            return None
        src = str(ipaddress.IPv4Address(data[off + 12:off + 16]))
        dst = str(ipaddress.IPv4Address(data[off + 16:off + 20]))
        udp = off + ihl
    elif version == 6:
        if len(data) < off + 48:
            stats.skip("truncated")
            return None
        nxt = data[off + 6]
        udp = off + 40
        # Skip the common extension headers (hop-by-hop, routing, destination options).
        while nxt in (0, 43, 60) and len(data) >= udp + 8:
            nxt, udp = data[udp], udp + (data[udp + 1] + 1) * 8
        if nxt != 17:
            stats.skip("not udp")
            return None
        src = str(ipaddress.IPv6Address(data[off + 8:off + 24]))
        dst = str(ipaddress.IPv6Address(data[off + 24:off + 40]))
    else:
        stats.skip("not ip")
        return None
    if len(data) < udp + 8:
        stats.skip("truncated")
        return None
    sport, dport, ulen = struct.unpack("!HHH", data[udp:udp + 6])
    end = udp + ulen if ulen >= 8 else len(data)
    payload = data[udp + 8:min(end, len(data))]
    if end > len(data):
        stats.skip("truncated udp payload")
        return None
    return Datagram(ts, src, sport, dst, dport, payload, frame)
