"""The value types of config keys: each parses a YAML or environment value into what the services
use, or raises ConfigError with the reason (load_config adds the key's name). Pure functions.
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable


class ConfigError(ValueError):
    """A config problem; the message names the key and the reason."""


# ---------------------------------------------------------------- value types

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*$", re.I)
_SIZE_UNITS = {None: 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1 << 20, "mb": 1000**2,
               "mib": 1 << 20, "g": 1 << 30, "gb": 1000**3, "gib": 1 << 30}


# Timestamps are int64 milliseconds and retentions are subtracted from them: a longer duration
# would overflow SQLite's integers at start, and nothing in FlowLens waits or keeps longer.
DURATION_MAX_S = 100 * 365 * 86400


def parse_duration(value: Any) -> float:
    """'90s', '10m', '7d', '250ms' or a number of seconds -> seconds (float), at most 100 years."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 60s, 10m, 7d")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{value!r} is not a duration like 60s, 10m, 7d")
        if value < 0:
            raise ValueError("a duration cannot be negative")
        seconds = value
    else:
        m = _DURATION_RE.match(str(value))
        if not m:
            raise ValueError(f"{_shown(value)} is not a duration like 60s, 10m, 7d")
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]  # inf for 400 digits: refused below
    if seconds > DURATION_MAX_S:
        raise ValueError(f"{_shown(value)} is longer than 100 years")
    return float(seconds)


def parse_size(value: Any) -> int:
    """'8MiB', '512k' or a number of bytes -> bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size like 8MiB")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    m = _SIZE_RE.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a size like 4MiB, 512k or 1048576")
    return int(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower() or None]


def _shown(value: Any, limit: int = 40) -> str:
    """A value as a message quotes it: repr, cut so a 400-digit number does not fill the screen."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's digit limit
        return "a number too long to print"
    return text if len(text) <= limit else text[:limit] + "...(" + str(len(text)) + " characters)"


def _number(x: float) -> str:
    """A bound or value in a message, 1.04858e+06 style; an int too large for a float as its length."""
    try:
        return f"{x:g}"
    except OverflowError:
        return _shown(x)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected an integer, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"expected an integer, got {value!r}") from None


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number, got {_shown(value)}") from None
    except OverflowError:  # an int past a float's range
        raise ValueError(f"expected a finite number, got {_shown(value)}") from None
    if not math.isfinite(v):
        raise ValueError(f"expected a finite number, got {value!r}")
    return v


_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _str(value: Any) -> str:
    """Text on one line: a NUL or other control character (tab aside) cannot be shown on an XHTML
    page, sent in an HTTP header or named in a path."""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError(f"expected a string, got {_shown(value)}")
    text = str(value)
    bad = _CONTROL_RE.search(text)
    if bad:
        raise ValueError(f"{_shown(value)} holds the control character {bad.group()!r}")
    return text


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
        return value.lower() in ("true", "yes", "1", "on")
    raise ValueError(f"expected true or false, got {value!r}")


def _str_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return [str(v) for v in value]


def _port(value: Any) -> int:
    port = _int(value)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is outside 1-65535")
    return port


def _port_or_off(value: Any) -> int:
    port = _int(value)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is outside 1-65535 (or 0 to disable)")
    return port


def ranged(parse: Callable[[Any], Any], lo: float | None = None, hi: float | None = None,
           unit: str = "") -> Callable[[Any], Any]:
    """``parse``, then a check that the value lies in [lo, hi] (either end open when None)."""
    def check(value: Any) -> Any:
        v = parse(value)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            if lo is not None and hi is not None:
                span = f"between {_number(lo)} and {_number(hi)}{unit}"
            elif lo is not None:
                span = f"at least {_number(lo)}{unit}"
            else:
                span = f"at most {_number(hi)}{unit}"
            raise ValueError(f"must be {span}, got {_number(v)}")
        return v
    return check


def _positive_int(value: Any) -> int:
    v = _int(value)
    if v <= 0:
        raise ValueError(f"must be a positive integer, got {v}")
    return v


def _batch_flows(value: Any) -> int:
    from .schema import MAX_BATCH_FLOWS

    v = _int(value)
    if not 1 <= v <= MAX_BATCH_FLOWS:
        raise ValueError(f"must be between 1 and {MAX_BATCH_FLOWS} flows, got {v}")
    return v


def _datagram_size(value: Any) -> int:
    v = parse_size(value)
    if v > 65535:  # files from before collector.socket_buffer used buffer_size for the kernel buffer
        raise ValueError(f"is the UDP read buffer, the largest datagram read (at most 65535 bytes), got {v}; "
                         "the kernel receive buffer is collector.socket_buffer")
    if v < 512:
        raise ValueError(f"must be at least 512 bytes (a NetFlow header and a record), got {v}")
    return v


def _receive_group(value: Any) -> int:
    v = _int(value)
    if not 1 <= v <= 4096:  # 64 KiB of address space per datagram slot
        raise ValueError(f"must be between 1 and 4096 datagrams, got {v}")
    return v


def _level(value: Any) -> str:
    v = _str(value).lower()
    if v not in ("debug", "info", "warning", "error"):
        raise ValueError(f"log level must be debug, info, warning or error, got {value!r}")
    return v


def _log_format(value: Any) -> str:
    v = _str(value).lower()
    if v not in ("kv", "json"):
        raise ValueError(f"log format must be kv or json, got {value!r}")
    return v


def _duration(value: Any) -> float:
    return parse_duration(value)


def _pos_duration(value: Any) -> float:
    v = parse_duration(value)
    if v <= 0:
        raise ValueError("must be longer than zero")
    return v


def _fraction(value: Any) -> float:
    v = _float(value)
    if not 0 <= v <= 1:
        raise ValueError(f"must be between 0 and 1, got {v}")
    return v


def _prefix_v4(value: Any) -> int:
    v = _int(value)
    if not 0 <= v <= 32:
        raise ValueError(f"an IPv4 prefix length is 0-32, got {v}")
    return v


def _prefix_v6(value: Any) -> int:
    v = _int(value)
    if not 0 <= v <= 128:
        raise ValueError(f"an IPv6 prefix length is 0-128, got {v}")
    return v


def _warm_ranges(value: Any) -> list[str]:
    """At most 8 durations of 1 h to 31 d, kept as written (parse_duration reads them): each warmed
    range is a cache entry per top and a merge per hour sealed."""
    spans = _str_list(value)
    if len(spans) > 8:
        raise ValueError(f"at most 8 ranges, got {len(spans)}")
    for text in spans:
        if not 3600 <= _pos_duration(text) <= 31 * 86400:
            raise ValueError(f"{text!r} is outside 1h-31d")
    return spans


def _networks(value: Any) -> list[str]:
    import ipaddress

    nets = _str_list(value)
    for n in nets:
        try:
            net = ipaddress.ip_network(n, strict=False)
        except ValueError:
            raise ValueError(f"{n!r} is not a CIDR network") from None
        if ipaddress.ip_interface(n).ip != net.network_address:
            raise ValueError(f"{n!r} has host bits set (did you mean {net}?)")
    return nets


def _notify_targets(value: Any) -> list[dict]:
    from .notifyconf import parse_targets

    return parse_targets(value)


def _notify_rules(value: Any) -> list[dict]:
    from .notifyconf import parse_rules

    return parse_rules(value)


def _report_offset(value: Any) -> str:
    from .report import offset_text, parse_utc_offset

    return offset_text(parse_utc_offset(value))


def _report_send_at(value: Any) -> str:
    from .report import parse_send_at

    minutes = parse_send_at(value)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _snmp_targets(value: Any) -> list[dict]:
    from .snmpconf import parse_targets

    return parse_targets(value)


def _exporters(value: Any) -> list[dict]:
    from .namesconf import parse_exporters

    return parse_exporters(value)
