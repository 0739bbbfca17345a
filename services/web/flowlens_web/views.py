"""Page contexts from store replies (pure: replies in, plain dicts for the templates out).

The store's replies are read tolerantly (missing keys show as '-') so a page still renders when a
store of another version leaves a figure out; the numbers are never invented.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from flowmodel.events import SEVERITIES, SEVERITY_RANK
from flowmodel.notes import SILENCE_MATCHES, acknowledged

from . import chart as charts
from . import formatters as fmt
from .timerange import TimeRange, url_time

DASHBOARD_WINDOW_MS = 10 * 60 * 1000  # the ring's default span (storage.ring_buffer_duration)
DASHBOARD_STEP_S = 10
PARTIAL_STEP_MS = 10_000  # a filling step shorter than this is left off the chart
DASHBOARD_RANGE = "10m"  # the dashboard's range when the URL names none
ADVISORY_FILTER_FIELDS = ("src", "dst", "addr", "port", "protocol", "exporter")


# ------------------------------------------------------------------ dashboard

def series_rates(reply: Mapping, since_ms: int, until_ms: int, step_s: float) -> tuple[list[int], list[float], list[float], list[float]]:
    """Per-second bps, pps and flows/s for every complete step in [since, until), zero-filled. A last
    step still filling is left out while short (10 s steps: its flows are still being exported),
    but a long step's filling part (at least PARTIAL_STEP_MS of a minute or hour step) is shown as
    its rate so far: leaving it out would hide up to an hour of a live range's newest traffic."""
    step_ms = int(reply.get("step_ms") or step_s * 1000)
    by_t: dict[int, tuple[float, float, float]] = {}
    for p in reply.get("points") or []:
        t = int(p[0]) // step_ms * step_ms
        b, pk, fl = (float(p[1]), float(p[2]), float(p[3]) if len(p) > 3 else 0.0)
        ob, op, of = by_t.get(t, (0.0, 0.0, 0.0))
        by_t[t] = (ob + b, op + pk, of + fl)
    times, bps, pps, fps = [], [], [], []
    secs = step_ms / 1000
    t = since_ms // step_ms * step_ms
    while t + step_ms <= until_ms:
        b, pk, fl = by_t.get(t, (0.0, 0.0, 0.0))
        times.append(t + step_ms // 2)
        bps.append(b * 8 / secs)
        pps.append(pk / secs)
        fps.append(fl / secs)
        t += step_ms
    elapsed_ms = until_ms - t
    if step_ms > PARTIAL_STEP_MS and elapsed_ms >= PARTIAL_STEP_MS:
        b, pk, fl = by_t.get(t, (0.0, 0.0, 0.0))
        times.append(t + elapsed_ms // 2)
        bps.append(b * 8000 / elapsed_ms)
        pps.append(pk * 1000 / elapsed_ms)
        fps.append(fl * 1000 / elapsed_ms)
    return times, bps, pps, fps


def _row_key(row: Any, by: str) -> Any:
    if isinstance(row, Mapping):
        for k in ("key", by, "name", "value"):
            if k in row:
                return row[k]
        return "?"
    return row[0]


def _row_metric(row: Any, metric: str) -> float:
    if isinstance(row, Mapping):
        return float(row.get(metric) or 0)
    idx = {"bytes": 1, "packets": 2, "flows": 3}[metric]
    return float(row[idx]) if len(row) > idx else 0.0


def key_text(key: Any, by: str) -> str:
    if by == "protocol":
        try:
            return fmt.proto(key)
        except (TypeError, ValueError):
            return str(key)
    if by in ("port", "src_port", "dst_port"):
        try:
            return fmt.port_label(key)
        except (TypeError, ValueError):
            return str(key)
    if isinstance(key, (list, tuple)):
        return " \u2192 ".join(str(k) for k in key)
    if isinstance(key, bytes) and len(key) == 16:
        from flowmodel import addr
        return addr.to_text(key)
    return str(key)


def top_rows(reply: Mapping, by: str, metric: str = "bytes") -> list[dict]:
    """Rows of a ``top`` reply with share of the window's total and a bar width (share of the top row)."""
    rows = list(reply.get("rows") or [])
    totals = reply.get("totals") or {}
    total = float(totals.get(metric) or 0) if isinstance(totals, Mapping) else 0.0
    values = [_row_metric(r, metric) for r in rows]
    if not total:
        total = sum(values)
    biggest = max(values) if values else 0.0
    out = []
    for r, v in zip(rows, values):
        key = _row_key(r, by)
        out.append({
            "key": key_text(key, by), "raw_key": key if isinstance(key, (str, int)) else None,
            "value": v, "human": fmt.human_bytes(v) if metric == "bytes" else fmt.human_count(v),
            "exact": fmt.exact(v), "share": fmt.percent(fmt.share(v, total)),
            "bar": round(fmt.share(v, biggest), 1),
            "packets": _row_metric(r, "packets") if metric != "packets" else v,
        })
    return out


def advisory_counts(counts: Mapping[str, int | str]) -> list[dict]:
    """Badges for the active advisories per severity, in severity order."""
    return [{"severity": s, "count": counts.get(s, 0), "css": s.lower()} for s in SEVERITIES]


def shown_of(shown: int, total, limit: int) -> str | None:
    """'showing 1,000 of 1,234' when the list stops short of what the store holds (``total`` from the
    store; an older store gives none, then a list that reached ``limit`` says so); None when complete."""
    if isinstance(total, int) and not isinstance(total, bool):
        return f"showing {shown:,} of {total:,}" if total > shown else None
    if shown >= limit:
        return f"showing the first {shown:,}; there may be more"
    return None


def exporter_health(exporters_reply: Mapping, fps: list[float], step_text: str = "10 s") -> dict:
    exps = list(exporters_reply.get("exporters") or [])
    lost = sum(int(e.get("sequence_lost") or 0) for e in exps)
    errors = 0
    for e in exps:
        de = e.get("decode_errors") or {}
        errors += sum(int(v or 0) for v in de.values()) if isinstance(de, Mapping) else int(de or 0)
    kernel = 0
    for c in exporters_reply.get("collectors") or []:
        for s in (c.get("socket") or []) if isinstance(c, Mapping) else []:
            if isinstance(s, Mapping):
                kernel += int(s.get("kernel_drops") or 0)
    names = {(e.get("exporter"), e.get("observation_domain")) for e in exps}
    return {"flows_per_s": fmt.human_rate(fps[-1], "flows/s") if fps else "-",
            "flows_per_s_exact": fmt.exact(round(fps[-1], 1)) if fps else "",
            "step_text": step_text, "exporters": len({n[0] for n in names}), "domains": len(names),
            "sequence_lost": lost, "decode_errors": errors, "kernel_drops": kernel,
            "losses": lost + errors + kernel}


def uses_overview(tr: TimeRange, ring_ms: int = DASHBOARD_WINDOW_MS) -> bool:
    """A live range the ring can hold (storage.ring_buffer_duration, 10 min by default) is one
    overview read of it (spread over each flow's lifetime, 10 s steps); a longer or past one is
    series + top, which the store answers from its rollups (the overview would read raw flows)."""
    return bool(tr.preset) and tr.span_ms <= ring_ms


def dashboard(tr: TimeRange, series: Mapping, top_src: Mapping, top_dst: Mapping, top_proto: Mapping,
              advisory_severity_counts: Mapping[str, int], exporters: Mapping, refresh_s: int,
              step_s: float = DASHBOARD_STEP_S, since_ms: int | None = None, clamped: bool = False,
              spread: bool = True) -> dict:
    """``since_ms``: where the store's answer starts (later than the range's start when ``clamped``:
    the store's memory holds less than that at the current flow rate). ``spread``: the series spreads
    each flow over its lifetime (the overview) rather than counting it where it ended."""
    now_ms, until = tr.now_ms, tr.until_ms
    since = tr.since_ms if since_ms is None else max(int(since_ms), tr.since_ms)
    times, bps, pps, fps = series_rates(series, since, until, step_s)
    step_text = fmt.human_duration(step_s)
    return {
        "title": "Dashboard", "nav": "dashboard", "refresh": refresh_s if tr.preset else 0,
        "range_bar": tr.bar("/"), "range_query": tr.query(),
        "window_text": (tr.label if not clamped
                        else f"the last {fmt.human_duration(round((until - since) / 1000))}"),
        "clamped": clamped, "spread": spread, "step_text": step_text,
        "now": fmt.iso_time(now_ms),
        "bps_chart": charts.line_chart(times, bps, "bps", since, until),
        "pps_chart": charts.line_chart(times, pps, "pps", since, until),
        "top_src": top_rows(top_src, "src"), "top_dst": top_rows(top_dst, "dst"),
        "protocols": top_rows(top_proto, "protocol"),
        "advisory_counts": advisory_counts(advisory_severity_counts),
        "health": exporter_health(exporters, fps, step_text),
    }


# ------------------------------------------------------------------ advisories

def advisory_rows(advisories: Iterable[Mapping], now_ms: int, acks: Mapping[str, Mapping] | None = None) -> list[dict]:
    """Advisories sorted by severity (most severe first), then most recently seen first; ``acks``
    (key -> acknowledgement, flowmodel.notes) marks the episodes acknowledged."""
    items = sorted(advisories, key=lambda a: (SEVERITY_RANK.get(a.get("severity"), len(SEVERITIES)),
                                               -int(a.get("last_seen") or 0)))
    out = []
    for a in items:
        flt = a.get("filter") or {}
        out.append({
            "key": a.get("key", ""), "severity": a.get("severity", "INFO"),
            "css": str(a.get("severity", "info")).lower(), "state": a.get("state", ""),
            "analyzer": a.get("analyzer", ""), "subject": a.get("subject", ""),
            "title": a.get("title") or a.get("key", ""), "description": a.get("description", ""),
            "action": a.get("action", ""),
            "first_seen": fmt.human_time(a.get("first_seen"), now_ms), "first_exact": fmt.iso_time(a.get("first_seen")),
            "last_seen": fmt.human_time(a.get("last_seen"), now_ms), "last_exact": fmt.iso_time(a.get("last_seen")),
            "last_ago": fmt.ago(a.get("last_seen"), now_ms),
            "flows_query": advisory_flows_query(flt) if isinstance(flt, Mapping) else None,
            "episode": a.get("first_seen"), "ack": _ack_row((acks or {}).get(a.get("key")), a, now_ms),
        })
    return out


def _ack_row(ack: Mapping | None, a: Mapping, now_ms: int) -> dict | None:
    if not acknowledged(ack, a):
        return None
    return {"by": ack.get("by") or "?", "at": fmt.human_time(ack.get("created_at"), now_ms),
            "at_exact": fmt.iso_time(ack.get("created_at")), "comment": ack.get("comment") or ""}


def silence_rows(silences: Iterable[Mapping], now_ms: int) -> list[dict]:
    """Silences in force, soonest to end first: what they match, who set them, until when, why."""
    out = []
    for s in sorted(silences, key=lambda s: int(s.get("expires_at") or 0)):
        out.append({"id": s.get("id", ""), "by": s.get("by") or "?", "comment": s.get("comment") or "",
                    "matches": ", ".join(f"{k} {s[k]}" for k in SILENCE_MATCHES if s.get(k)),
                    "until": fmt.human_time(s.get("expires_at"), now_ms), "until_exact": fmt.iso_time(s.get("expires_at")),
                    "set": fmt.human_time(s.get("created_at"), now_ms)})
    return out


def advisory_flows_query(flt: Mapping) -> dict | None:
    """The flow explorer's query parameters for an advisory's filter (times as a from/to range)."""
    q = {k: str(flt[k]) for k in ADVISORY_FILTER_FIELDS if flt.get(k) not in (None, "")}
    for k in ("src_port", "dst_port"):
        if flt.get(k) not in (None, "") and "port" not in q:
            q["port"] = str(flt[k])
    if flt.get("since") not in (None, ""):
        q["from"] = _when_text(flt["since"])
        if flt.get("until") not in (None, ""):
            q["to"] = _when_text(flt["until"], up=True)
    if not q:
        return None
    return q


def _when_text(value, up: bool = False) -> str:
    """A time for a link, to the second (rounded ``up`` for an end, so the link's range holds it)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return url_time(-(-int(value) // 1000) * 1000 if up else int(value))
    return str(value)


# ------------------------------------------------------------------ about

def process_row(name: str, proc: Mapping, now_ms: int) -> dict:
    started = proc.get("started_at")
    up_s = (now_ms - int(started)) / 1000 if started else None
    cpu = proc.get("cpu_seconds")
    cpu_pct = (100.0 * float(cpu) / up_s) if (cpu is not None and up_s and up_s > 0) else None
    return {"name": name, "pid": proc.get("pid", "-"),
            "rss": fmt.human_bytes(proc.get("rss_bytes")), "rss_exact": fmt.exact(proc.get("rss_bytes")),
            "cpu": "-" if cpu is None else f"{float(cpu):.1f} s",
            "cpu_pct": "-" if cpu_pct is None else f"{cpu_pct:.1f} %",
            "threads": proc.get("threads", "-"), "uptime": fmt.human_duration(up_s) if up_s is not None else "-"}


def service_processes(status: Mapping) -> list[tuple[str, Mapping]]:
    """(name, process map) pairs from the status reply's ``services`` (a map or a list)."""
    services = status.get("services") or {}
    out: list[tuple[str, Mapping]] = []
    if isinstance(services, Mapping):
        for name, v in services.items():
            if isinstance(v, Mapping):
                out.append((str(name), v.get("process") if isinstance(v.get("process"), Mapping) else v))
    elif isinstance(services, list):
        for v in services:
            if isinstance(v, Mapping):
                name = v.get("source") or v.get("name") or v.get("service") or v.get("collector") or v.get("kind") or "?"
                out.append((str(name), v.get("process") if isinstance(v.get("process"), Mapping) else v))
    return out


def scalar_items(d: Mapping, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, human, exact) for every scalar in a nested status map, for a plain key/value table."""
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if k in ("ok", "services") and not prefix:
            continue
        if isinstance(v, Mapping):
            out.extend(scalar_items(v, key + "."))
        elif isinstance(v, (list, tuple)):
            continue
        elif v is None:
            out.append((key, "-", ""))
        elif isinstance(v, bool):
            out.append((key, "yes" if v else "no", ""))
        elif isinstance(v, str):
            out.append((key, v, ""))
        elif isinstance(v, (int, float)):
            out.append((key, human_number(key, v), fmt.exact(v)))
    return out


def human_number(key: str, v: float) -> str:
    """A status figure in the unit its key names: *_time, *_at, last_seen and *time_end as times (ms
    since epoch), *_per_s as rates, *_s and *seconds as durations, sizes as bytes."""
    k = key.lower().rsplit(".", 1)[-1]
    if k.endswith(("_time", "_at", "last_seen", "time_end", "time_start")):
        return fmt.iso_time(v) if v > 0 else "-"
    if k.endswith("_per_s"):
        return f"{fmt.human_count(v)}/s"
    if k.endswith(("_s", "seconds")) or k == "uptime":
        return fmt.human_duration(v)
    if k.endswith("_ms"):  # a time when it is a plausible epoch in ms, else a duration
        return fmt.iso_time(v) if v > 10**11 else fmt.human_duration(v / 1000)
    if k.endswith(("bytes", "_size")):
        return fmt.human_bytes(v)
    if k.endswith(("ratio", "fraction")):
        return fmt.percent(v * 100) if v <= 1 else fmt.human_count(v)
    if isinstance(v, float) and v != int(v):
        return f"{v:,.2f}"
    return fmt.human_count(v) if abs(v) >= 10000 else str(int(v))
