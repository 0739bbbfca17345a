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
COLUMNS = WIDTH + 8    # plus zero columns, where reads past WIDTH land
MAX_VLAN_TAGS = 3
MAX_MPLS_LABELS = 8
MAX_IPV6_EXTENSIONS = 4
_VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
_IPV6_EXTENSIONS = (0, 43, 60, 51)  # hop-by-hop, routing, destination options, AH (44 fragment apart)
_PORT_PROTOCOLS = (6, 17, 132)      # TCP, UDP, SCTP: ports in the first 4 bytes


def gather(u8: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(n, COLUMNS) uint8: the ``lengths[i]`` (at most WIDTH) bytes of ``u8`` at ``starts[i]``, zero after.

    ``u8`` must hold COLUMNS readable bytes after every start (the caller pads its buffer).
    """
    n = len(starts)
    if not n:
        return np.zeros((0, COLUMNS), np.uint8)
    win = np.ndarray((len(u8) - COLUMNS + 1, COLUMNS), dtype=np.uint8, buffer=u8, strides=(1, 1))
    out = win[starts]
    if (lengths < COLUMNS).any():  # zero what follows each header (a multiply is cheaper than a masked store)
        out *= np.arange(COLUMNS, dtype=np.int32) < np.minimum(lengths, WIDTH)[:, None]
    else:
        out[:, WIDTH:] = 0
    return out


def _u8(b: np.ndarray, rows: np.ndarray, at: np.ndarray) -> np.ndarray:
    return b[rows, np.minimum(at, COLUMNS - 1)].astype(np.int64)


def _u16(b: np.ndarray, rows: np.ndarray, at: np.ndarray) -> np.ndarray:
    return (_u8(b, rows, at) << 8) | _u8(b, rows, at + 1)


def parse_headers(b: np.ndarray, protocol: np.ndarray) -> dict[str, np.ndarray]:
    """Flow fields of the sampled headers ``b`` (n, COLUMNS, from ``gather``) whose sFlow header_protocol is ``protocol``.

    Returns columns (n rows): ``has_ip`` (bool: an IPv4 or IPv6 header was found), ``src_addr``,
    ``dst_addr`` (V16), ``protocol``, ``src_port``, ``dst_port``, ``tcp_flags``, ``tos``,
    ``icmp_type``, ``icmp_code``, ``vlan`` (the innermost 802.1Q tag, the customer VLAN of QinQ, as
    Akvorado does). Rows of other header protocols (802.11, PPP, ...) have has_ip False.
    """
    n = len(b)
    rows = np.arange(n)
    protocol = np.asarray(protocol, dtype=np.int64)
    eth = protocol == HEADER_ETHERNET
    # ethertype: for Ethernet from the frame; raw IP headers get a pseudo type
    ethertype = np.where(protocol == HEADER_IPV4, 0x0800, np.where(protocol == HEADER_IPV6, 0x86DD, -1))
    off = np.where(eth, 14, 0)
    if eth.any():
        ethertype = np.where(eth, _u16(b, rows, np.full(n, 12)), ethertype)
    vlan = np.zeros(n, np.int64)
    for _ in range(MAX_VLAN_TAGS):
        tagged = np.isin(ethertype, _VLAN_TPIDS)
        if not tagged.any():
            break
        vlan = np.where(tagged, _u16(b, rows, off) & 0x0FFF, vlan)
        ethertype = np.where(tagged, _u16(b, rows, off + 2), ethertype)
        off = np.where(tagged, off + 4, off)
    mpls = (ethertype == 0x8847) | (ethertype == 0x8848)
    if mpls.any():
        for _ in range(MAX_MPLS_LABELS):
            bottom = (_u8(b, rows, off + 2) & 1) == 1
            off = np.where(mpls, off + 4, off)
            mpls &= ~bottom
            if not mpls.any():
                break
        was_mpls = (ethertype == 0x8847) | (ethertype == 0x8848)
        nibble = _u8(b, rows, off) >> 4
        ethertype = np.where(was_mpls & ~mpls, np.where(nibble == 4, 0x0800, np.where(nibble == 6, 0x86DD, -1)),
                             ethertype)
    v4 = (ethertype == 0x0800) & ((_u8(b, rows, off) >> 4) == 4)
    v6 = (ethertype == 0x86DD) & ((_u8(b, rows, off) >> 4) == 6)

    src = np.zeros((n, 16), np.uint8)
    dst = np.zeros((n, 16), np.uint8)
    proto = np.zeros(n, np.int64)
    tos = np.zeros(n, np.int64)
    l4 = np.full(n, WIDTH, np.int64)      # where the transport header starts
    first_fragment = np.ones(n, bool)     # a later fragment carries no transport header
    if v4.any():
        r = np.flatnonzero(v4)
        o = off[r]
        idx = np.minimum(o[:, None] + np.arange(12, 20), COLUMNS - 1)
        addrs = b[r[:, None], idx]
        src[r, 10:12] = 0xFF
        dst[r, 10:12] = 0xFF
        src[r, 12:16] = addrs[:, :4]
        dst[r, 12:16] = addrs[:, 4:]
        tos[r] = _u8(b, r, o + 1)
        proto[r] = _u8(b, r, o + 9)
        l4[r] = o + (_u8(b, r, o) & 0x0F) * 4
        first_fragment[r] = (_u16(b, r, o + 6) & 0x1FFF) == 0
    if v6.any():
        r = np.flatnonzero(v6)
        o = off[r]
        idx = np.minimum(o[:, None] + np.arange(8, 40), COLUMNS - 1)
        addrs = b[r[:, None], idx]
        src[r] = addrs[:, :16]
        dst[r] = addrs[:, 16:]
        tos[r] = (_u16(b, r, o) >> 4) & 0xFF
        nh = _u8(b, r, o + 6)
        at = o + 40
        for _ in range(MAX_IPV6_EXTENSIONS):
            ext = np.isin(nh, _IPV6_EXTENSIONS)
            frag = nh == 44
            if not (ext.any() or frag.any()):
                break
            size = np.where(nh == 51, (_u8(b, r, at + 1) + 2) * 4, (_u8(b, r, at + 1) + 1) * 8)
            size = np.where(frag, 8, size)
            later = frag & ((_u16(b, r, at + 2) & 0xFFF8) != 0)
            first_fragment[r] &= ~later
            nh = np.where(ext | frag, _u8(b, r, at), nh)
            at = np.where(ext | frag, at + size, at)
        proto[r] = nh
        l4[r] = at
    has_ip = v4 | v6
    proto = np.where(has_ip, proto, 0)
    tos = np.where(has_ip, tos, 0)
    ports = has_ip & first_fragment & np.isin(proto, _PORT_PROTOCOLS) & (l4 + 4 <= WIDTH)
    icmp = has_ip & first_fragment & (((proto == 1) & v4) | ((proto == 58) & v6)) & (l4 + 2 <= WIDTH)
    tcp = ports & (proto == 6) & (l4 + 14 <= WIDTH)
    return {
        "has_ip": has_ip,
        "src_addr": src.view("V16").reshape(n),
        "dst_addr": dst.view("V16").reshape(n),
        "protocol": proto.astype(np.uint8),
        "src_port": np.where(ports, _u16(b, rows, l4), 0).astype(np.uint16),
        "dst_port": np.where(ports, _u16(b, rows, l4 + 2), 0).astype(np.uint16),
        "tcp_flags": np.where(tcp, _u8(b, rows, l4 + 13), 0).astype(np.uint8),
        "tos": tos.astype(np.uint8),
        "icmp_type": np.where(icmp, _u8(b, rows, l4), 0).astype(np.uint8),
        "icmp_code": np.where(icmp, _u8(b, rows, l4 + 1), 0).astype(np.uint8),
        "vlan": vlan.astype(np.uint16),
    }
