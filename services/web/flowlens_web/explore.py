"""The Explore page's form and what it shows (pure: query parameters and store replies in, the
store's explore arguments and plain dicts for the templates out).

The form picks a dimension, a metric (a rate), how many series and flow filters; the store's
``explore`` op answers the metric's sum per step for the top series and "other"; this module turns
the sums into rates (sum / step seconds, times 8 for bits), stacks them into a chart, and gives each
series its statistics, a name from the ``names`` op where one is known, and two links: the same
view filtered to it, and the flow explorer with that filter.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import urlencode

from flowmodel.protocol import QueryError, is_digits, normalise_flow_filters

from . import formatters as fmt
from .namebook import NameBook
from .sankey import Pair, sankey
from .seriesstats import rates, series_stats, step_seconds, utilisation
from .stackchart import OTHER_COLOUR, Layer, colour, stacked_chart
from .flowtable import FILTER_FIELDS as FLOW_PAGE_FILTERS
from .timerange import RangeError, TimeRange

DIMENSIONS = {
    "src": "Source address", "dst": "Destination address", "pair": "Source \u2192 destination",
    "port": "Service port", "src_port": "Source port", "dst_port": "Destination port", "protocol": "Protocol",
    "exporter": "Exporter", "in_if": "Input interface", "out_if": "Output interface",
    "src_as": "Source AS", "dst_as": "Destination AS", "dscp": "DSCP",
    "src_country": "Source country", "dst_country": "Destination country",
}
# form value -> (the op's metric, factor from the per-step sum to the unit, unit, caption)
METRICS = {
    "bps": ("bytes", 8, "bps", "Bits per second"),
    "pps": ("packets", 1, "pps", "Packets per second"),
    "fps": ("flows", 1, "flows/s", "Flows per second"),
}
TEXT_FILTERS = ("src", "dst", "addr", "port", "src_port", "dst_port", "protocol", "exporter", "src_country",
                "dst_country", "country")  # countries: a code (FR), a label's words (private) or unknown
INT_FILTERS = {"input_if": 2**32 - 1, "output_if": 2**32 - 1, "src_as": 2**32 - 1, "dst_as": 2**32 - 1,
               "as": 2**32 - 1, "dscp": 63}
FILTERS = (*TEXT_FILTERS, *INT_FILTERS)
SANKEY_DIMENSIONS = {k: v for k, v in DIMENSIONS.items() if k != "pair"}  # either side of a Sankey (sankeyview.py)
TOP_MIN, TOP_MAX, TOP_DEFAULT = 5, 50, 10
DEFAULT_DIMENSION, DEFAULT_METRIC = "src", "bps"
DSCP_NAMES = {0: "best effort", 8: "CS1", 10: "AF11", 12: "AF12", 14: "AF13", 16: "CS2", 18: "AF21", 20: "AF22",
              22: "AF23", 24: "CS3", 26: "AF31", 28: "AF32", 30: "AF33", 32: "CS4", 34: "AF41", 36: "AF42",
              38: "AF43", 40: "CS5", 44: "voice admit", 46: "EF", 48: "CS6", 56: "CS7"}  # RFC 2474, 2597, 3246, 5865
UTILISATION_HIGH = 80.0  # per cent: shown in red


class FormError(ValueError):
    """Bad Explore input; the message names the parameter and is shown with a 400."""


@dataclass
class ExploreQuery:
    form: dict[str, str]        # what was typed (for re-showing the form), by/metric/top included
    filters: dict[str, Any]     # the flow filters for the store (typed)
    by: str
    metric: str                 # the form's metric: bps, pps or fps
    top: int
    range: TimeRange
    sankey: tuple[str, str] | None = None  # (sankey_from, sankey_to): a Sankey of two dimensions' pairs

    def store_args(self) -> dict:
        """Arguments of the store's explore op (step 0: the store picks about 300 steps)."""
        return {"by": self.by, "metric": METRICS[self.metric][0], "limit": self.top, "step": 0, "scaled": True,
                "since": self.range.since_ms, "until": self.range.until_ms, **self.filters}

    def params(self, **changes) -> dict[str, str]:
        """Query parameters of this view (range included), with ``changes`` applied."""
        q = {k: v for k, v in self.form.items() if v not in (None, "")}
        q.update(self.range.query())
        q.update({k: str(v) for k, v in changes.items()})
        return {k: v for k, v in q.items() if v not in (None, "")}


def parse_int_filter(name: str, value: str) -> int:
    text = value.strip()
    if name in ("src_as", "dst_as", "as") and text[:2].upper() == "AS":
        text = text[2:]
    if not is_digits(text) or len(text) > 12:
        raise FormError(f"{name} {value[:40]!r} is not a whole number")
    n = int(text)
    if n > INT_FILTERS[name]:
        raise FormError(f"{name} {n} is above {INT_FILTERS[name]}")
    return n


def parse_filters(params: Mapping[str, str], now_ms: int) -> tuple[dict[str, str], dict[str, Any]]:
    """(the filters as typed, the filters for the store); raises FormError naming the bad one."""
    typed = {k: (params.get(k) or "").strip()[:200] for k in FILTERS}
    filters: dict[str, Any] = {}
    try:
        checked = normalise_flow_filters({k: typed[k] for k in TEXT_FILTERS}, now_ms)
    except QueryError as e:
        raise FormError(str(e)) from None
    for k in ("src", "dst", "addr", "exporter", "src_country", "dst_country", "country"):
        if typed[k]:
            filters[k] = typed[k]
    for k in ("port", "src_port", "dst_port", "protocol"):
        if k in checked:
            filters[k] = checked[k]
    for k in INT_FILTERS:
        if typed[k]:
            filters[k] = parse_int_filter(k, typed[k])
    return {k: v for k, v in typed.items() if v}, filters


def parse_query(params: Mapping[str, str], now_ms: int) -> ExploreQuery:
    """The Explore view a URL names; raises FormError saying which parameter is wrong."""
    by = (params.get("by") or DEFAULT_DIMENSION).strip()
    if by not in DIMENSIONS:
        raise FormError(f"by {by[:40]!r} is not a dimension: {', '.join(DIMENSIONS)}")
    metric = (params.get("metric") or DEFAULT_METRIC).strip()
    if metric not in METRICS:
        raise FormError(f"metric {metric[:40]!r} is not one of {', '.join(METRICS)} (bits, packets or flows per second)")
    top_text = (params.get("top") or str(TOP_DEFAULT)).strip()
    if not is_digits(top_text) or len(top_text) > 4 or not TOP_MIN <= int(top_text) <= TOP_MAX:
        raise FormError(f"top {top_text[:20]!r} is not a number from {TOP_MIN} to {TOP_MAX}")
    try:
        trange = TimeRange.from_query(params, now_ms)
    except RangeError as e:
        raise FormError(str(e)) from None
    typed, filters = parse_filters(params, now_ms)
    sankey = parse_sankey(params)
    form = {"by": by, "metric": metric, "top": top_text, **typed,
            **({"sankey_from": sankey[0], "sankey_to": sankey[1]} if sankey else {})}
    return ExploreQuery(form, filters, by, metric, int(top_text), trange, sankey)


def parse_sankey(params: Mapping[str, str]) -> tuple[str, str] | None:
    """(sankey_from, sankey_to), two different SANKEY_DIMENSIONS, or None when neither is given."""
    picked = {name: (params.get(name) or "").strip() for name in ("sankey_from", "sankey_to")}
    if not any(picked.values()):
        return None
    for name, value in picked.items():
        if not value:
            other = "sankey_to" if name == "sankey_from" else "sankey_from"
            raise FormError(f"{name} is missing: a Sankey needs both sides ({other} is {picked[other][:40]!r})")
        if value not in SANKEY_DIMENSIONS:
            raise FormError(f"{name} {value[:40]!r} is not a dimension: {', '.join(SANKEY_DIMENSIONS)}")
    if picked["sankey_from"] == picked["sankey_to"]:
        raise FormError(f"sankey_to {picked['sankey_to']!r} is the same as sankey_from: pick two different dimensions")
    return picked["sankey_from"], picked["sankey_to"]


# ------------------------------------------------------------------ labels

def series_label(by: str, key: Any, flt: Mapping, names: NameBook, with_exporter: bool = True) -> str:
    """The text a series is shown with: names for exporters and interfaces (without the exporter's
    on that exporter's own page), else the op's key."""
    exporter = str(flt.get("exporter") or "")
    if by == "exporter" and exporter:
        return names.exporter_label(exporter)
    ifindex = flt.get("input_if") if by == "in_if" else flt.get("output_if") if by == "out_if" else None
    if ifindex is not None and exporter:
        label = names.interface_label(exporter, int(ifindex))
        return f"{names.exporter_label(exporter)} {label}" if with_exporter else label
    if by == "pair" and flt.get("src") and flt.get("dst"):
        return f"{flt['src']} \u2192 {flt['dst']}"
    value = flt.get(by)
    if isinstance(value, int) and not isinstance(value, bool):
        if by == "protocol":
            return fmt.proto(value)
        if by in ("port", "src_port", "dst_port"):
            return fmt.port_label(value)
        if by in ("src_as", "dst_as"):
            return f"AS{value}"
        if by == "dscp":
            return f"{value} ({DSCP_NAMES[value]})" if value in DSCP_NAMES else str(value)
    return fmt.xml_text(key)


def series_speed(by: str, flt: Mapping, names: NameBook) -> int:
    ifindex = flt.get("input_if") if by == "in_if" else flt.get("output_if") if by == "out_if" else None
    if ifindex is None or not flt.get("exporter"):
        return 0
    return names.speed_bps(str(flt["exporter"]), int(ifindex))


# ------------------------------------------------------------------ links

def flows_params(filters: Mapping[str, Any], trange: TimeRange) -> dict[str, str] | None:
    """The flow explorer's query for ``filters`` over the range; a source or destination port (the
    flow explorer filters ports on either side) becomes its port filter."""
    q = {}
    for k, v in filters.items():
        if k in ("src_port", "dst_port"):
            k = "port"
        if k not in FLOW_PAGE_FILTERS:
            return None
        q[k] = str(v)
    return {**q, **trange.query()}


def url(path: str, params: Mapping[str, str]) -> str:
    return f"{path}?{urlencode({k: fmt.xml_text(v) for k, v in params.items()})}"


# ------------------------------------------------------------------ the page

def stat_cells(sums: list[float], step_s: float | list[float], metric: str, speed_bps: int = 0,
               window_s: float | None = None) -> dict:
    _op_metric, factor, unit, _caption = METRICS[metric]
    s = series_stats(sums, step_s, factor, window_s)
    cells = {"total": fmt.human_bytes(s.total) if metric == "bps" else fmt.human_count(s.total),
             "total_exact": fmt.exact(round(s.total)), "total_raw": s.total,
             "average": fmt.human_rate(s.average, unit), "p95": fmt.human_rate(s.p95, unit),
             "maximum": fmt.human_rate(s.maximum, unit), "stats": s, "util": None, "speed_bps": speed_bps}
    if speed_bps and metric == "bps":
        util = [utilisation(v, speed_bps) for v in (s.average, s.p95, s.maximum)]
        cells["util"] = {"average": fmt.percent(util[0]), "p95": fmt.percent(util[1]), "maximum": fmt.percent(util[2]),
                         "high": util[2] >= UTILISATION_HIGH, "speed": fmt.human_rate(speed_bps, "bps")}
    return cells


def explore_view(q: ExploreQuery, reply: Mapping, names: NameBook,
                 href_of: Callable[[Mapping], str | None] | None = None, total_speed_bps: int = 0,
                 with_exporter: bool = True) -> dict:
    """The chart, the table rows and the totals of an explore reply. A series links to ``href_of(its
    filter)``, by default this view narrowed to it; ``total_speed_bps``: the utilisation of the
    total (an interface's page); ``with_exporter`` False: interfaces without their exporter's name."""
    _op_metric, factor, unit, caption = METRICS[q.metric]
    step_ms = int(reply.get("step_ms") or 60_000)
    step_s = step_ms / 1000
    times = [int(t) for t in reply.get("times") or []]
    n = len(times)
    base = q.params()
    since = int(reply.get("since") or q.range.since_ms)
    until = int(reply.get("until") or q.range.until_ms)
    # the average is over the time the steps cover within [since, until]; a step reaching past the
    # range (the first, or the last still filling) is rated over its part inside it
    window_s = (min(until, times[-1] + step_ms) - max(since, times[0])) / 1000 if times else None
    lengths = step_seconds(times, step_ms, since, until)
    layers, rows = [], []
    for i, s in enumerate(reply.get("series") or []):
        flt = s.get("filter") if isinstance(s.get("filter"), Mapping) else {}
        sums = _fit([float(v or 0) for v in s.get("values") or []], n)
        label = series_label(q.by, s.get("key", "?"), flt, names, with_exporter)
        own = (href_of(flt) if href_of else url("/explore", {**base, **{k: str(v) for k, v in flt.items()}})) if flt else None
        flows = flows_params(flt, q.range) if flt else None
        row = {"key": label, "colour": colour(i), "href": own,
               "flows_href": url("/flows", flows) if flows is not None else None, "filter": dict(flt),
               **stat_cells(sums, lengths, q.metric, series_speed(q.by, flt, names), window_s)}
        rows.append(row)
        layers.append(Layer(label, rates(sums, lengths, factor), row["colour"], own,
                            f"{label}: average {row['average']}, peak {row['maximum']}"))
    other_raw = reply.get("other") if isinstance(reply.get("other"), Mapping) else {}
    other_sums = _fit([float(v or 0) for v in other_raw.get("values") or []], n)
    other = {"key": "Other", "colour": OTHER_COLOUR, **stat_cells(other_sums, lengths, q.metric, 0, window_s)}
    if any(other_sums):
        layers.append(Layer("Other", rates(other_sums, lengths, factor), OTHER_COLOUR, None,
                            f"everything outside the top {q.top}: average {other['average']}"))
    all_sums = [sum(col) for col in zip(*([_fit([float(v or 0) for v in s.get("values") or []], n)
                                           for s in reply.get("series") or []] + [other_sums]))] if n else []
    total = {"key": "All traffic", **stat_cells(all_sums, lengths, q.metric, total_speed_bps, window_s)}
    chart = stacked_chart(times, step_ms, layers, unit, since, max(until, since + 1))
    return {"chart": chart, "rows": rows, "sankey": pair_sankey(q, rows) if q.by == "pair" else None,
            "sankey_caption": "", "sankey_error": "",  # a Sankey of two dimensions: sankeyview.py, explorepages.py
            "other": other if any(other_sums) else None, "total": total,
            "caption": caption, "by_label": DIMENSIONS[q.by], "step": fmt.human_duration(step_s),
            "source": str(reply.get("source") or ""), "approximate": bool(reply.get("approximate")),
            "totals": reply.get("totals") or {}}


def pair_sankey(q: ExploreQuery, rows: list[dict]):
    """Sources to destinations of a pair view; a node links to what it talks to (or hears from)."""
    pairs = [Pair(str(r["filter"]["src"]), str(r["filter"]["dst"]), r["stats"].total, r["colour"], r["href"],
                  f"{r['key']}: {r['total']}") for r in rows if r["filter"].get("src") and r["filter"].get("dst")]
    d = sankey(pairs)
    base = {k: v for k, v in q.params().items() if k != "by"}
    for n in d.sources:
        n.href = url("/explore", {**base, "by": "dst", "src": n.label})
    for n in d.targets:
        n.href = url("/explore", {**base, "by": "src", "dst": n.label})
    return d


def _fit(values: list[float], n: int) -> list[float]:
    """``values`` cut or zero-padded to ``n`` steps (a store of another version may send fewer)."""
    return values[:n] + [0.0] * max(0, n - len(values))


def csv_columns(metric: str) -> tuple[str, ...]:
    """total_bytes, average_bps, ... for bits; packets and flows likewise."""
    total = METRICS[metric][0]
    unit = {"bps": "bps", "pps": "pps", "fps": "flows_per_s"}[metric]
    return ("key", "filter", f"total_{total}", f"average_{unit}", f"p95_{unit}", f"max_{unit}", "utilisation_p95_pct")


def explore_csv(view: Mapping, q: ExploreQuery) -> str:
    """The Explore table as CSV: one row per series, then Other (key "Other", no filter); rates per
    second; ``filter`` is the series' flow filter as URL parameters."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(csv_columns(q.metric))
    for r in [*view["rows"], *([view["other"]] if view["other"] else [])]:
        s = r["stats"]
        util = utilisation(s.p95, r["speed_bps"]) if r.get("util") else None
        w.writerow((r["key"], urlencode({k: str(v) for k, v in (r.get("filter") or {}).items()}), f"{s.total:.0f}",
                    f"{s.average:.3f}", f"{s.p95:.3f}", f"{s.maximum:.3f}", "" if util is None else f"{util:.2f}"))
    return out.getvalue()
