"""Flow times (int64 ms since the epoch, UTC) as text, for every value an int64 can hold.

datetime stops at the years 1 and 9999, but a flow time is whatever an exporter wrote: a broken or
spoofed clock sends flowEndMilliseconds 9151314449241600000 (the year 289,995,580). Pages, the CLI
and advisories format times through here so that no such value can make them raise.
"""
from __future__ import annotations

MS_PER_DAY = 86_400_000
MS_PER_YEAR = 31_556_952_000  # the mean Gregorian year (365.2425 days)


def civil(ms: int) -> tuple[int, int, int, int, int, int, int]:
    """(year, month, day, hour, minute, second, millisecond) of ``ms``, UTC, proleptic Gregorian,
    astronomical years (year 0 is 1 BC), for any integer: H. Hinnant's civil_from_days."""
    days, rest = divmod(int(ms), MS_PER_DAY)
    z = days + 719_468  # days since 0000-03-01
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    hour, rest = divmod(rest, 3_600_000)
    minute, rest = divmod(rest, 60_000)
    second, milli = divmod(rest, 1000)
    return year, month, day, hour, minute, second, milli


def year_text(year: int) -> str:
    """ISO 8601 year: four digits within 0..9999, else the expanded form with its sign (+291690302)."""
    if 0 <= year <= 9999:
        return f"{year:04d}"
    return f"{'+' if year > 0 else '-'}{abs(year):04d}"


def iso(ms, sep: str = "T", zone: str = "Z", millis: bool = True) -> str:
    """'2026-11-24T14:30:05.123Z'; '+289995580-07-29T16:00:00.000Z' far outside datetime's range."""
    y, mo, d, h, mi, s, milli = civil(ms)
    text = f"{year_text(y)}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}"
    return (text + f".{milli:03d}" if millis else text) + zone


def plausible(ms) -> bool:
    """Whether ``ms`` falls in the years 1..9999, which datetime and strftime can show."""
    return 1 <= civil(ms)[0] <= 9999


def far_label(ms) -> str:
    """'far future (year 289,995,580)' / 'far past (year -285,426,782)' for a time outside 1..9999."""
    year = civil(ms)[0]
    return f"far {'future' if year > 9999 else 'past'} (year {year:,})"


def span_words(ms) -> str:
    """A long span in words: '290 million years', '12 years', '3 days', '5 h', '7 min', '30 s'."""
    ms = abs(int(ms))
    years = ms / MS_PER_YEAR
    for scale, word in ((1e12, "trillion"), (1e9, "billion"), (1e6, "million"), (1e3, "thousand")):
        if years >= scale:
            return f"{years / scale:.0f} {word} years"
    if years >= 2:
        return f"{years:.0f} years"
    for unit_ms, one, many in ((MS_PER_DAY, "day", "days"), (3_600_000, "h", "h"), (60_000, "min", "min")):
        if ms >= 2 * unit_ms or (unit_ms < MS_PER_DAY and ms >= unit_ms):
            n = round(ms / unit_ms)
            return f"{n} {one if n == 1 else many}"
    return f"{ms / 1000:.0f} s"
