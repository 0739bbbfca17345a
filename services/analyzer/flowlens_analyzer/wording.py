"""How advisories write numbers, rates, sizes, times and plurals for a person: one home, so every
analyzer's sentences read alike ("8.2 Gbps", "1,200 servers", "14:32"). Pure: values in, text out.
"""
from __future__ import annotations

from flowmodel import timefmt


def fmt_int(n: float) -> str:
    """12000 -> '12,000'."""
    return f"{int(round(n)):,}"


def fmt_rate_bps(bps: float) -> str:
    """8.2e9 -> '8.2 Gbps'."""
    for unit, scale in (("Tbps", 1e12), ("Gbps", 1e9), ("Mbps", 1e6), ("kbps", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.1f} {unit}"
    return f"{bps:.0f} bps"


def fmt_bytes(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


def plural(n: float, word: str, words: str | None = None) -> str:
    """'1 server', '2 servers', '1,200 servers' (words: an irregular plural)."""
    return f"{fmt_int(n)} {word if int(round(n)) == 1 else (words or word + 's')}"


def fmt_pct(fraction: float) -> str:
    return f"{fraction * 100:.0f}%"


def fmt_time(ms: int) -> str:
    """'14:32' (UTC) for the wording; the evidence keeps the ms. Any int64: a time outside the years
    1..9999 (a broken exporter clock) is written in full, '+289995580-07-29T16:00:00Z'."""
    if not timefmt.plausible(ms):
        return timefmt.iso(ms, millis=False)
    _y, _mo, _d, hour, minute, _s, _ms = timefmt.civil(ms)
    return f"{hour:02d}:{minute:02d}"


def fmt_duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:g} s"
