"""The daily report ("what happened yesterday"), assembled from the store's query ops alone, so the
web's /report page and the notifier's morning email show the same thing without importing each
other. ``build(query, day, ...)`` takes a query function (``StoreClient.request`` fits: op name and
arguments in, reply map out) and returns a plain dict; the day parsing and the text helpers around
it are pure.

A day is midnight to midnight at a fixed offset from UTC (``report.utc_offset``), compared with the
same day a week before. Traffic is scaled by the sampling rate (what the wire carried). A part the
store refuses (an old day past a table's retention, say) is left empty and its reason kept in
``errors``; the rest of the report is still built.
"""
from __future__ import annotations

import datetime as _dt
import re
from typing import Any, Callable

from .client import StoreError

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
HOUR_MS = 3_600_000
TOP_DIMENSIONS = ("src", "dst", "port", "protocol")   # top talkers, then top services
SEVERITY_ORDER = ("CRITICAL", "WARNING", "INFO")
ADVISORY_TITLES = 5                                   # the top few advisories by title in each list

Query = Callable[..., dict]


class ReportError(ValueError):
    """A bad day or setting; the message is the plain-language reason (a page's 400)."""


# ---------------------------------------------------------------- days and offsets

_OFFSET_RE = re.compile(r"^(?:UTC|Z)?\s*([+-])(\d{1,2})(?::?(\d{2}))?$", re.I)
_SEND_AT_RE = re.compile(r"^(\d{1,2}):(\d{2})$")


def parse_utc_offset(value: Any) -> int:
    """'+02:00', '-05:30', 'UTC+1', 'UTC' or 'Z' -> minutes east of UTC (whole quarter hours, -14 h..+14 h)."""
    text = str(value).strip()
    if text.upper() in ("", "UTC", "Z", "0", "+00:00"):
        return 0
    m = _OFFSET_RE.match(text)
    if not m:
        raise ValueError(f"{value!r} is not an offset from UTC like +02:00, -05:30 or UTC")
    minutes = int(m.group(2)) * 60 + int(m.group(3) or 0)
    if minutes > 14 * 60 or minutes % 15:
        raise ValueError(f"{value!r} is not an offset from UTC within -14:00..+14:00 in quarter hours")
    return -minutes if m.group(1) == "-" else minutes


def offset_text(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def parse_send_at(value: Any) -> int:
    """'06:00' -> minutes after midnight (at report.utc_offset)."""
    m = _SEND_AT_RE.match(str(value).strip())
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ValueError(f"{value!r} is not a time of day like 06:00 (24-hour HH:MM)")
    return int(m.group(1)) * 60 + int(m.group(2))


def day_start_ms(day: _dt.date, offset_min: int) -> int:
    """Midnight starting ``day`` at the offset, as ms since the epoch."""
    midnight_utc = _dt.datetime(day.year, day.month, day.day, tzinfo=_dt.timezone.utc)
    return int(midnight_utc.timestamp() * 1000) - offset_min * 60_000


def local_day(ms: int, offset_min: int) -> _dt.date:
    """The day (at the offset) that ``ms`` falls in."""
    return _dt.datetime.fromtimestamp((ms + offset_min * 60_000) / 1000, _dt.timezone.utc).date()


def parse_day(text: str | None, now_ms: int, offset_min: int, retention_s: float) -> _dt.date:
    """The day a user asks for: 'YYYY-MM-DD', or yesterday when empty. A day not yet begun, or one
    that begins before the hourly rollups' retention (what history is kept for), is a ReportError."""
    today = local_day(now_ms, offset_min)
    if text in (None, ""):
        return today - _dt.timedelta(days=1)
    try:
        day = _dt.date.fromisoformat(str(text).strip())
    except ValueError:
        raise ReportError(f"day {str(text)[:40]!r} is not a date like {today.isoformat()} (YYYY-MM-DD)") from None
    if day > today:
        raise ReportError(f"day {day.isoformat()} has not begun yet (today is {today.isoformat()}, "
                          f"UTC{offset_text(offset_min)})")
    oldest = local_day(now_ms - int(retention_s * 1000), offset_min) + _dt.timedelta(days=1)
    if day < oldest:
        raise ReportError(f"day {day.isoformat()} is older than the history kept (storage.rollup_hourly_retention "
                          f"= {retention_s / 86400:g} days): the oldest whole day is {oldest.isoformat()}")
    return day


# ---------------------------------------------------------------- assembly

def change_pct(now: float, before: float) -> float | None:
    """Percentage change from ``before`` to ``now``; None when there was nothing before and is now
    (new traffic), 0 when both days had nothing."""
    if not before:
        return 0.0 if not now else None
    return (now - before) * 100.0 / before


def _series_step_s(offset_min: int) -> int:
    # an hour when the day starts on an hour (every rollup tier answers it), else a quarter hour
    return 3600 if offset_min % 60 == 0 else 900


def _totals_and_profile(query: Query, since: int, until: int, step_s: int) -> tuple[dict, list[int], list[int]]:
    reply = query("series", step=step_s, scaled=True, since=since, until=until)
    points = [p for p in reply.get("points") or [] if since <= int(p[0]) < until]
    totals = {"bytes": sum(int(p[1]) for p in points), "packets": sum(int(p[2]) for p in points),
              "flows": sum(int(p[3]) for p in points)}
    return totals, [int(p[0]) for p in points], [int(p[1]) for p in points]


def _top(query: Query, by: str, since: int, until: int, limit: int, total_bytes: int) -> dict:
    reply = query("top", by=by, metric="bytes", limit=limit, scaled=True, since=since, until=until)
    rows = [{"key": str(r.get("key")), "bytes": int(r.get("bytes", 0)), "packets": int(r.get("packets", 0)),
             "flows": int(r.get("flows", 0)),
             "share_pct": int(r.get("bytes", 0)) * 100.0 / total_bytes if total_bytes else 0.0}
            for r in reply.get("rows") or []]
    return {"rows": rows, "approximate": bool(reply.get("approximate")), "source": reply.get("source")}


def _advisory_part(rows: list[dict], keep: Callable[[dict], bool]) -> dict:
    chosen = [a for a in rows if keep(a)]
    counts = {sev: 0 for sev in SEVERITY_ORDER}
    titles: dict[tuple[str, str], dict] = {}
    for a in chosen:
        sev = str(a.get("severity") or "INFO")
        counts[sev] = counts.get(sev, 0) + 1
        t = titles.setdefault((sev, str(a.get("title") or a.get("key") or "")),
                              {"severity": sev, "title": str(a.get("title") or a.get("key") or ""), "count": 0,
                               "subjects": []})
        t["count"] += 1
        if len(t["subjects"]) < 3 and a.get("subject"):
            t["subjects"].append(str(a["subject"]))
    rank = {s: i for i, s in enumerate(SEVERITY_ORDER)}
    top = sorted(titles.values(), key=lambda t: (rank.get(t["severity"], 9), -t["count"], t["title"]))
    return {"total": len(chosen), "counts": counts, "top": top[:ADVISORY_TITLES]}


def _advisories(query: Query, since: int, until: int, most: int) -> dict:
    """Raised (an episode that began in the day) and resolved (one that ended in it). The store keeps
    each key's latest episode, so an advisory raised again since then shows in its new episode only."""
    reply = query("advisories", since=since, until=until, include_resolved=True, limit=most)
    rows = list(reply.get("advisories") or [])
    raised = _advisory_part(rows, lambda a: since <= int(a.get("first_seen") or 0) < until)
    resolved = _advisory_part(rows, lambda a: a.get("state") == "resolved" and
                              since <= int(a.get("last_seen") or 0) < until)
    return {"raised": raised, "resolved": resolved, "read": len(rows),
            "complete": int(reply.get("total") or 0) <= len(rows)}


def _exporter_hours(query: Query, since: int, until: int) -> dict[str, dict]:
    """exporter -> {bytes, flows, last_ms (end of its last hour with flows)} from the rollups."""
    reply = query("rollups", kind="exporter", since=since, until=until, step=3600, scaled=True)
    rows = reply.get("rows") or {}
    out: dict[str, dict] = {}
    for t, key, b, n in zip(rows.get("minute", []), rows.get("key", []), rows.get("bytes", []), rows.get("flows", [])):
        if not since <= int(t) < until:
            continue
        e = out.setdefault(str(key), {"bytes": 0, "flows": 0, "last_ms": 0})
        e["bytes"] += int(b)
        e["flows"] += int(n)
        e["last_ms"] = max(e["last_ms"], min(until, int(t) + HOUR_MS))
    return out


def _exporters(query: Query, since: int, until: int, now_ms: int, errors: dict) -> dict:
    """Exporters that stopped (their last flows fell in the day: from the collectors' table for the
    current run, and from the hourly rollups for any day, including those silent all day that sent
    the week before) and those that lost packets (the collectors' sequence and decode counters,
    counted since each exporter was first seen by its collector)."""
    hours, week = {}, {}
    try:
        hours = _exporter_hours(query, since, until)
        week = _exporter_hours(query, since - WEEK_MS, until - WEEK_MS)
    except StoreError as e:  # an error reply (the store is down: raised); the rest of the report stands
        errors["exporter rollups"] = str(e)
    stopped: dict[str, dict] = {}
    for name, e in hours.items():
        if e["last_ms"] < until - HOUR_MS and until <= now_ms:
            stopped[name] = {"exporter": name, "last_ms": e["last_ms"], "how": "no flows after this hour"}
    for name in week:
        if name not in hours and until <= now_ms:
            stopped[name] = {"exporter": name, "last_ms": None, "how": "silent all day (sent a week before)"}
    lost = []
    reply = query("exporters")
    for row in reply.get("exporters") or []:
        name = str(row.get("exporter", ""))
        last = max(int(row.get("last_seen") or 0), int(row.get("store_last_seen") or 0))
        if since <= last < until and name not in stopped:
            stopped[name] = {"exporter": name, "last_ms": last, "how": "last seen by the collector"}
        decode = sum(int(v) for v in (row.get("decode_errors") or {}).values())
        seq = int(row.get("sequence_lost") or 0)
        first = row.get("first_seen")
        if (seq or decode) and (first is None or int(first) < until):
            lost.append({"exporter": name, "observation_domain": row.get("observation_domain"),
                         "sequence_lost": seq, "decode_errors": decode, "since_ms": first})
    active = [{"exporter": k, **v} for k, v in sorted(hours.items(), key=lambda kv: -kv[1]["bytes"])]
    names = _exporter_names(query)
    out = {"active": active, "stopped": sorted(stopped.values(), key=lambda s: s["exporter"]),
           "lost": sorted(lost, key=lambda r: -(r["sequence_lost"] + r["decode_errors"]))}
    for rows in out.values():
        for row in rows:
            row["label"] = f"{names[row['exporter']]} ({row['exporter']})" if names.get(row["exporter"]) else row["exporter"]
    return out


def _exporter_names(query: Query) -> dict[str, str]:
    """address -> its name from the store's names op (config name, else reverse DNS); none from a
    store without the op."""
    try:
        reply = query("names")
    except StoreError:
        return {}
    return {str(e.get("exporter")): str(e.get("name") or e.get("dns") or "") for e in reply.get("exporters") or []}


def build(query: Query, day: _dt.date, offset_min: int = 0, top_n: int = 10, advisories_max: int = 1000,
          now_ms: int | None = None) -> dict:
    """The report of ``day`` as a plain dict (see the module docstring); ``query(op, **args)`` is the
    store's query protocol and raises StoreError on an error reply (that part is left empty, its reason
    in ``errors``) or StoreUnavailable (raised: no report without a store)."""
    import time

    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    since = day_start_ms(day, offset_min)
    until = since + DAY_MS
    step_s = _series_step_s(offset_min)
    errors: dict[str, str] = {}
    report: dict[str, Any] = {
        "day": day.isoformat(), "weekday": day.strftime("%A"), "utc_offset": offset_text(offset_min),
        "since": since, "until": until, "complete": until <= now_ms,
        "compare_day": (day - _dt.timedelta(days=7)).isoformat(), "errors": errors}
    zero = {"bytes": 0, "packets": 0, "flows": 0}
    try:
        totals, times, profile = _totals_and_profile(query, since, until, step_s)
    except StoreError as e:
        errors["totals"] = str(e)
        totals, times, profile = dict(zero), [], []
    try:
        previous, _t, previous_profile = _totals_and_profile(query, since - WEEK_MS, until - WEEK_MS, step_s)
    except StoreError as e:
        errors["last week"] = str(e)
        previous, previous_profile = dict(zero), []
    report["totals"], report["previous"] = totals, previous
    report["change_pct"] = {k: change_pct(totals[k], previous[k]) for k in zero}
    report["profile"] = {"step_ms": step_s * 1000, "times": times, "bytes": profile, "previous_bytes": previous_profile}
    report["top"] = {}
    for by in TOP_DIMENSIONS:
        try:
            report["top"][by] = _top(query, by, since, until, top_n, totals["bytes"])
        except StoreError as e:
            errors[f"top {by}"] = str(e)
            report["top"][by] = {"rows": [], "approximate": False, "source": None}
    try:
        report["advisories"] = _advisories(query, since, until, advisories_max)
    except StoreError as e:
        errors["advisories"] = str(e)
        empty = {"total": 0, "counts": {s: 0 for s in SEVERITY_ORDER}, "top": []}
        report["advisories"] = {"raised": empty, "resolved": empty, "read": 0, "complete": True}
    try:
        report["exporters"] = _exporters(query, since, until, now_ms, errors)
    except StoreError as e:
        errors["exporters"] = str(e)
        report["exporters"] = {"active": [], "stopped": [], "lost": []}
    return report


# ---------------------------------------------------------------- text (the email; a terminal)

def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} PB"


def human_count(n: float) -> str:
    for unit in ("", " k", " M", " G"):
        if abs(n) < 1000 or unit == " G":
            return f"{n:.0f}{unit}" if not unit else f"{n:.1f}{unit}"
        n /= 1000.0
    return f"{n:.1f} G"


def change_text(pct: float | None) -> str:
    """'+12.5 %', '-3.0 %', or 'new' when last week had nothing."""
    return "new" if pct is None else f"{pct:+.1f} %"


def subject(r: dict) -> str:
    adv = r["advisories"]["raised"]
    return (f"FlowLens daily report {r['day']}: {human_bytes(r['totals']['bytes'])} "
            f"({change_text(r['change_pct']['bytes'])} on {r['compare_day']}), {adv['total']} advisories raised")


def text(r: dict, link: str | None = None) -> str:
    """The report as plain text (the notifier's email body)."""
    t, p, c = r["totals"], r["previous"], r["change_pct"]
    lines = [f"What happened on {r['weekday']} {r['day']} (UTC{r['utc_offset']})"
             + ("" if r["complete"] else ", so far"), ""]
    if link:
        lines += [f"The report page: {link}", ""]
    lines.append(f"Traffic against {r['compare_day']} (scaled by sampling):")
    lines.append(f"  bytes    {human_bytes(t['bytes']):>10}  was {human_bytes(p['bytes']):>10}  {change_text(c['bytes'])}")
    lines.append(f"  packets  {human_count(t['packets']):>10}  was {human_count(p['packets']):>10}  {change_text(c['packets'])}")
    lines.append(f"  flows    {human_count(t['flows']):>10}  was {human_count(p['flows']):>10}  {change_text(c['flows'])}")
    for by, heading in (("src", "Top sources"), ("dst", "Top destinations"), ("port", "Top services (port)"),
                        ("protocol", "Top protocols")):
        rows = r["top"][by]["rows"]
        lines += ["", f"{heading}:"]
        lines += [f"  {row['key']:<40} {human_bytes(row['bytes']):>10} {row['share_pct']:5.1f} %" for row in rows] \
            or ["  none"]
    adv = r["advisories"]
    for part in ("raised", "resolved"):
        a = adv[part]
        counts = ", ".join(f"{n} {s}" for s, n in a["counts"].items() if n) or "none"
        lines += ["", f"Advisories {part}: {a['total']} ({counts})"]
        lines += [f"  {t['severity']:<8} {t['title']}" + (f" (x{t['count']})" if t["count"] > 1 else "")
                  for t in a["top"]]
    if not adv["complete"]:
        lines.append(f"  (from the first {adv['read']} advisories the store holds for the day)")
    ex = r["exporters"]
    lines += ["", "Exporters that stopped:"]
    lines += [f"  {s['label']}: {s['how']}" + (f" ({_clock(s['last_ms'], r)})" if s["last_ms"] else "")
              for s in ex["stopped"]] or ["  none"]
    lines += ["", "Exporters that lost packets (counted since the collector first saw them):"]
    lines += [f"  {x['label']}: {x['sequence_lost']} export packets lost, {x['decode_errors']} decode errors"
              for x in ex["lost"]] or ["  none"]
    if r["errors"]:
        lines += ["", "Parts the store could not answer:"]
        lines += [f"  {k}: {v}" for k, v in r["errors"].items()]
    return "\n".join(lines) + "\n"


def _clock(ms: int, r: dict) -> str:
    offset = parse_utc_offset(r["utc_offset"])
    t = _dt.datetime.fromtimestamp((ms + offset * 60_000) / 1000, _dt.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M") + f" UTC{r['utc_offset']}"
