"""Sampled packet headers (sFlow raw packet header records) -> flow columns, vectorised.

Pure: ``parse_headers`` takes the first bytes of many sampled packets where they sit in the
datagrams' buffer and reads Ethernet (802.1Q / QinQ tags, MPLS label stacks), IPv4, IPv6 (with
extension headers), TCP, UDP, SCTP and ICMP fields with array indexing only, a field of every row at
a time. A field cut by a header's captured length reads as zero.
"""
from __future__ import annotations

import numpy as np

# sFlow header_protocol values (SFLOW-STRUCTS5 header_protocol)
HEADER_ETHERNET, HEADER_IPV4, HEADER_IPV6 = 1, 11, 12

WIDTH = 128            # bytes of each sampled header looked at (agents send 64..256, 128 by default)
MAX_VLAN_TAGS = 3
MAX_MPLS_LABELS = 8
MAX_IPV6_EXTENSIONS = 4


class Headers:
    """Sampled headers in place: header i is ``length[i]`` bytes of ``u8`` at ``start[i]``.

    Reads index the buffer directly, a field of every header with one fancy index: no copy of the
    headers. A field not wholly within its header's length (or WIDTH) reads as zero. Offsets
    ``at`` are an int or an array, at most WIDTH + 16 (callers clip offsets they compute past
    that); ``u8`` must hold WIDTH + 32 readable bytes after every start (the caller pads its buffer).
    Every start is even and 16-bit words and addresses sit at even offsets (Ethernet, VLAN and MPLS
    headers, IP headers and their options are whole 16-bit words), so they are read through an
    aligned 16-bit view: a gather from an unaligned byte-strided view costs four times as much.
    """

    __slots__ = ("u8", "start", "length", "least", "_be16", "_le16")

    def __init__(self, u8: np.ndarray, start: np.ndarray, length: np.ndarray):
        self.u8 = u8
        self.start = start
        self.length = np.minimum(length, WIDTH)
        # the shortest header: a read wholly within it needs no per-row check
        self.least = int(self.length.min()) if len(start) else WIDTH
        even = u8[:len(u8) & ~1]
        self._be16 = even.view(">u2")
        self._le16 = even.view("<u2")

    def subset(self, rows: np.ndarray) -> "Headers":
        sub = Headers.__new__(Headers)
        sub.u8, sub.start, sub.length, sub.least = self.u8, self.start[rows], self.length[rows], self.least
        sub._be16, sub._le16 = self._be16, self._le16
        return sub

    def _cut(self, value: np.ndarray, at, size: int) -> np.ndarray:
        """``value`` with zeros where the field of ``size`` bytes at ``at`` was not wholly captured."""
        if not len(value) or (at if isinstance(at, int) else int(at.max())) + size <= self.least:
            return value
        cut = at + size > self.length
        if cut.any():  # a truncated header, rarely
            value[cut] = 0
        return value

    def byte(self, at) -> np.ndarray:
        """uint8 byte at offset ``at`` of each header."""
        return self._cut(self.u8[self.start + at], at, 1)

    def word16(self, at) -> np.ndarray:
        """uint16 big-endian 16-bit word at the even offset ``at``."""
        return self._cut(self._be16[(self.start + at) >> 1].astype(np.uint16), at, 2)

    def ipv4(self, at) -> np.ndarray:
        """The 4 bytes at the even offset ``at`` as they are, in a little-endian uint32 (an IPv4
        address ready to be the last word of an IPv4-mapped one); zero where not wholly captured."""
        half = (self.start + at) >> 1
        value = self._le16[half + 1].astype(np.uint32)
        value <<= 16
        value |= self._le16[half]
        return self._cut(value, at, 4)

    def raw(self, at, dtype: str) -> np.ndarray:
        """The bytes at ``at`` of each header as they are, one ``dtype`` item (``V16``: an IPv6
        address); zero where not wholly captured."""
        size = np.dtype(dtype).itemsize
        view = np.ndarray((len(self.u8) - size + 1,), dtype=dtype, buffer=self.u8, strides=(1,))
        value = view[self.start + at]
        if len(value) and (at if isinstance(at, int) else int(at.max())) + size > self.least:
            cut = at + size > self.length
            if cut.any():
                value.view(np.uint8).reshape(-1, size)[cut] = 0
        return value


def _ipv4_mapped(words: np.ndarray) -> np.ndarray:
    """IPv4 addresses (Headers.ipv4 words) as ::ffff:a.b.c.d V16 values."""
    mapped = np.zeros((len(words), 4), "<u4")  # written as 4-byte words
    mapped[:, 2] = 0xFFFF0000
    mapped[:, 3] = words
    return mapped.view("V16").reshape(-1)


def parse_headers(h: Headers, protocol: np.ndarray) -> dict[str, np.ndarray]:
    """Flow fields of the sampled headers ``h`` whose sFlow header_protocol is ``protocol``.

    Returns columns (n rows): ``has_ip`` (bool: an IPv4 or IPv6 header was found), ``src_addr``,
    ``dst_addr`` (V16), ``protocol``, ``src_port``, ``dst_port``, ``tcp_flags``, ``tos``,
    ``icmp_type``, ``icmp_code``, ``vlan`` (the innermost 802.1Q tag, the customer VLAN of QinQ, as
    Akvorado does). Rows of other header protocols (802.11, PPP, ...) have has_ip False.
    """
    n = len(h.start)
    protocol = np.asarray(protocol, dtype=np.int64)
    eth = protocol == HEADER_ETHERNET
    # ethertype: for Ethernet from the frame; raw IP headers get a pseudo type
    if eth.all():  # the usual agent: every header an Ethernet frame
        ethertype = h.word16(12).astype(np.int64)
        off = np.full(n, 14, np.int64)
    else:
        ethertype = np.where(protocol == HEADER_IPV4, 0x0800, np.where(protocol == HEADER_IPV6, 0x86DD, -1))
        off = np.where(eth, 14, 0)
        if eth.any():
            ethertype = np.where(eth, h.word16(12), ethertype)
    vlan = np.zeros(n, np.uint16)
    for _ in range(MAX_VLAN_TAGS):
        tagged = ((ethertype | 0x1000) == 0x9100) | (ethertype == 0x88A8)  # 0x8100, 0x9100 or 0x88A8
        if not tagged.any():
            break
        r = np.flatnonzero(tagged)
        tag = h.subset(r)
        o = off[r]
        vlan[r] = tag.word16(o) & 0x0FFF
        ethertype[r] = tag.word16(o + 2)
        off[r] = o + 4
    mpls = (ethertype == 0x8847) | (ethertype == 0x8848)
    if mpls.any():
        was_mpls = mpls.copy()
        for _ in range(MAX_MPLS_LABELS):
            bottom = (h.byte(off + 2) & 1) == 1
            off = np.where(mpls, off + 4, off)
            mpls &= ~bottom
            if not mpls.any():
                break
        nibble = h.byte(off) >> 4
        ethertype = np.where(was_mpls & ~mpls, np.where(nibble == 4, 0x0800, np.where(nibble == 6, 0x86DD, -1)),
                             ethertype)
    version = h.byte(off) >> 4
    v4 = (ethertype == 0x0800) & (version == 4)
    v6 = (ethertype == 0x86DD) & (version == 6)

    src = np.zeros(n, "V16")
    dst = np.zeros(n, "V16")
    proto = np.zeros(n, np.uint8)
    tos = np.zeros(n, np.uint8)
    l4 = np.full(n, WIDTH, np.int64)      # where the transport header starts
    first_fragment = np.ones(n, bool)     # a later fragment carries no transport header
    r4 = np.flatnonzero(v4)
    if len(r4) == n:  # every header IPv4: columns made whole, no scatter
        src, dst = _ipv4_mapped(h.ipv4(off + 12)), _ipv4_mapped(h.ipv4(off + 16))
        tos, proto = h.byte(off + 1), h.byte(off + 9)
        l4 = off + (h.byte(off) & 0x0F).astype(np.int64) * 4
        first_fragment = (h.word16(off + 6) & 0x1FFF) == 0
    elif len(r4):
        o = off[r4]
        hr = h.subset(r4)
        src[r4] = _ipv4_mapped(hr.ipv4(o + 12))
        dst[r4] = _ipv4_mapped(hr.ipv4(o + 16))
        tos[r4] = hr.byte(o + 1)
        proto[r4] = hr.byte(o + 9)
        l4[r4] = o + (hr.byte(o) & 0x0F).astype(np.int64) * 4
        first_fragment[r4] = (hr.word16(o + 6) & 0x1FFF) == 0
    if v6.any():
        r = np.flatnonzero(v6)
        o = off[r]
        hr = h.subset(r)
        src[r] = hr.raw(o + 8, "V16")
        dst[r] = hr.raw(o + 24, "V16")
        tos[r] = (hr.word16(o) >> 4) & 0xFF
        nh = hr.byte(o + 6)
        at = o + 40
        for _ in range(MAX_IPV6_EXTENSIONS):
            ext = (nh == 0) | (nh == 43) | (nh == 60) | (nh == 51)  # hop-by-hop, routing, dest. options, AH
            frag = nh == 44
            if not (ext.any() or frag.any()):
                break
            units = hr.byte(at + 1).astype(np.int64)  # header length field: 8-byte units (AH: 4-byte) - 1 (- 2)
            size = np.where(nh == 51, (units + 2) * 4, (units + 1) * 8)
            size = np.where(frag, 8, size)
            later = frag & ((hr.word16(at + 2) & 0xFFF8) != 0)
            first_fragment[r] &= ~later
            nh = np.where(ext | frag, hr.byte(at), nh)
            # past WIDTH every read is zero: clipped, so reads stay within the buffer's padding
            at = np.minimum(np.where(ext | frag, at + size, at), WIDTH)
        proto[r] = nh
        l4[r] = at
    has_ip = v4 | v6
    ports = has_ip & first_fragment & ((proto == 6) | (proto == 17) | (proto == 132)) & (l4 + 4 <= WIDTH)
    icmp = has_ip & first_fragment & (((proto == 1) & v4) | ((proto == 58) & v6)) & (l4 + 2 <= WIDTH)
    tcp = ports & (proto == 6) & (l4 + 14 <= WIDTH)
    zero16, zero8 = np.uint16(0), np.uint8(0)
    return {
        "has_ip": has_ip,
        "src_addr": src,
        "dst_addr": dst,
        "protocol": proto,
        "src_port": np.where(ports, h.word16(l4), zero16),
        "dst_port": np.where(ports, h.word16(l4 + 2), zero16),
        "tcp_flags": np.where(tcp, h.byte(l4 + 13), zero8),
        "tos": tos,
        "icmp_type": np.where(icmp, h.byte(l4), zero8),
        "icmp_code": np.where(icmp, h.byte(l4 + 1), zero8),
        "vlan": vlan,
    }
