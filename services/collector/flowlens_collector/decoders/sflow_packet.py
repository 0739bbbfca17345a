"""Sampled packet headers (sFlow raw packet header records) -> flow columns, vectorised.

Pure: ``parse_headers`` takes the first bytes of many sampled packets as one zero-padded 2-D array
and reads Ethernet (802.1Q / QinQ tags, MPLS label stacks), IPv4, IPv6 (with extension headers),
TCP, UDP, SCTP and ICMP fields with array indexing only, a field of every row at a time. Bytes past
a header's captured length are zero, so a truncated header yields zeros where its fields were cut.
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

    Reads index the buffer directly, a field of every header with one fancy index (16-bit words
    and addresses through byte-strided views, so any offset works): no copy of the headers. A field
    not wholly within its header's length (or WIDTH) reads as zero. ``u8`` must hold WIDTH
    readable bytes after every start (the caller pads its buffer).
    """

    __slots__ = ("u8", "start", "length", "_be16")

    def __init__(self, u8: np.ndarray, start: np.ndarray, length: np.ndarray):
        self.u8 = u8
        self.start = start
        self.length = np.minimum(length, WIDTH)
        self._be16 = np.ndarray((len(u8) - 1,), dtype=">u2", buffer=u8, strides=(1,))

    def subset(self, rows: np.ndarray) -> "Headers":
        sub = Headers.__new__(Headers)
        sub.u8, sub.start, sub.length, sub._be16 = self.u8, self.start[rows], self.length[rows], self._be16
        return sub

    def byte(self, at: np.ndarray) -> np.ndarray:
        """uint8 byte at offset ``at`` of each header."""
        at = np.minimum(at, WIDTH)
        value = self.u8[self.start + at]
        inside = at < self.length
        if not inside.all():  # a truncated header, rarely
            value[~inside] = 0
        return value

    def word16(self, at: np.ndarray) -> np.ndarray:
        """uint16 big-endian 16-bit word at offset ``at``."""
        at = np.minimum(at, WIDTH)
        value = self._be16[self.start + at].astype(np.uint16)
        inside = at + 2 <= self.length
        if not inside.all():
            value[~inside] = 0
        return value

    def raw(self, at: np.ndarray, dtype: str) -> np.ndarray:
        """The bytes at ``at`` of each header as they are, one ``dtype`` item (``<u4``: an IPv4
        address, ``V16``: an IPv6 one); zero where not wholly captured."""
        size = np.dtype(dtype).itemsize
        at = np.minimum(at, WIDTH)
        view = np.ndarray((len(self.u8) - size + 1,), dtype=dtype, buffer=self.u8, strides=(1,))
        value = view[self.start + at]
        cut = at + size > self.length
        if cut.any():
            value.view(np.uint8).reshape(-1, size)[cut] = 0
        return value


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
    ethertype = np.where(protocol == HEADER_IPV4, 0x0800, np.where(protocol == HEADER_IPV6, 0x86DD, -1))
    off = np.where(eth, 14, 0)
    if eth.any():
        ethertype = np.where(eth, h.word16(np.full(n, 12)), ethertype)
    vlan = np.zeros(n, np.int64)
    for _ in range(MAX_VLAN_TAGS):
        tagged = (ethertype == 0x8100) | (ethertype == 0x88A8) | (ethertype == 0x9100)
        if not tagged.any():
            break
        vlan = np.where(tagged, h.word16(off) & 0x0FFF, vlan)
        ethertype = np.where(tagged, h.word16(off + 2), ethertype)
        off = np.where(tagged, off + 4, off)
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
    proto = np.zeros(n, np.int64)
    tos = np.zeros(n, np.int64)
    l4 = np.full(n, WIDTH, np.int64)      # where the transport header starts
    first_fragment = np.ones(n, bool)     # a later fragment carries no transport header
    if v4.any():
        r = np.flatnonzero(v4)
        o = off[r]
        hr = h.subset(r)
        mapped = np.zeros((len(r), 4), "<u4")  # ::ffff:a.b.c.d, written as 4-byte words
        mapped[:, 2] = 0xFFFF0000
        mapped[:, 3] = hr.raw(o + 12, "<u4")
        src[r] = mapped.view("V16").reshape(-1)
        mapped[:, 3] = hr.raw(o + 16, "<u4")
        dst[r] = mapped.view("V16").reshape(-1)
        tos[r] = hr.byte(o + 1)
        proto[r] = hr.byte(o + 9)
        l4[r] = o + (hr.byte(o) & 0x0F) * 4
        first_fragment[r] = (hr.word16(o + 6) & 0x1FFF) == 0
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
            at = np.where(ext | frag, at + size, at)
        proto[r] = nh
        l4[r] = at
    has_ip = v4 | v6
    proto = np.where(has_ip, proto, 0)
    tos = np.where(has_ip, tos, 0)
    ports = has_ip & first_fragment & ((proto == 6) | (proto == 17) | (proto == 132)) & (l4 + 4 <= WIDTH)
    icmp = has_ip & first_fragment & (((proto == 1) & v4) | ((proto == 58) & v6)) & (l4 + 2 <= WIDTH)
    tcp = ports & (proto == 6) & (l4 + 14 <= WIDTH)
    return {
        "has_ip": has_ip,
        "src_addr": src,
        "dst_addr": dst,
        "protocol": proto.astype(np.uint8),
        "src_port": np.where(ports, h.word16(l4), 0).astype(np.uint16),
        "dst_port": np.where(ports, h.word16(l4 + 2), 0).astype(np.uint16),
        "tcp_flags": np.where(tcp, h.byte(l4 + 13), 0).astype(np.uint8),
        "tos": tos.astype(np.uint8),
        "icmp_type": np.where(icmp, h.byte(l4), 0).astype(np.uint8),
        "icmp_code": np.where(icmp, h.byte(l4 + 1), 0).astype(np.uint8),
        "vlan": vlan.astype(np.uint16),
    }
