"""Countries in the flow schema (src_country, dst_country) and the labels of special address ranges.

A country is its ISO 3166-1 alpha-2 code packed in a uint16, first letter in the high byte
(``"US"`` is 0x5553), so codes sort as their letters and 0 means unknown. Addresses that belong to
no country (private, shared CGNAT, loopback, link-local, documentation, multicast, reserved) carry
a label instead, coded in ISO 3166's user-assigned ``X?`` range, which no country uses (XK, used
for Kosovo by MaxMind, is left alone). ``address_labels`` is the one function that decides them.
"""
from __future__ import annotations

import ipaddress

import numpy as np

# label code -> what pages and CLI lines show instead of a country
LABELS: dict[str, str] = {
    "XP": "private",         # RFC 1918, RFC 4193 unique local
    "XC": "shared (CGNAT)",  # RFC 6598
    "XL": "loopback",        # 127.0.0.0/8, ::1
    "XN": "link-local",      # RFC 3927, fe80::/10
    "XD": "documentation",   # RFC 5737, RFC 3849, RFC 9637
    "XM": "multicast",       # 224.0.0.0/4, ff00::/8
    "XR": "reserved",        # 0.0.0.0/8, 240.0.0.0/4 (and the broadcast address), benchmarking
}

# (network, label code); the networks do not overlap
LABEL_NETWORKS: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "XR"), ("10.0.0.0/8", "XP"), ("100.64.0.0/10", "XC"), ("127.0.0.0/8", "XL"),
    ("169.254.0.0/16", "XN"), ("172.16.0.0/12", "XP"), ("192.0.2.0/24", "XD"), ("192.168.0.0/16", "XP"),
    ("198.18.0.0/15", "XR"), ("198.51.100.0/24", "XD"), ("203.0.113.0/24", "XD"), ("224.0.0.0/4", "XM"),
    ("240.0.0.0/4", "XR"),
    ("::1/128", "XL"), ("2001:db8::/32", "XD"), ("3fff::/20", "XD"), ("fc00::/7", "XP"), ("fe80::/10", "XN"),
    ("ff00::/8", "XM"),
)

COUNTRY_DTYPE = np.dtype("<u2")
COUNTRY_COLUMNS = ("src_country", "dst_country")


class CountryError(ValueError):
    """Text that is neither a two-letter country code nor a label; the message says which."""


def pack_country(code: str) -> int:
    """'US' -> 0x5553; '' -> 0. Raises CountryError for anything but two ASCII letters."""
    if not code:
        return 0
    if len(code) != 2 or not code.isascii() or not code.isalpha():
        raise CountryError(f"{code!r} is not a two-letter country code")
    code = code.upper()
    return (ord(code[0]) << 8) | ord(code[1])


def country_code(value: int) -> str:
    """0x5553 -> 'US'; 0 -> ''."""
    value = int(value)
    return "" if not value else chr(value >> 8) + chr(value & 0xFF)


def country_text(value: int) -> str:
    """What a page shows: the code ('US'), a label's words ('private'), or '' when unknown."""
    code = country_code(value)
    return LABELS.get(code, code)


def parse_country(text: str) -> int:
    """A filter's value: a two-letter code (any case), a label's words ('private') or 'unknown'
    (0) -> packed code."""
    t = str(text).strip()
    if t.lower() == "unknown":
        return 0  # flows no database named a country for
    for code, words in LABELS.items():
        if t.lower() == words.lower() or t.upper() == code:
            return pack_country(code)
    try:
        value = pack_country(t)
    except CountryError:
        raise CountryError(f"{text!r} is not a two-letter country code or one of: "
                           f"{', '.join(LABELS.values())}, unknown") from None
    if not value:
        raise CountryError("a country filter needs a two-letter code")
    return value


def _label_table():
    """Sorted, non-overlapping label ranges: (v4 starts, v4 ends, v4 codes, v6 /64 starts, ends, codes)."""
    v4, v6 = [], []
    for text, code in LABEL_NETWORKS:
        net = ipaddress.ip_network(text)
        lo, hi = int(net.network_address), int(net.broadcast_address)
        if net.version == 4:
            v4.append((lo, hi, pack_country(code)))
        elif net.prefixlen <= 64:
            v6.append((lo >> 64, hi >> 64, pack_country(code)))
    v4.sort()
    v6.sort()
    return (np.array([r[0] for r in v4], np.uint32), np.array([r[1] for r in v4], np.uint32),
            np.array([r[2] for r in v4], COUNTRY_DTYPE), np.array([r[0] for r in v6], np.uint64),
            np.array([r[1] for r in v6], np.uint64), np.array([r[2] for r in v6], COUNTRY_DTYPE))


_V4_STARTS, _V4_ENDS, _V4_CODES, _V6_STARTS, _V6_ENDS, _V6_CODES = _label_table()
_LOOPBACK_V6 = pack_country("XL")


def _in_ranges(keys: np.ndarray, starts: np.ndarray, ends: np.ndarray, codes: np.ndarray) -> np.ndarray:
    i = np.searchsorted(starts, keys, side="right") - 1
    ok = i >= 0
    i[~ok] = 0
    return np.where(ok & (keys <= ends[i]), codes[i], 0).astype(COUNTRY_DTYPE)


def address_labels(column: np.ndarray) -> np.ndarray:
    """The label code of each address of an address column (ADDR, IPv4-mapped or IPv6), 0 where
    the address lies in no labelled range (so a database may name its country)."""
    words = np.ascontiguousarray(column).view(">u8").reshape(-1, 2)
    hi, lo = words[:, 0], words[:, 1]
    v4 = (hi == 0) & ((lo >> np.uint64(32)) == 0xFFFF)
    out = np.zeros(len(column), COUNTRY_DTYPE)
    if v4.any():
        out[v4] = _in_ranges((lo[v4] & np.uint64(0xFFFFFFFF)).astype(np.uint32), _V4_STARTS, _V4_ENDS, _V4_CODES)
    v6 = ~v4
    if v6.any():
        out[v6] = _in_ranges(hi[v6], _V6_STARTS, _V6_ENDS, _V6_CODES)
        out[v6 & (hi == 0) & (lo == 1)] = _LOOPBACK_V6
    return out


def countries_text(column: np.ndarray) -> list[str]:
    """A country column as page text (edge use only)."""
    return [country_text(v) for v in column.tolist()]
