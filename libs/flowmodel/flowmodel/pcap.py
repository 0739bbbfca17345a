"""Read UDP datagrams out of pcap and pcapng files (Ethernet, Linux cooked v1/v2, raw IP, loopback).

Used by ``flowlens replay`` and by tests that feed real exporters' packets. Pure: bytes in,
datagrams out. IPv4 fragments and IPv6 fragment headers are reassembled (v9/IPFIX exports larger
than the MTU arrive in pieces), within bounds: fragmented datagrams in flight, bytes held, and an age
in capture time; what cannot be completed is counted. Non-UDP packets are skipped and counted.
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
    reassembled: int = 0   # datagrams put back together from IP fragments

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


class PcapError(ValueError):
    pass


# link types
_ETHERNET, _RAW, _NULL, _LOOP, _SLL, _SLL2, _RAW4, _RAW6 = 1, 101, 0, 108, 113, 276, 228, 229


def read_datagrams(path: str, stats: ReadStats | None = None,
                   reassembly: "Reassembler | None" = None) -> Iterator[Datagram]:
    """Every UDP datagram of a pcap/pcapng file, fragmented ones once complete (at the time of
    their last fragment); frames skipped, and fragments never completed, are counted in ``stats``."""
    stats = stats if stats is not None else ReadStats()
    reassembly = reassembly if reassembly is not None else Reassembler(stats)
    reassembly.stats = stats
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
            d = _udp_of(linktype, data, ts, n, stats, reassembly)
            if d is not None:
                yield d
        reassembly.finish()


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


# ---------------------------------------------------------------- IP fragment reassembly

MAX_FRAGMENTED_IN_FLIGHT = 256        # datagrams being reassembled at once; the oldest gives way
MAX_FRAGMENT_BYTES = 16 << 20         # bytes of fragments held at once
MAX_FRAGMENT_AGE_S = 30.0             # capture seconds a datagram may take to complete (Linux ipfrag_time)
MAX_IP_DATAGRAM = 65535               # an IPv4 datagram, or an IPv6 payload without a jumbogram option


@dataclass
class _Partial:
    first_ts: float
    pieces: list = field(default_factory=list)   # (offset, bytes)
    total: int | None = None                      # known once the last fragment (no more-fragments flag) came
    held: int = 0


class Reassembler:
    """Puts fragmented IP datagrams back together, bounded in datagrams, bytes and age.

    ``add`` takes one fragment's payload (the bytes after the IP header, or after the IPv6 fragment
    header) and returns the whole payload once every byte from 0 to the last fragment's end is
    there, else None. Dropped and never completed datagrams are counted in ``stats.skipped``.
    """

    def __init__(self, stats: ReadStats | None = None, max_datagrams: int = MAX_FRAGMENTED_IN_FLIGHT,
                 max_bytes: int = MAX_FRAGMENT_BYTES, max_age_s: float = MAX_FRAGMENT_AGE_S):
        self.stats = stats if stats is not None else ReadStats()
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.pending: dict[tuple, _Partial] = {}   # insertion order is arrival order: the oldest first
        self.bytes_held = 0

    def _drop(self, key: tuple, reason: str) -> None:
        part = self.pending.pop(key)
        self.bytes_held -= part.held
        self.stats.skip(reason)

    def add(self, key: tuple, ts: float, offset: int, more: bool, piece: bytes) -> bytes | None:
        end = offset + len(piece)
        if end > MAX_IP_DATAGRAM or (more and len(piece) % 8) or (more and not piece):
            self.stats.skip("bad fragment")
            return None
        while self.pending:
            oldest = next(iter(self.pending))
            if self.pending[oldest].first_ts >= ts - self.max_age_s:
                break
            self._drop(oldest, "fragments timed out")
        part = self.pending.get(key)
        if part is None:
            if len(self.pending) >= self.max_datagrams:
                self._drop(next(iter(self.pending)), "fragments over reassembly limit")
            part = self.pending[key] = _Partial(ts)
        while self.bytes_held + len(piece) > self.max_bytes and self.pending:
            oldest = next(iter(self.pending))
            self._drop(oldest, "fragments over reassembly limit")
            if oldest == key:
                return None
        if not more:
            if part.total is not None and part.total != end:
                self._drop(key, "bad fragment")
                return None
            part.total = end
        if part.total is not None and end > part.total:
            self._drop(key, "bad fragment")
            return None
        part.pieces.append((offset, piece))
        part.held += len(piece)
        self.bytes_held += len(piece)
        if part.total is None:
            return None
        part.pieces.sort(key=lambda p: p[0])
        covered = 0
        for off, data in part.pieces:
            if off > covered:
                return None  # a hole
            covered = max(covered, off + len(data))
        if covered < part.total:
            return None
        if covered > part.total:  # an earlier piece ran past the end the last fragment gives
            self._drop(key, "bad fragment")
            return None
        whole = bytearray(part.total)
        for off, data in part.pieces:
            whole[off:off + len(data)] = data
        del self.pending[key]
        self.bytes_held -= part.held
        self.stats.reassembled += 1
        return bytes(whole)

    def finish(self) -> None:
        """End of the capture: what is still waiting for fragments is counted as incomplete."""
        for key in list(self.pending):
            self._drop(key, "fragments incomplete")


# ---------------------------------------------------------------- frames -> datagrams

_IPV6_SKIPPABLE = (0, 43, 60)   # hop-by-hop, routing, destination options


def _link_offset(linktype: int, data: bytes) -> tuple[int, int | None] | None:
    """(offset of the IP header, ethertype or None) for a frame of ``linktype``; None if unknown."""
    if linktype == _ETHERNET:
        off = 14
        ethertype = struct.unpack("!H", data[12:14])[0] if len(data) >= 14 else None
        while ethertype in (0x8100, 0x88A8) and len(data) >= off + 4:
            ethertype = struct.unpack("!H", data[off + 2:off + 4])[0]
            off += 4
        return off, ethertype
    if linktype == _SLL:
        return 16, (struct.unpack("!H", data[14:16])[0] if len(data) >= 16 else None)
    if linktype == _SLL2:
        return 20, (struct.unpack("!H", data[0:2])[0] if len(data) >= 20 else None)
    if linktype in (_NULL, _LOOP):
        return 4, None
    if linktype in (_RAW, _RAW4, _RAW6):
        return 0, None
    return None


def _udp_of(linktype: int, data: bytes, ts: float, frame: int, stats: ReadStats,
            reassembly: Reassembler) -> Datagram | None:
    link = _link_offset(linktype, data)
    if link is None:
        stats.skip(f"linktype {linktype}")
        return None
    off, ethertype = link
    if len(data) <= off:
        stats.skip("truncated")
        return None
    if ethertype is not None and ethertype not in (0x0800, 0x86DD):
        stats.skip("not ip")
        return None
    version = data[off] >> 4
    if version == 4:
        ihl = (data[off] & 0x0F) * 4
        if ihl < 20 or len(data) < off + ihl:
            stats.skip("truncated")
            return None
        total = struct.unpack("!H", data[off + 2:off + 4])[0]
        end = off + total if total >= ihl else len(data)   # trims Ethernet padding
        if data[off + 9] != 17:
            stats.skip("not udp")
            return None
        if end > len(data):
            stats.skip("truncated")
            return None
        src = str(ipaddress.IPv4Address(data[off + 12:off + 16]))
        dst = str(ipaddress.IPv4Address(data[off + 16:off + 20]))
        flags_frag = struct.unpack("!H", data[off + 6:off + 8])[0]
        more, frag_off = bool(flags_frag & 0x2000), (flags_frag & 0x1FFF) * 8
        l4 = data[off + ihl:end]
        if more or frag_off:
            ident = struct.unpack("!H", data[off + 4:off + 6])[0]
            l4 = reassembly.add((4, src, dst, ident, 17), ts, frag_off, more, l4)
            if l4 is None:
                return None
    elif version == 6:
        if len(data) < off + 40:
            stats.skip("truncated")
            return None
        plen = struct.unpack("!H", data[off + 4:off + 6])[0]
        end = off + 40 + plen if plen else len(data)
        cut, end = end > len(data), min(end, len(data))
        src = str(ipaddress.IPv6Address(data[off + 8:off + 24]))
        dst = str(ipaddress.IPv6Address(data[off + 24:off + 40]))
        nxt, p = _skip_ipv6_options(data[off + 6], data, off + 40, end)
        if nxt == 44 and p + 8 <= end:  # fragment header
            nxt = data[p]
            offset_flags = struct.unpack("!H", data[p + 2:p + 4])[0]
            ident = struct.unpack("!I", data[p + 4:p + 8])[0]
            more, frag_off = bool(offset_flags & 1), offset_flags & 0xFFF8
            l4 = data[p + 8:end]
            if cut and nxt == 17:
                stats.skip("truncated")
                return None
            if more or frag_off:  # not an atomic fragment (RFC 6946): put the pieces together
                l4 = reassembly.add((6, src, dst, ident, nxt), ts, frag_off, more, l4)
                if l4 is None:
                    return None
            nxt, p = _skip_ipv6_options(nxt, l4, 0, len(l4))
            l4 = l4[p:]
        else:
            l4 = data[p:end]
        if nxt != 17:
            stats.skip("not udp")
            return None
        if cut:
            stats.skip("truncated")
            return None
    else:
        stats.skip("not ip")
        return None
    if len(l4) < 8:
        stats.skip("truncated")
        return None
    sport, dport, ulen = struct.unpack("!HHH", l4[:6])
    if ulen > len(l4):
        stats.skip("truncated udp payload")
        return None
    payload = l4[8:ulen] if ulen >= 8 else l4[8:]
    return Datagram(ts, src, sport, dst, dport, bytes(payload), frame)


def _skip_ipv6_options(nxt: int, buf: bytes, p: int, end: int) -> tuple[int, int]:
    """Past the hop-by-hop, routing and destination options headers: (next header, its offset)."""
    while nxt in _IPV6_SKIPPABLE and p + 8 <= end:
        nxt, p = buf[p], p + (buf[p + 1] + 1) * 8
    return nxt, p
