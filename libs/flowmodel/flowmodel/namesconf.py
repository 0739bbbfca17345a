"""The ``exporters:`` config list: an exporter address mapped to a name, a site and optional static
interface names and speeds (the "config" source of interface names, flowmodel.events
INTERFACE_SOURCES). Parsed once at load so a bad entry stops the service with a message naming it,
e.g. ``exporters[2].interfaces.7.speed: '1Q' is not a speed``.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from .events import INTERFACE_NAME_MAX, INTERFACES_PER_EVENT

EXPORTERS_MAX = 10_000  # entries the list may hold: the store keeps them all in memory
_KEYS = ("address", "name", "site", "interfaces")
_INTERFACE_KEYS = ("name", "description", "speed")
_SPEED_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:bps|b/s|bit/s)?\s*$", re.I)
_SPEED_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def exporter_text(value: Any) -> str:
    """An exporter address as the flows' exporter column shows it: IPv4 dotted (also for an
    IPv4-mapped IPv6 address), IPv6 compressed. ValueError when it is not an address."""
    ip = ipaddress.ip_address(str(value).strip())
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


SPEED_MAX_BPS = 4_294_967_295 * 10**6  # the largest ifHighSpeed (Mbit/s): SNMP says no more, SQLite holds it


def parse_speed(value: Any) -> int:
    """'1G', '10g', '100M', '2.5G', '400Gbps' or a number of bits/s -> bits/s, at most SPEED_MAX_BPS."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a speed like 1G, 100M or 10000000")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value!r} is not a speed: it is negative")
        speed = value
    else:
        m = _SPEED_RE.match(str(value))
        if not m:
            raise ValueError(f"{str(value)[:40]!r} is not a speed like 1G, 100M or 10000000")
        bps = float(m.group(1)) * _SPEED_UNITS[m.group(2).lower()]  # inf for 400 digits: refused below
        speed = int(bps) if bps <= SPEED_MAX_BPS else SPEED_MAX_BPS + 1
    if speed > SPEED_MAX_BPS:  # 10**400 loaded, then the store's INTEGER column overflowed at start
        raise ValueError(f"{str(value)[:40]!r} is faster than any interface (at most {SPEED_MAX_BPS // 10**12} Tbit/s)")
    return speed


def _text(value: Any, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{where}: expected text, got {value!r}")
    text = str(value).strip()
    if len(text) > INTERFACE_NAME_MAX:
        raise ValueError(f"{where}: longer than {INTERFACE_NAME_MAX} characters")
    return text


def _interfaces(value: Any, where: str) -> dict[int, dict]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a map of ifIndex to {{name, description, speed}}, got {value!r}")
    if len(value) > INTERFACES_PER_EVENT:
        raise ValueError(f"{where}: {len(value)} interfaces, at most {INTERFACES_PER_EVENT}")
    out: dict[int, dict] = {}
    for key, body in value.items():
        try:
            ifindex = int(str(key))
        except ValueError:
            raise ValueError(f"{where}.{key}: the key must be an ifIndex (an integer)") from None
        if not 0 <= ifindex <= 0xFFFFFFFF:
            raise ValueError(f"{where}.{key}: ifIndex outside 0-4294967295")
        at = f"{where}.{ifindex}"
        if isinstance(body, str):  # the short form: 7: Gi0/7
            body = {"name": body}
        if not isinstance(body, dict):
            raise ValueError(f"{at}: expected a map with name, description, speed, got {body!r}")
        unknown = sorted(set(map(str, body)) - set(_INTERFACE_KEYS))
        if unknown:
            raise ValueError(f"{at}: unknown key {unknown[0]!r} (known: {', '.join(_INTERFACE_KEYS)})")
        speed = 0
        if body.get("speed") not in (None, ""):
            try:
                speed = parse_speed(body["speed"])
            except ValueError as e:
                raise ValueError(f"{at}.speed: {e}") from None
        out[ifindex] = {"name": _text(body.get("name"), f"{at}.name"),
                        "description": _text(body.get("description"), f"{at}.description"), "speed_bps": speed}
    return out


def parse_exporters(value: Any) -> list[dict]:
    """``exporters``: a list of maps {address, name, site, interfaces: {ifindex: {name, description,
    speed}}} -> the same with the address in exporter_text form and speeds in bits/s."""
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise ValueError(f"expected a list of maps with address, name, site, interfaces, got {value!r}")
    if len(value) > EXPORTERS_MAX:
        raise ValueError(f"{len(value)} entries, at most {EXPORTERS_MAX}")
    out, seen = [], {}
    for i, entry in enumerate(value):
        where = f"exporters[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a map with address, name, site, interfaces, got {entry!r}")
        unknown = sorted(set(map(str, entry)) - set(_KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(_KEYS)})")
        if entry.get("address") in (None, ""):
            raise ValueError(f"{where}.address: required (the exporter's address, as flows show it)")
        try:
            address = exporter_text(entry["address"])
        except ValueError:
            raise ValueError(f"{where}.address: {entry['address']!r} is not an IP address") from None
        if address in seen:
            raise ValueError(f"{where}.address: {address} is given twice (also exporters[{seen[address]}])")
        seen[address] = i
        out.append({"address": address, "name": _text(entry.get("name"), f"{where}.name"),
                    "site": _text(entry.get("site"), f"{where}.site"),
                    "interfaces": _interfaces(entry.get("interfaces"), f"{where}.interfaces")})
    return out
