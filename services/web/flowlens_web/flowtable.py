"""The flow explorer's core (pure): its form read into store arguments, and flow rows for the table.

Filters are checked here first, so a typo gets a 400 naming the field before the store is asked;
the store checks them again (and refuses those it does not know yet: the page says so).
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from flowmodel.protocol import QueryError, normalise_flow_filters

from . import formatters as fmt
from .namebook import NameBook
from .timerange import RangeError, TimeRange

ADDRESS_FIELDS = ("src", "dst", "addr", "port", "protocol", "exporter")
# number filters: (lowest, highest, what)
NUMBER_FIELDS = {"input_if": (0, 2**32 - 1, "an ifIndex"), "output_if": (0, 2**32 - 1, "an ifIndex"),
                 "src_as": (0, 2**32 - 1, "an AS number"), "dst_as": (0, 2**32 - 1, "an AS number"),
                 "as": (0, 2**32 - 1, "an AS number"), "dscp": (0, 63, "a DSCP value")}
FILTER_FIELDS = ADDRESS_FIELDS + tuple(NUMBER_FIELDS)
ORDERS = {"time": "most recently ended first", "bytes": "most bytes first", "packets": "most packets first"}
DEFAULT_RANGE = "1h"
_AS_RE = re.compile(r"^(?:as)?\s*(\d{1,10})$", re.IGNORECASE)


class FormError(ValueError):
    """Bad flow-explorer input; the message is shown above the form."""


def _number(name: str, text: str) -> int:
    lo, hi, what = NUMBER_FIELDS[name]
    m = _AS_RE.match(text) if name.endswith("as") else re.match(r"^(\d{1,10})$", text)
    if not m or not lo <= int(m.group(1)) <= hi:
        raise FormError(f"{name} {text[:40]!r} is not {what} ({lo} to {hi})")
    return int(m.group(1))


def flow_query(params: Mapping[str, str], now_ms: int) -> tuple[dict, dict, TimeRange]:
    """Form values (as typed, for re-showing), the store's flows arguments and the time range;
    raises FormError (RangeError's reason included)."""
    form = {k: (params.get(k) or "").strip()[:200] for k in FILTER_FIELDS}
    form["order"] = (params.get("order") or "time").strip()
    if form["order"] not in ORDERS:
        raise FormError(f"order {form['order'][:40]!r} is not one of: {', '.join(ORDERS)}")
    try:
        tr = TimeRange.from_query(params, now_ms, default=DEFAULT_RANGE)
    except RangeError as e:
        raise FormError(str(e)) from None
    raw = {k: form[k] for k in ADDRESS_FIELDS if form[k]}
    try:
        checked = normalise_flow_filters(raw, now_ms)
    except QueryError as e:
        raise FormError(str(e)) from None
    args: dict[str, Any] = dict(raw)
    for k in ("protocol", "port"):
        if k in checked:
            args[k] = checked[k]
    for k in NUMBER_FIELDS:
        if form[k]:
            args[k] = _number(k, form[k])
    args["since"], args["until"] = tr.since_ms, tr.until_ms
    if form["order"] != "time":
        args["order"] = form["order"]
    return form, args, tr


def form_query(form: Mapping[str, str], tr: TimeRange, **extra) -> dict:
    """Query parameters that reproduce the form and range (for pager, sort and CSV links)."""
    q = {k: v for k, v in form.items() if v and not (k == "order" and v == "time")}
    q.update(tr.query())
    q.update({k: v for k, v in extra.items() if v})
    return q


def flow_rows(rows: list[dict], now_ms: int, names: NameBook | None = None) -> list[dict]:
    names = names or NameBook()
    out = []
    for r in rows:
        p = int(r["protocol"])
        dur_s = max(0, int(r["time_end"]) - int(r["time_start"])) / 1000
        exporter = r["exporter"]
        tos = int(r.get("tos") or 0)
        next_hop = r.get("next_hop") or ""
        out.append({
            "end": fmt.human_time(r["time_end"], now_ms), "start_exact": fmt.iso_time(r["time_start"]),
            "end_exact": fmt.iso_time(r["time_end"]),
            "duration": fmt.human_duration(dur_s), "duration_exact": f"{dur_s:.3f} s",
            "src_addr": r["src_addr"], "dst_addr": r["dst_addr"],
            "src": fmt.endpoint(r["src_addr"], r["src_port"], p), "dst": fmt.endpoint(r["dst_addr"], r["dst_port"], p),
            "src_port": int(r["src_port"]), "dst_port": int(r["dst_port"]),
            "protocol": fmt.proto(p), "protocol_number": p,
            "service": fmt.flow_service(p, r["src_port"], r["dst_port"]),
            "bytes": fmt.human_bytes(r["bytes"]), "bytes_exact": fmt.exact(r["bytes"]),
            "packets": fmt.human_count(r["packets"]), "packets_exact": fmt.exact(r["packets"]),
            "sampling": int(r.get("sampling_rate", 1)),
            "flags": fmt.tcp_flags(r.get("tcp_flags", 0)) if p == 6 else "",
            "exporter": exporter, "exporter_name": names.exporter_name(exporter),
            "version": int(r.get("flow_version", 0)),
            "in_if": interface_cell(names, exporter, r.get("input_if")),
            "out_if": interface_cell(names, exporter, r.get("output_if")),
            "src_as": int(r.get("src_as") or 0), "dst_as": int(r.get("dst_as") or 0),
            "dscp": tos >> 2, "ecn": tos & 3,
            "next_hop": "" if next_hop in ("::", "0.0.0.0") else next_hop,
        })
    return out


def interface_cell(names: NameBook, exporter: str, ifindex) -> dict:
    """{'text': name or ifIndex, 'title': what the name hides, 'ifindex'}; ifIndex 0 (none) is '-'."""
    i = int(ifindex or 0)
    if not i:
        return {"text": "-", "title": "no interface exported", "ifindex": 0}
    known = names.interface(exporter, i)
    if not known["name"]:
        return {"text": str(i), "title": f"ifIndex {i} (no name known)", "ifindex": i}
    title = f"ifIndex {i}" + (f", {known['description']}" if known.get("description") else "")
    return {"text": known["name"], "title": title, "ifindex": i}
