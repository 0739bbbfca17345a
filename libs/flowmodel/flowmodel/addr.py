"""Address helpers for the 16-byte address columns: text <-> bytes, CIDR ranges, prefix masks.

IPv4 is stored IPv4-mapped (::ffff:a.b.c.d) so one column holds both families and a CIDR filter
is a contiguous byte range (lo..hi), which SQLite can serve from an index on a BLOB column.
"""
from __future__ import annotations

import ipaddress

import numpy as np

from .schema import ADDR

V4_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"


class AddressError(ValueError):
    """Text that is not an IP address or network; the message says what was wrong."""


def to_bytes(text: str | bytes | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    """One address as its 16-byte column value."""
    if isinstance(text, bytes):
        if len(text) == 16:
            return text
        if len(text) == 4:
            return V4_MAPPED_PREFIX + text
        raise AddressError(f"address must be 4 or 16 bytes, got {len(text)}")
    ip = text if not isinstance(text, str) else _parse_ip(text)
    if ip.version == 4:
        return V4_MAPPED_PREFIX + ip.packed
    return ip.packed


def _parse_ip(text: str):
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise AddressError(f"{text!r} is not an IPv4 or IPv6 address") from None


def to_text(value: bytes) -> str:
    """One 16-byte column value as text; IPv4-mapped addresses print as dotted quads."""
    value = bytes(value)
    if value[:12] == V4_MAPPED_PREFIX:
        return str(ipaddress.IPv4Address(value[12:]))
    return str(ipaddress.IPv6Address(value))


def column_to_text(column: np.ndarray) -> list[str]:
    """A column of addresses as text (edge use only: pages, CLI lines)."""
    return [to_text(v) for v in column.tolist()]


def from_texts(texts) -> np.ndarray:
    """A list of address strings as an ADDR column."""
    return np.frombuffer(b"".join(to_bytes(t) for t in texts), dtype=ADDR).copy()


def ipv4_column(u32: np.ndarray) -> np.ndarray:
    """Big-endian-valued uint32 IPv4 addresses (host integers) as an IPv4-mapped ADDR column."""
    n = len(u32)
    out = np.zeros((n, 16), dtype=np.uint8)
    out[:, 10] = 0xFF
    out[:, 11] = 0xFF
    out[:, 12:16] = u32.astype(">u4").view(np.uint8).reshape(n, 4)
    return out.view(ADDR).reshape(n)


def ipv4_column_from_raw(raw4: np.ndarray) -> np.ndarray:
    """Network-order IPv4 addresses as an ADDR column: an (n, 4) uint8 array, or n little-endian
    u4 values holding the address bytes as they are (e.g. a '<u4' field of a packet's record dtype,
    or np.frombuffer(b, '<u4')). Written as 4-byte words, the decoders' and the bus's hot path."""
    if raw4.ndim == 2:
        raw4 = np.ascontiguousarray(raw4, dtype=np.uint8).view("<u4").reshape(-1)
    elif raw4.dtype != np.dtype("<u4"):
        raise TypeError(f"IPv4 addresses as (n, 4) uint8 or '<u4' bytes, not {raw4.dtype}")
    n = len(raw4)
    out = np.zeros((n, 4), dtype="<u4")
    out[:, 2] = 0xFFFF0000  # bytes 10 and 11 = 0xff
    out[:, 3] = raw4
    return out.view(ADDR).reshape(n)


def is_ipv4(column: np.ndarray) -> np.ndarray:
    """Boolean mask of the IPv4-mapped rows of an ADDR column."""
    b = column.view(np.uint8).reshape(len(column), 16)
    return (b[:, :10] == 0).all(axis=1) & (b[:, 10] == 0xFF) & (b[:, 11] == 0xFF)


def parse_network(text: str) -> tuple[bytes, bytes, int]:
    """An address or CIDR as (lowest, highest) 16-byte bounds and the prefix length in its family.

    ``10.0.0.0/8`` -> (::ffff:10.0.0.0, ::ffff:10.255.255.255, 8). A bare address is a /32 or /128.
    Host bits set (10.0.0.1/8) are an error, as a typo there usually means the wrong network.
    """
    text = str(text).strip()
    if not text:
        raise AddressError("empty address")
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as e:
        if "has host bits set" in str(e):
            raise AddressError(f"{text!r} has host bits set; did you mean {ipaddress.ip_network(text, strict=False)}?") from None
        raise AddressError(f"{text!r} is not an IPv4/IPv6 address or CIDR network") from None
    lo = to_bytes(net.network_address)
    hi = to_bytes(net.broadcast_address)
    return lo, hi, net.prefixlen


def mask_column(column: np.ndarray, prefix_v4: int, prefix_v6: int) -> np.ndarray:
    """Each address with its host bits cleared: IPv4 to prefix_v4, IPv6 to prefix_v6 (vectorised)."""
    n = len(column)
    b = column.view(np.uint8).reshape(n, 16).copy()
    v4 = is_ipv4(column)
    bits = np.where(v4, 96 + prefix_v4, prefix_v6)
    # Per-byte mask: bytes fully inside the prefix keep 0xFF, the boundary byte partial, the rest 0.
    byte_index = np.arange(16)[None, :] * 8
    keep = np.clip(bits[:, None] - byte_index, 0, 8)
    masks = (0xFF00 >> keep).astype(np.uint8)
    b &= masks
    return b.view(ADDR).reshape(n)


def prefix_text(value: bytes, prefix_v4: int, prefix_v6: int) -> str:
    """A masked address as 'a.b.c.0/24' or 'x::/64'."""
    value = bytes(value)
    if value[:12] == V4_MAPPED_PREFIX:
        return f"{ipaddress.IPv4Address(value[12:])}/{prefix_v4}"
    return f"{ipaddress.IPv6Address(value)}/{prefix_v6}"
