"""flowmodel.report: the daily report's days, offsets and assembly, over a query function that
answers from a small table of flows (the store's ops' reply shapes, computed here)."""
from __future__ import annotations

import datetime as dt

import pytest

from flowmodel import report
from flowmodel.client import StoreError
from flowmodel.report import DAY_MS, WEEK_MS, ReportError

DAY = dt.date(2026, 11, 30)
T0 = report.day_start_ms(DAY, 0)
NOW = T0 + DAY_MS + 6 * 3_600_000  # 06:00 the day after
# (time_end ms, src, dst, port, protocol, bytes, packets)
FLOWS = [(T0 + 3_600_000, "10.0.0.1", "192.0.2.7", 443, "TCP", 3000, 3),
         (T0 + 5 * 3_600_000, "10.0.0.2", "192.0.2.7", 53, "UDP", 1000, 2),
         (T0 + 23 * 3_600_000 + 5, "10.0.0.1", "192.0.2.8", 443, "TCP", 2000, 2),
         (T0 - WEEK_MS + 7_200_000, "10.0.0.1", "192.0.2.7", 443, "TCP", 4000, 4)]


def fake_store(advisories=(), exporters=(), refuse=()):
    def query(op, **a):
        if op in refuse:
            raise StoreError(f"{op} refused")
        inside = [f for f in FLOWS if a.get("since", 0) <= f[0] < a.get("until", 1 << 62)]
        if op == "series":
            step = a["step"] * 1000
            first = a["since"] // step * step
            pts = {t: [t, 0, 0, 0] for t in range(first, a["until"], step)}
            for f in inside:
                p = pts[f[0] // step * step]
                p[1] += f[5]
                p[2] += f[6]
                p[3] += 1
            return {"ok": True, "points": list(pts.values())}
        if op == "top":
            col = {"src": 1, "dst": 2, "port": 3, "protocol": 4}[a["by"]]
            sums: dict = {}
            for f in inside:
                sums[str(f[col])] = sums.get(str(f[col]), 0) + f[5]
            rows = sorted(sums.items(), key=lambda kv: -kv[1])[:a["limit"]]
            return {"ok": True, "rows": [{"key": k, "bytes": b, "packets": 0, "flows": 0} for k, b in rows]}
        if op == "advisories":
            rows = [x for x in advisories if x["last_seen"] >= a["since"] and x["first_seen"] < a["until"]]
            return {"ok": True, "advisories": rows[:a["limit"]], "total": len(rows)}
        if op == "rollups":
            rows = {"minute": [], "key": [], "bytes": [], "packets": [], "flows": []}
            for f in inside:
                for k, v in (("minute", f[0] // 3_600_000 * 3_600_000), ("key", "192.0.2.250"), ("bytes", f[5]),
                             ("packets", f[6]), ("flows", 1)):
                    rows[k].append(v)
            return {"ok": True, "rows": rows}
        if op == "exporters":
            return {"ok": True, "exporters": list(exporters)}
        if op == "names":
            return {"ok": True, "exporters": [{"exporter": "192.0.2.251", "name": "edge-1", "site": "", "dns": ""}],
                    "interfaces": []}
        raise AssertionError(op)
    return query


def test_offsets_and_send_times_parse_or_say_why():
    assert report.parse_utc_offset("+02:00") == 120
    assert report.parse_utc_offset("UTC-5:30") == -330
    assert report.parse_utc_offset("UTC") == 0
    assert report.offset_text(-330) == "-05:30"
    for bad in ("+2:07", "+15:00", "CET", "2"):
        with pytest.raises(ValueError, match="offset from UTC"):
            report.parse_utc_offset(bad)
    assert report.parse_send_at("06:30") == 390
    with pytest.raises(ValueError, match="HH:MM"):
        report.parse_send_at("25:00")


def test_day_defaults_to_yesterday_and_refuses_future_old_or_malformed_days():
    assert report.parse_day("", NOW, 0, 365 * 86400) == DAY
    assert report.parse_day("2026-11-24", NOW, 0, 365 * 86400) == dt.date(2026, 11, 24)
    # at +14:00 it is already the next day there
    assert report.parse_day(None, T0 + DAY_MS + 11 * 3_600_000, 14 * 60, 365 * 86400) == DAY + dt.timedelta(days=1)
    with pytest.raises(ReportError, match="not a date like"):
        report.parse_day("30/11/2026", NOW, 0, 86400 * 30)
    with pytest.raises(ReportError, match="has not begun"):
        report.parse_day("2026-12-02", NOW, 0, 86400 * 30)
    with pytest.raises(ReportError, match="oldest whole day is 2026-11-02"):
        report.parse_day("2026-10-01", NOW, 0, 86400 * 30)


def test_day_bounds_follow_the_offset():
    assert report.day_start_ms(DAY, 60) == T0 - 3_600_000
    assert report.local_day(T0 - 1, 0) == DAY - dt.timedelta(days=1)
    assert report.local_day(T0 - 1, 60) == DAY


def test_report_totals_change_tops_advisories_and_exporters():
    adv = [{"key": "scan:a", "severity": "CRITICAL", "state": "resolved", "title": "Port scan from a", "subject": "a",
            "first_seen": T0 + 100, "last_seen": T0 + 200},
           {"key": "scan:b", "severity": "CRITICAL", "state": "raised", "title": "Port scan from a", "subject": "b",
            "first_seen": T0 + 300, "last_seen": T0 + DAY_MS + 5},
           {"key": "dns:c", "severity": "WARNING", "state": "resolved", "title": "DNS", "subject": "c",
            "first_seen": T0 - DAY_MS, "last_seen": T0 + 400}]
    exporters = [{"exporter": "192.0.2.251", "last_seen": T0 + 7_200_000, "sequence_lost": 4,
                  "decode_errors": {"short": 1}, "first_seen": T0 - DAY_MS},
                 {"exporter": "192.0.2.250", "last_seen": NOW - 1000, "sequence_lost": 0, "decode_errors": {}}]
    r = report.build(fake_store(adv, exporters), DAY, 0, top_n=2, now_ms=NOW)
    assert r["totals"] == {"bytes": 6000, "packets": 7, "flows": 3}
    assert r["previous"] == {"bytes": 4000, "packets": 4, "flows": 1}
    assert r["change_pct"]["bytes"] == pytest.approx(50.0) and r["change_pct"]["flows"] == pytest.approx(200.0)
    assert len(r["profile"]["times"]) == 24 and sum(r["profile"]["bytes"]) == 6000
    assert [(x["key"], x["bytes"]) for x in r["top"]["src"]["rows"]] == [("10.0.0.1", 5000), ("10.0.0.2", 1000)]
    assert r["top"]["port"]["rows"][0]["share_pct"] == pytest.approx(5000 * 100 / 6000)
    raised, resolved = r["advisories"]["raised"], r["advisories"]["resolved"]
    assert raised["total"] == 2 and raised["counts"]["CRITICAL"] == 2
    assert raised["top"] == [{"severity": "CRITICAL", "title": "Port scan from a", "count": 2, "subjects": ["a", "b"]}]
    assert resolved["total"] == 2 and resolved["counts"] == {"CRITICAL": 1, "WARNING": 1, "INFO": 0}
    ex = r["exporters"]
    assert [(s["label"], s["how"]) for s in ex["stopped"]] == [("edge-1 (192.0.2.251)", "last seen by the collector")]
    assert ex["lost"][0]["sequence_lost"] == 4 and ex["lost"][0]["decode_errors"] == 1
    assert ex["active"][0]["exporter"] == "192.0.2.250" and ex["active"][0]["bytes"] == 6000
    assert r["errors"] == {} and r["complete"]
    text = report.text(r, "https://flowlens.example.net/report?day=2026-11-30")
    assert "+50.0 %" in text and "10.0.0.1" in text and "edge-1 (192.0.2.251): last seen" in text
    assert report.subject(r).startswith("FlowLens daily report 2026-11-30: 6.0 kB (+50.0 % on 2026-11-23)")


def test_an_exporter_silent_at_the_day_end_or_all_day_is_stopped():
    r = report.build(fake_store(), DAY + dt.timedelta(days=1), 0, now_ms=NOW + DAY_MS)
    # the next day has no flows; its week-before day (Nov 24) neither: nothing stopped
    assert r["exporters"]["stopped"] == []
    r = report.build(fake_store(), DAY + dt.timedelta(days=7), 0, now_ms=NOW + WEEK_MS)
    assert [s["how"] for s in r["exporters"]["stopped"]] == ["silent all day (sent a week before)"]
    assert r["change_pct"]["bytes"] == -100.0


def test_a_refused_part_is_left_empty_with_its_reason():
    r = report.build(fake_store(refuse=("top",)), DAY, 0, now_ms=NOW)
    assert r["totals"]["bytes"] == 6000
    assert r["top"]["src"]["rows"] == [] and r["errors"]["top src"] == "top refused"
    # a store without the names op: exporters by address
    r = report.build(fake_store(exporters=[{"exporter": "192.0.2.251", "last_seen": T0 + 5, "sequence_lost": 1}],
                                refuse=("names",)), DAY, 0, now_ms=NOW)
    assert [s["label"] for s in r["exporters"]["stopped"]] == ["192.0.2.251"] and r["errors"] == {}


def test_a_day_as_empty_as_the_week_before_is_no_change_not_new():
    from flowmodel.report import change_pct, change_text

    assert change_text(change_pct(0, 0)) == "+0.0 %"
    assert change_text(change_pct(5, 0)) == "new" and change_text(change_pct(0, 4)) == "-100.0 %"
