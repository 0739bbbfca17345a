"""The daily report page, /report?day=YYYY-MM-DD (default yesterday): what flowmodel.report assembles
from the store's query ops, as XHTML with an hourly bar chart (inline SVG) against the same day a
week before. A malformed day, one not yet begun, or one older than the hourly rollups keep is a 400
that says why. The page's queries run as one turn on the history lane.
"""
from __future__ import annotations

import datetime as _dt
from typing import Callable
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from flowmodel import report, timefmt
from flowmodel.report import ReportError

from . import formatters as fmt
from .asgi import App
from .chart import nice_ceiling
from .storegate import HEAVY

GET = ["GET", "HEAD"]
TOP_SECTIONS = (("src", "Top sources", "Source", "src"), ("dst", "Top destinations", "Destination", "dst"),
                ("port", "Top services (port)", "Port", "port"), ("protocol", "Top protocols", "Protocol", "protocol"))
CHART_W, CHART_H, CHART_LEFT, CHART_BOTTOM, CHART_TOP = 960, 220, 64, 24, 10


def add_report_routes(app: App, cfg, lanes, page: Callable[..., Response], now_ms: Callable[[], int]) -> None:
    offset = report.parse_utc_offset(cfg["report.utc_offset"])
    retention_s = cfg["storage.rollup_hourly_retention"]
    top_n, advisories_max = cfg["report.top_n"], cfg["report.advisories_max"]

    @app.api_route("/report", methods=GET)
    async def daily_report(request: Request):
        now = now_ms()
        asked = request.query_params.get("day")
        base = {"title": "Daily report", "nav": "report", "error": None, "r": None,
                "day_value": (asked or "")[:40], "max_day": report.local_day(now, offset).isoformat()}
        try:
            day = report.parse_day(asked, now, offset, retention_s)
        except ReportError as e:
            return page("report.xhtml", 400, **{**base, "error": str(e)})

        def query(op: str, **args) -> dict:
            return lanes.gate.call(lambda c: c.request(op, **args), lane=HEAVY)

        r = await lanes.run(request, HEAVY, lambda: report.build(query, day, offset, top_n, advisories_max, now))
        return page("report.xhtml", **{**base, **view(r, day, now, offset, retention_s), "day_value": day.isoformat()})


def view(r: dict, day: _dt.date, now: int, offset: int, retention_s: float) -> dict:
    """The template's context for the report ``r`` (flowmodel.report.build)."""
    window = {"range": "custom", "since": timefmt.iso(r["since"]), "until": timefmt.iso(r["until"])}
    totals = []
    for key, label, human in (("bytes", "Bytes", fmt.human_bytes), ("packets", "Packets", fmt.human_count),
                              ("flows", "Flows", fmt.human_count)):
        pct = r["change_pct"][key]
        totals.append({"id": key, "label": label, "value": human(r["totals"][key]), "exact": fmt.exact(r["totals"][key]),
                       "previous": human(r["previous"][key]), "previous_exact": fmt.exact(r["previous"][key]),
                       "change": report.change_text(pct),
                       "css": "" if pct is None or abs(pct) < 0.05 else ("up" if pct > 0 else "down")})
    tops = []
    for by, heading, key_label, flt in TOP_SECTIONS:
        part = r["top"][by]
        biggest = max((row["bytes"] for row in part["rows"]), default=0)
        rows = [{"key": _key_label(row["key"], by), "human": fmt.human_bytes(row["bytes"]),
                 "exact": fmt.exact(row["bytes"]), "share": f"{row['share_pct']:.1f} %",
                 "bar": round(fmt.share(row["bytes"], biggest), 1),
                 "href": _flows_href(flt, row["key"], by, window)} for row in part["rows"]]
        tops.append({"id": by, "heading": heading, "key_label": key_label, "rows": rows,
                     "approximate": part["approximate"]})
    oldest = report.local_day(now - int(retention_s * 1000), offset) + _dt.timedelta(days=1)
    today = report.local_day(now, offset)
    prev_day, next_day = day - _dt.timedelta(days=1), day + _dt.timedelta(days=1)
    ex = r["exporters"]
    return {"r": r, "totals": totals, "tops": tops, "chart": hourly_chart(r, offset),
            "advisories": r["advisories"],
            "stopped": [{**s, "when": _clock(s["last_ms"], offset) if s["last_ms"] else ""} for s in ex["stopped"]],
            "lost": [{**x, "since": _clock(x["since_ms"], offset) if x.get("since_ms") else ""} for x in ex["lost"]],
            "active": [{**a, "human": fmt.human_bytes(a["bytes"]), "flows_human": fmt.human_count(a["flows"])}
                       for a in ex["active"]],
            "prev_day": prev_day.isoformat() if prev_day >= oldest else None,
            "next_day": next_day.isoformat() if next_day <= today else None,
            "compare_href": f"/report?day={r['compare_day']}" if day - _dt.timedelta(days=7) >= oldest else None,
            "advisories_href": "/advisories?state=all"}


def _key_label(key: str, by: str) -> str:
    if by == "port" and key.isdigit():
        return fmt.port_label(int(key))
    return key


def _flows_href(flt: str, key: str, by: str, window: dict) -> str | None:
    if by in ("src", "dst") and key and key != "other":
        return "/flows?" + urlencode({flt: key, **window})
    if by == "port" and key.isdigit():
        return "/flows?" + urlencode({"port": key, **window})
    if by == "protocol" and key:
        return "/flows?" + urlencode({"protocol": key, **window})
    return None


def _clock(ms: int, offset: int) -> str:
    t = _dt.datetime.fromtimestamp((ms + offset * 60_000) / 1000, _dt.timezone.utc)
    return t.strftime("%H:%M") if ms else ""


def hourly_chart(r: dict, offset: int) -> dict:
    """Bars of the day's bytes per step and a line of the same day a week before (inline SVG)."""
    prof = r["profile"]
    step = prof["step_ms"]
    n = max(1, report.DAY_MS // step)
    now_b = _by_slot(prof["times"], prof["bytes"], r["since"], step, n)
    before = _by_slot([r["since"] + i * step for i in range(len(prof["previous_bytes"]))], prof["previous_bytes"],
                      r["since"], step, n)
    top = nice_ceiling(max(now_b + before + [0]) * 8 / (step / 1000))  # bits per second
    pw, ph = CHART_W - CHART_LEFT - 12, CHART_H - CHART_TOP - CHART_BOTTOM
    slot = pw / n

    def y(v_bytes: float) -> float:
        return CHART_TOP + ph - ph * (v_bytes * 8 / (step / 1000)) / top

    bars = [{"x": round(CHART_LEFT + i * slot + slot * 0.1, 1), "y": round(y(b), 1), "w": round(slot * 0.8, 1),
             "h": round(CHART_TOP + ph - y(b), 1),
             "title": f"{_clock(r['since'] + i * step, offset)}: {fmt.human_rate(b * 8 / (step / 1000), 'bps')}"}
            for i, b in enumerate(now_b)]
    line = " ".join(f"{CHART_LEFT + (i + 0.5) * slot:.1f},{y(b):.1f}" for i, b in enumerate(before))
    y_ticks = [(round(CHART_TOP + ph - ph * k / 4, 1), fmt.human_rate(top * k / 4, "bps")) for k in range(5)]
    x_ticks = [(round(CHART_LEFT + (h * 3_600_000 / step) * slot, 1), f"{h:02d}:00") for h in range(0, 25, 3)]
    return {"width": CHART_W, "height": CHART_H, "left": CHART_LEFT, "right": CHART_LEFT + pw, "top": CHART_TOP,
            "bottom": CHART_TOP + ph, "bars": bars, "line": line if any(before) else "", "y_ticks": y_ticks,
            "x_ticks": x_ticks, "empty": not any(now_b)}


def _by_slot(times: list[int], values: list[int], since: int, step: int, n: int) -> list[int]:
    out = [0] * n
    for t, v in zip(times, values):
        i = (int(t) - since) // step
        if 0 <= i < n:
            out[i] += int(v)
    return out
