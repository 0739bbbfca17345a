"""Query replies as rows for people and scripts: the edge where columns become lines.

``reply_rows(op, reply)`` turns one store reply into a list of flat dicts; ``render(rows, fmt)``
writes them as JSON lines (one object per line, the schema's column names, addresses as text),
CSV with a header, or an aligned table with times and protocols in human form.
"""
from __future__ import annotations

import csv
import io
import json
from typing import Any, Iterable

from . import timefmt
from .protocol import protocol_name

FORMATS = ("table", "json", "csv")

# Columns a person wants to see for a flow; JSON and CSV carry every schema column.
FLOW_TABLE_COLUMNS = ("time_start", "time_end", "exporter", "src_addr", "src_port", "dst_addr", "dst_port",
                      "protocol", "bytes", "packets", "tcp_flags", "sampling_rate")
SERIES_COLUMNS = ("time", "bytes", "packets", "flows")
TOP_COLUMNS = ("key", "filter", "bytes", "packets", "flows")  # a top row as the store sends it
TIME_COLUMNS = {"time", "time_start", "time_end", "t", "minute", "since", "until"}  # minute: rollups' rows
TIME_SUFFIXES = ("_seen", "_at", "_ms")  # ms since epoch when large (a duration in ms is never 3 years)


def reply_rows(op: str, reply: dict) -> list[dict[str, Any]]:
    """The rows a reply of ``op`` holds (flows are handled by the caller, page by page)."""
    if op == "series":
        return [dict(zip(SERIES_COLUMNS, point)) for point in reply.get("points", [])]
    if op == "top":
        names = reply.get("columns") or ["key", "bytes", "packets", "flows"]
        return [r if isinstance(r, dict) else dict(zip(names, r)) for r in reply.get("rows", [])]
    if op == "exporters":
        return [dict(r) for r in reply.get("exporters", [])]
    if op == "advisories":
        return [dict(r) for r in reply.get("advisories", [])]
    if op == "rollups":  # columns of equal-length lists
        cols = reply.get("rows") or {}
        return [dict(zip(cols, values)) for values in zip(*cols.values())]
    return [{k: v for k, v in reply.items() if k != "ok"}]  # status, ping: one object


def reply_columns(op: str) -> tuple[str, ...]:
    """The CSV header of ``op``'s rows when a reply has none (ops whose rows have fixed fields)."""
    return {"series": SERIES_COLUMNS, "top": TOP_COLUMNS}.get(op, ())


def _human(name: str, value: Any) -> str:
    if value is None:
        return ""
    if (name in TIME_COLUMNS or name.endswith(TIME_SUFFIXES)) and isinstance(value, int) and value > 10**11:
        return timefmt.iso(value, sep=" ", zone="")  # any int64: a broken exporter clock reaches year 289,995,580
    if name == "protocol" and isinstance(value, int):
        return protocol_name(value)
    if name == "tcp_flags" and isinstance(value, int):
        return "".join(c if value & bit else "." for c, bit in zip("UAPRSF", (32, 16, 8, 4, 2, 1)))
    return _plain(value)


def _plain(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, separators=(",", ":"), default=str)
    if isinstance(value, bytes):
        return value.hex()
    return "" if value is None else str(value)


def _columns(rows: list[dict], preferred: Iterable[str] | None) -> list[str]:
    if preferred:
        return list(preferred)
    names: list[str] = []
    for r in rows:
        names.extend(k for k in r if k not in names)
    return names


def render(rows: list[dict[str, Any]], fmt: str, table_columns: Iterable[str] | None = None,
           columns: Iterable[str] | None = None) -> str:
    """Rows as text in ``fmt`` (json, csv, table); empty string for no rows (json). ``columns`` is
    the CSV header when there are no rows, so a script reading an empty answer still finds its columns."""
    if fmt == "json":
        return "".join(json.dumps(r, default=_plain, separators=(",", ":")) + "\n" for r in rows)
    if fmt == "csv":
        names = _columns(rows, None) or list(columns or ())
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(names)
        for r in rows:
            w.writerow([_plain(r.get(n)) for n in names])
        return buf.getvalue()
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r} (use {', '.join(FORMATS)})")
    if not rows:
        return "(no rows)\n"
    names = [n for n in _columns(rows, table_columns) if any(n in r for r in rows)] or _columns(rows, None)
    cells = [[_human(n, r.get(n)) for n in names] for r in rows]
    widths = [max(len(n), *(len(c[i]) for c in cells)) for i, n in enumerate(names)]
    numeric = [all(c[i].lstrip("-").replace(".", "", 1).isdigit() or not c[i] for c in cells) for i in range(len(names))]
    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()
    return "\n".join([line(names)] + [line(c) for c in cells]) + "\n"
