"""The store's query protocol (REQ/REP, msgpack maps): ops, their arguments, and argument parsing
shared by the store (which enforces it), the web and the CLI (which check input early).

Request ``{"op": NAME, ...arguments}``; reply ``{"ok": true, ...}`` or
``{"ok": false, "error": "plain-language reason"}``. Times on the wire are ints, ms since epoch.
"""
from __future__ import annotations

import datetime as _dt
import re
import time
from typing import Any

OPS = {
    "flows": "flows matching filters, keyset-paginated; args: order (time: newest first, the default; bytes or packets: the largest flows of the window first), limit, cursor, direction (next, prev), filters; reply: columns (raw bytes per schema column), count, next_cursor, prev_cursor",
    "top": "top keys by bytes/packets/flows for a window; args: by (src, dst, pair, port, src_port, dst_port, protocol, exporter, in_if, out_if (exporter + ifIndex), src_as, dst_as, dscp, src_country, dst_country), metric, limit, scaled (times the sampling rate), filters; reply: rows (key, filter, bytes, packets, flows), totals",
    "explore": "the top N keys of a dimension over a window with each key's series; args: by (as top), metric (bytes, packets, flows), limit (1-50, default 10), step (seconds; 0 or absent: about 300 steps, rounded up to 60, 300, 3600, ...), scaled (default true), since (required), until, filters; reply: step_ms, since, until, times [t_ms per step], series [{key, filter (flow filter args selecting that key), values (metric per step), total}], other {values, total}, totals {bytes, packets, flows}, source, approximate",
    "series": "bytes/packets/flows per step for a window; args: step (seconds), spread (pro-rate each flow over its lifetime), scaled (times the sampling rate), filters; reply: step_ms, points [[t_ms, bytes, packets, flows], ...]",
    "overview": "a dashboard's window in one read: args: step, limit, filters (since required); reply: series (spread, scaled), top {src, dst, protocol} (scaled bytes)",
    "exporters": "per exporter and observation domain: counters and last seen; reply: exporters, collectors",
    "status": "store health: rates, ring fill, SQLite size and oldest data, uptime, version, process resources",
    "advisories": "advisories; args: severity, state, analyzer, subject, since, until, include_resolved, limit, after (received_at ms: rows received later, resolved too, oldest first, each with received_at; after_key pages within one ms); reply: advisories (newest `limit` by severity), counts (per severity over every match), total",
    "rollups": "per-minute rollups for baselines; args: kind (dst_prefix, exporter), since, until, key, scaled (times the sampling rate), step (whole minutes, seconds), top (keys with most bytes); reply: rows",
    "notes": "operators' acknowledgements and silences (flowmodel.notes); args: kind (ack, silence), active (default true: silences not expired), limit; reply: notes, newest first",
    "names": "exporter and interface names; no args; reply: exporters [{exporter (address text), name, site (from the exporters: config), dns (reverse name, or empty until resolved or when names.reverse_dns is off)}], interfaces [{exporter, ifindex, name, description, speed_bps, source}]: one per (exporter, ifindex), named from the first source of options, snmp, config that has a name",
    "ifcounters": "an interface's own counters from its sFlow agent's if-counters samples; args: exporter (address), ifindex, since (required), until, step (whole minutes in seconds; 0 or absent: about 300 steps); reply: step_ms, since, until, times [t_ms per step], in_bps, out_bps, in_pps, out_pps (per step), in_octets, out_octets, in_errors, out_errors, in_discards, out_discards, resets (sums per step), speed_bps (ifSpeed, 0 when unknown)",
    "ping": "liveness; reply: ok",
}

# ZMQ_MAXMSGSIZE of the store's query socket: a request is an op and a few filters, never near this;
# a bigger one is dropped by ZeroMQ (the peer is disconnected) before the store allocates it.
REQUEST_MAX_BYTES = 64 << 10

# Filters every flow-reading op accepts. input_if/output_if are SNMP ifIndexes (meaningful with an
# exporter); as matches either side; dscp is the top six bits of tos (0-63).
FLOW_FILTERS = ("src", "dst", "addr", "port", "src_port", "dst_port", "protocol", "exporter", "since", "until",
                "input_if", "output_if", "src_as", "dst_as", "as", "dscp", "src_country", "dst_country", "country")
# 32-bit filters and their bounds (inclusive)
INT_FILTERS = {"input_if": 0xFFFFFFFF, "output_if": 0xFFFFFFFF, "src_as": 0xFFFFFFFF, "dst_as": 0xFFFFFFFF,
               "as": 0xFFFFFFFF, "dscp": 63}
# country filters: a two-letter code, a label's words ('private', flowmodel.geo) or 'unknown';
# country matches either side
COUNTRY_FILTERS = ("src_country", "dst_country", "country")
# top/explore dimensions: in_if/out_if are (exporter, ifIndex); port is min(src_port, dst_port). ``by``
# may also be two different ones but pair joined by a comma ("in_if,out_if"): the pairs of their keys,
# each row's key "a -> b" and its filter both keys' (in_if,out_if and src_as,dst_as, either way round,
# from the store's pair rollups; the others summed from raw flows)
TOP_BY = ("src", "dst", "pair", "port", "src_port", "dst_port", "protocol", "exporter", "in_if", "out_if",
          "src_as", "dst_as", "dscp", "src_country", "dst_country")
METRICS = ("bytes", "packets", "flows")
# flows op orders: time (keyset by (time_end, seq)) or the largest flows first (keyset by (value, seq))
FLOW_ORDERS = ("time", "bytes", "packets")
EXPLORE_LIMIT_MAX = 50

PROTOCOL_NAMES = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 41: "IPv6", 47: "GRE", 50: "ESP", 51: "AH",
                  58: "ICMPv6", 88: "EIGRP", 89: "OSPF", 103: "PIM", 112: "VRRP", 132: "SCTP"}
PROTOCOL_NUMBERS = {v.lower(): k for k, v in PROTOCOL_NAMES.items()} | {"ipv6-icmp": 58, "icmp6": 58}


class QueryError(ValueError):
    """A bad query argument; the message is the plain-language reason sent back to the user."""


def error_reply(reason: str) -> dict:
    return {"ok": False, "error": reason}


def is_digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes '\u00b2' and other digits int() refuses."""
    return text.isascii() and text.isdigit()


def protocol_name(number: int) -> str:
    return PROTOCOL_NAMES.get(int(number), str(int(number)))


def parse_protocol(value: Any) -> int:
    """'tcp', 'UDP', '6' or 6 -> 6."""
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    else:
        text = str(value).strip().lower()
        if text in PROTOCOL_NUMBERS:
            return PROTOCOL_NUMBERS[text]
        if not is_digits(text):
            raise QueryError(f"protocol {value!r} is not a protocol name (tcp, udp, icmp, ...) or number")
        n = int(text)
    if not 0 <= n <= 255:
        raise QueryError(f"protocol {n} is outside 0-255")
    return n


def parse_port(value: Any, name: str = "port") -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        raise QueryError(f"{name} {value!r} is not a number") from None
    if not 0 <= n <= 65535:
        raise QueryError(f"{name} {n} is outside 0-65535")
    return n


def parse_uint_arg(value: Any, name: str, hi: int) -> int:
    """A whole number in 0..hi (an int, or its decimal text), else a QueryError naming ``name``."""
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise QueryError(f"{name} {value!r} is not a whole number")
    text = str(int(value) if isinstance(value, float) else value).strip()
    if not is_digits(text) or len(text) > 20:
        raise QueryError(f"{name} {value!r} is not a whole number (0-{hi})")
    n = int(text)
    if n > hi:
        raise QueryError(f"{name} {n} is outside 0-{hi}")
    return n


def parse_country_arg(value: Any, name: str) -> int:
    """A country filter's packed code (flowmodel.geo), else a QueryError naming ``name``."""
    from . import geo  # imported here: it brings numpy

    try:
        return geo.parse_country(str(value)[:64])
    except geo.CountryError as e:
        raise QueryError(f"{name}: {e}") from None


def parse_network_arg(value: Any, name: str) -> tuple[bytes, bytes]:
    from . import addr  # imported here: flowmodel.addr brings numpy, which a web page or CLI line may not need

    try:
        lo, hi, _plen = addr.parse_network(str(value))
    except addr.AddressError as e:
        raise QueryError(f"{name}: {e}") from None
    return lo, hi


_REL_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_REL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# Times a WHEN may resolve to: from the epoch to 2^62 ms (146 million years on; a msgpack int and an
# SQLite integer hold it with room, so no query argument overflows further on).
WHEN_MAX_MS = 2**62


def parse_when(value: Any, now_ms: int | None = None, name: str = "time") -> int:
    """A WHEN as ms since epoch: an int/float (ms), a duration back from now ('15m', '24h', '7d'),
    'now', or an ISO 8601 time (naive times are UTC). Times before 1970 or past WHEN_MAX_MS are a
    QueryError."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if isinstance(value, bool):
        raise QueryError(f"{name} {value!r} is not a time")
    if isinstance(value, (int, float)):
        if value != value or value in (float("inf"), float("-inf")):
            raise QueryError(f"{name} {value!r} is not a time")
        return _in_range(int(value), value, name)
    text = str(value).strip()
    if text == "now":
        return now_ms
    if is_digits(text.lstrip("-")):
        if len(text) > 25:  # int() of a huge digit run is slow and certainly out of range
            raise QueryError(f"{name} {text[:30]!r}... is not a time: too many digits")
        return _in_range(int(text), text, name)
    m = _REL_RE.match(text)
    if m:
        back_ms = float(m.group(1)) * _REL_UNITS[m.group(2)] * 1000
        if not back_ms <= now_ms:
            raise QueryError(f"{name} {text!r} reaches back before 1970")
        return _in_range(now_ms - int(back_ms), text, name)
    try:
        t = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"{name} {text!r} is not a time: use 15m, 24h, 7d or an ISO 8601 time like 2026-11-24T14:30") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return _in_range(int(t.timestamp() * 1000), text, name)


def _in_range(ms: int, value: Any, name: str) -> int:
    if ms < 0:
        raise QueryError(f"{name} {value!r} is before 1970 (times are ms since 1970-01-01)")
    if ms > WHEN_MAX_MS:
        raise QueryError(f"{name} {value!r} is too far in the future (times are ms since 1970-01-01)")
    return ms


def normalise_flow_filters(args: dict, now_ms: int | None = None) -> dict:
    """Checked, typed filters from user input (strings allowed). Unknown keys are left out.

    Returns a dict with any of: src, dst, addr -> (lo, hi) 16-byte bounds; port, src_port,
    dst_port, protocol, input_if, output_if, src_as, dst_as, as, dscp, src_country, dst_country,
    country -> int (a country packed as flowmodel.geo does, 0 unknown); exporter -> (lo, hi);
    since, until -> ms.
    """
    out: dict[str, Any] = {}
    for key in ("src", "dst", "addr", "exporter"):
        v = args.get(key)
        if v not in (None, ""):
            out[key] = parse_network_arg(v, key)
    for key in ("port", "src_port", "dst_port"):
        v = args.get(key)
        if v not in (None, ""):
            out[key] = parse_port(v, key)
    v = args.get("protocol")
    if v not in (None, ""):
        out["protocol"] = parse_protocol(v)
    for key, hi in INT_FILTERS.items():
        v = args.get(key)
        if v not in (None, ""):
            out[key] = parse_uint_arg(v, key, hi)
    for key in COUNTRY_FILTERS:
        v = args.get(key)
        if v not in (None, ""):
            out[key] = parse_country_arg(v, key)
    for key in ("since", "until"):
        v = args.get(key)
        if v not in (None, ""):
            out[key] = parse_when(v, now_ms, key)
    if "since" in out and "until" in out and out["since"] > out["until"]:
        raise QueryError("since is after until")
    return out
