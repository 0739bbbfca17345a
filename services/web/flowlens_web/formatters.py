"""Pure formatting helpers for pages: human units with exact values kept for title attributes,
times in UTC, protocol and service names, and removal of characters XML cannot carry."""
from __future__ import annotations

import datetime as _dt
import re

from flowmodel import ports, timefmt
from flowmodel.protocol import protocol_name

# Characters XML 1.0 forbids even when escaped (C0 controls except tab/LF/CR, surrogates, U+FFFE/F).
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(value) -> str:
    """Text that can go into an XML document (after escaping): forbidden characters become U+FFFD."""
    s = "" if value is None else str(value)
    return _XML_INVALID.sub("\ufffd", s) if _XML_INVALID.search(s) else s


_SI = ("", "k", "M", "G", "T", "P", "E")


def _scaled(value: float, base: int, units: tuple[str, ...]) -> tuple[float, str]:
    v = float(value)
    i = 0
    while abs(v) >= base and i < len(units) - 1:
        v /= base
        i += 1
    return v, units[i]


def _num(v: float) -> str:
    if v == int(v) and abs(v) < 1000:
        return str(int(v))
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def human_bytes(n) -> str:
    """1536 -> '1.50 KB' (binary multiples, as engineers read interface counters in KB/MB)."""
    if n is None:
        return "-"
    v, unit = _scaled(n, 1024, ("B", "KB", "MB", "GB", "TB", "PB", "EB"))
    return f"{int(v)} B" if unit == "B" else f"{_num(v)} {unit}"


def human_count(n) -> str:
    """12345 -> '12.3 k' (decimal multiples for packets, flows)."""
    if n is None:
        return "-"
    v, unit = _scaled(n, 1000, _SI)
    return _num(v) if not unit else f"{_num(v)} {unit}"


def human_rate(per_s, unit: str) -> str:
    """Rates with decimal prefixes: human_rate(1.5e6, 'bps') -> '1.50 Mbps'."""
    if per_s is None:
        return "-"
    v, prefix = _scaled(per_s, 1000, _SI)
    return f"{_num(v)} {prefix}{unit}"


def exact(n) -> str:
    """An exact integer with thousands separators for title attributes: 1234567 -> '1,234,567'."""
    if n is None:
        return ""
    if isinstance(n, float) and n != int(n):
        return f"{n:,.3f}"
    return f"{int(n):,}"


def share(part, total) -> float:
    """Percentage 0-100 of part in total (0 when total is 0)."""
    try:
        return 100.0 * float(part) / float(total) if total else 0.0
    except (TypeError, ValueError):
        return 0.0


def percent(value: float) -> str:
    return f"{value:.1f} %" if value >= 0.1 or value == 0 else "<0.1 %"


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def utc(ms) -> _dt.datetime | None:
    """The datetime of ``ms``; None for none and for times datetime cannot hold (outside the years
    1..9999: a broken or spoofed exporter clock), which the text helpers below show anyway."""
    if ms is None or not timefmt.plausible(ms):
        return None
    return _EPOCH + _dt.timedelta(milliseconds=int(ms))


def iso_time(ms) -> str:
    """Exact time for titles: '2026-11-24T14:30:05.123Z', any int64 ('+289995580-07-29T16:00:00.000Z')."""
    return "" if ms is None else timefmt.iso(ms)


def human_time(ms, now_ms: int | None = None) -> str:
    """'14:30:05' for today (UTC), '11-23 14:30' for older times, '-' for none, 'far future (year
    289,995,580)' outside the years 1..9999."""
    if ms is None or not ms:
        return "-"
    t = utc(ms)
    if t is None:
        return timefmt.far_label(ms)
    now = utc(now_ms) if now_ms is not None else None
    if now is not None:
        if t.date() == now.date():
            return t.strftime("%H:%M:%S")
        if t.year == now.year:
            return t.strftime("%m-%d %H:%M")
    return t.strftime("%Y-%m-%d %H:%M")


def clock_time(ms) -> str:
    """'14:30' on the minute, else '14:30:05' (chart ticks); the ISO time outside the years 1..9999."""
    t = utc(ms)
    if t is None:
        return timefmt.iso(ms, millis=False)
    return t.strftime("%H:%M" if int(ms) % 60_000 == 0 else "%H:%M:%S")


def human_duration(seconds) -> str:
    """0.25 -> '250 ms', 75 -> '1 min 15 s', 90000 -> '1 d 1 h'."""
    if seconds is None:
        return "-"
    s = float(seconds)
    if s < 0:
        s = 0.0
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s" if s < 10 and s != int(s) else f"{s:.0f} s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m} min {sec} s" if sec else f"{m} min"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(h, 24)
    return f"{d} d {h} h" if h else f"{d} d"


def ago(ms, now_ms: int) -> str:
    if not ms:
        return "never"
    return human_duration(max(0, now_ms - int(ms)) / 1000) + " ago"


def proto(number) -> str:
    """6 -> 'TCP', 253 -> '253'."""
    return protocol_name(int(number))


# Well-known ports in the lowercase keyword style of the flow tables; one table for every service.
SERVICE_NAMES = {port: name.lower() for port, name in ports.SERVICE_NAMES.items()}

_PORTLESS = {1, 58}  # ICMP, ICMPv6: ports carry type/code, not services


def service_name(port) -> str:
    return SERVICE_NAMES.get(int(port), "")


def flow_service(protocol, src_port, dst_port) -> str:
    """The service a flow is most likely about: the named port, preferring the destination."""
    p = int(protocol)
    if p in _PORTLESS or p not in (6, 17, 132):
        return ""
    for port in (int(dst_port), int(src_port)):
        name = SERVICE_NAMES.get(port)
        if name:
            return name
    return ""


def port_label(port, protocol=6) -> str:
    """'443 (https)' or '51234'."""
    port = int(port)
    name = SERVICE_NAMES.get(port) if int(protocol) not in _PORTLESS else None
    return f"{port} ({name})" if name else str(port)


def endpoint(address: str, port, protocol) -> str:
    """'10.0.0.1:443', '[2001:db8::1]:443' or the bare address when the protocol has no ports."""
    if int(protocol) not in (6, 17, 132) and not port:
        return address
    return f"[{address}]:{int(port)}" if ":" in address else f"{address}:{int(port)}"


_TCP_FLAGS = (("C", 0x80), ("E", 0x40), ("U", 0x20), ("A", 0x10), ("P", 0x08), ("R", 0x04), ("S", 0x02), ("F", 0x01))


def tcp_flags(value) -> str:
    """0x12 -> 'AS': the flags that are set, in the order CEUAPRSF; '' for none."""
    v = int(value)
    return "".join(ch for ch, bit in _TCP_FLAGS if v & bit)
