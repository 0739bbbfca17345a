"""Query replies as rows for people and scripts: the edge where columns become lines.

``reply_rows(op, reply)`` turns one store reply into a list of flat dicts; ``render(rows, fmt)``
writes them as JSON lines (one object per line, the schema's column names, addresses as text),
CSV with a header, or an aligned table with times and protocols in human form. ``render_reply`` and
``render_flows`` are what ``flowlens query`` prints: the rows, or for a person reading a table, the
nested replies (status, overview, names, exporters) as sections and small tables.
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


EXPORTER_COLUMNS = ("exporter", "observation_domain", "version", "collector", "packets", "flows", "store_flows",
                    "sequence_lost", "decode_errors", "templates", "first_seen", "last_seen", "store_last_seen")


def render_flows(rows: list[dict], fmt: str) -> str:
    """Flows as text: a table of FLOW_TABLE_COLUMNS, or every schema column (CSV: the header even
    without rows, as the web's /flows.csv writes it)."""
    from .schema import COLUMN_NAMES

    return render(rows, fmt, FLOW_TABLE_COLUMNS, columns=COLUMN_NAMES)


def render_reply(op: str, reply: dict, fmt: str) -> str:
    """A non-flow reply as text. JSON and CSV are the rows of ``reply_rows``; a person reading a
    table gets ``status`` as key/value sections and ``exporters`` with its collectors below."""
    if fmt == "table" and op == "status":
        body = {k: v for k, v in reply.items() if k != "ok"}
        if isinstance(body.get("services"), list):  # each service's effective config: --format json has it
            body["services"] = [{k: v for k, v in s.items() if k != "config"} if isinstance(s, dict) else s
                                for s in body["services"]]
        return render_sections(body, "store")
    if fmt == "table" and op == "overview":
        return render_overview(reply)
    if op == "names":
        rows = names_rows(reply)
        if fmt != "table":
            return render(rows, fmt, NAMES_COLUMNS, columns=NAMES_COLUMNS)
        return (render_sections({"exporters": reply.get("exporters") or []}, "names") +
                _table("interfaces", [{k: r[k] for k in ("exporter", "ifindex", "name", "description", "speed_bps", "source")}
                                      for r in rows if r["ifindex"] != ""], 2))
    if op == "explore":
        return render(explore_rows(reply, fmt), fmt, columns=("time", "key", reply.get("metric", "bytes")))
    if op == "ifcounters":  # one row per step
        keys = ("in_bps", "out_bps", "in_pps", "out_pps", "in_errors", "out_errors", "in_discards", "out_discards",
                "resets")
        return render([{"time": t, **{k: reply[k][i] for k in keys}, "speed_bps": reply.get("speed_bps", 0)}
                       for i, t in enumerate(reply.get("times", []))], fmt, columns=("time", *keys, "speed_bps"))
    if fmt == "table" and op == "exporters":
        text = render(reply_rows(op, reply), fmt, _union_columns(reply.get("exporters") or [], EXPORTER_COLUMNS))
        for c in reply.get("collectors") or []:
            text += "\n" + render_sections({k: v for k, v in c.items() if k != "collector"},
                                           f"collector {c.get('collector', '?')}")
        return text
    return render(reply_rows(op, reply), fmt, columns=reply_columns(op))


def render_overview(reply: dict) -> str:
    """The dashboard's reply for a person: its window, then the series and each top as the series
    and top ops print them."""
    text = render_sections({k: v for k, v in reply.items() if k not in ("ok", "series", "top")}, "overview")
    parts = [("series", reply.get("series") or {})]
    parts += [(f"top {by}", top) for by, top in (reply.get("top") or {}).items() if isinstance(top, dict)]
    for title, part in parts:
        op = title.split()[0]
        text += f"\n{title}\n" + render(reply_rows(op, part), "table", columns=reply_columns(op))
    return text


def explore_rows(reply: dict, fmt: str) -> list[dict]:
    """An explore reply for a person (table): one row per key, its total, share and busiest step's
    value, then other; for scripts (json, csv): one row per step and key, other included."""
    metric = reply.get("metric", "bytes")
    series = [*reply.get("series", []), {"key": "other", **(reply.get("other") or {"values": [], "total": 0})}]
    if fmt != "table":
        return [{"time": t, "key": s["key"], metric: v} for s in series for t, v in zip(reply.get("times", []), s["values"])]
    everything = (reply.get("totals") or {}).get(metric) or 0
    return [{"key": s["key"], metric: s["total"], "share_%": f"{100 * s['total'] / everything:.1f}" if everything else "",
             f"peak_{metric}_per_step": max(s["values"], default=0)} for s in series]


NAMES_COLUMNS = ("exporter", "exporter_name", "site", "dns", "ifindex", "name", "description", "speed_bps", "source")


def names_rows(reply: dict) -> list[dict]:
    """The names reply as one row per interface beside its exporter's names (an exporter naming no
    interface: one row with an empty ifindex), for json and csv."""
    by_exporter: dict[str, list[dict]] = {}
    for i in reply.get("interfaces") or []:
        by_exporter.setdefault(i.get("exporter", ""), []).append(i)
    rows = []
    for e in reply.get("exporters") or []:
        head = {"exporter": e.get("exporter", ""), "exporter_name": e.get("name", ""), "site": e.get("site", ""),
                "dns": e.get("dns", "")}
        for i in by_exporter.pop(head["exporter"], None) or [{}]:
            rows.append({**head, **{k: i.get(k, "") for k in NAMES_COLUMNS[4:]}})
    return rows


def _union_columns(rows: list[dict], preferred: tuple[str, ...]) -> list[str]:
    """``preferred`` columns any row has, then every other key of any row, in first-seen order."""
    names = [n for n in preferred if any(n in r for r in rows)]
    for r in rows:
        names.extend(k for k in r if k not in names)
    return names


def render_sections(obj: dict, title: str, indent: int = 0) -> str:
    """A nested reply as readable text: scalars as aligned ``key  value`` lines under a heading,
    nested maps as indented sections, lists of maps (and maps of maps) as small tables."""
    pad = " " * indent
    lines = [pad + title]
    scalars = {k: v for k, v in obj.items() if not isinstance(v, (dict, list))
               or (isinstance(v, list) and not any(isinstance(x, dict) for x in v))}
    width = max((len(str(k)) for k in scalars), default=0)
    for k, v in scalars.items():
        text = ", ".join(_shown(str(k), x) for x in v) if isinstance(v, list) else _shown(str(k), v)
        lines.append(f"{pad}  {str(k).ljust(width)}  {text or '-'}".rstrip())
    body = "\n".join(lines) + "\n"
    for k, v in obj.items():
        if k in scalars:
            continue
        if isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values()):
            body += _table(str(k), [{"name": name, **_flat(x)} for name, x in v.items()], indent + 2)
        elif isinstance(v, dict):
            body += render_sections(v, str(k), indent + 2) if v else f"{pad}  {k}  -\n"
        else:
            body += _table(str(k), [_flat(x) if isinstance(x, dict) else {"value": x} for x in v], indent + 2)
    return body


def _shown(name: str, value) -> str:
    """A scalar for a person: epoch-ms times (also ``*_time`` keys) as UTC, the rest as output shows them."""
    return _human("time" if name.endswith("_time") else name, value)


def _flat(row: dict) -> dict:
    """One level of nesting spread into dotted columns (``process.rss_bytes``)."""
    out: dict = {}
    for k, v in row.items():
        if isinstance(v, dict) and v:
            out.update({f"{k}.{k2}": v2 for k2, v2 in v.items()})
        else:
            out[k] = v
    return out


def _table(title: str, rows: list[dict], indent: int) -> str:
    pad = " " * indent
    if not rows:
        return f"{pad}{title}  (none)\n"
    table = render(rows, "table")
    return pad + title + "\n" + "".join(pad + "  " + line + "\n" for line in table.splitlines())
