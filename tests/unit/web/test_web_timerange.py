"""The time range module: parsing the URL, the links around a range, the chart step."""
from __future__ import annotations

import pytest
from lxml import etree

from flowlens_web.render import Renderer
from flowlens_web.timerange import MAX_SPAN_MS, PRESETS, RangeError, TimeRange, url_time

NOW = 1_764_944_130_500  # 2025-12-05T14:15:30.500Z
H = 3_600_000


def test_default_and_presets():
    r = TimeRange.from_query({}, NOW)
    assert (r.since_ms, r.until_ms, r.preset) == (NOW - H, NOW, "1h")
    assert r.label == "last 1 h"
    assert r.query() == {"range": "1h"}
    r = TimeRange.from_query({"range": "7d"}, NOW, default="10m")
    assert r.span_ms == 7 * 24 * H and r.label == "last 7 d"
    assert TimeRange.from_query({}, NOW, default="10m").label == "last 10 min"
    assert TimeRange.from_query({"range": "90m"}, NOW).span_ms == 90 * 60_000


def test_from_to_iso_and_round_trip():
    r = TimeRange.from_query({"from": "2025-12-04T10:00", "to": "2025-12-04T12:30Z"}, NOW)
    assert r.preset is None
    assert url_time(r.since_ms) == "2025-12-04T10:00Z" and url_time(r.until_ms) == "2025-12-04T12:30Z"
    assert r.label == "2025-12-04 10:00 to 12:30 UTC"
    again = TimeRange.from_query(r.query(), NOW + 5 * H)  # a bookmark means the same times later on
    assert (again.since_ms, again.until_ms) == (r.since_ms, r.until_ms)
    open_end = TimeRange.from_query({"from": "2h"}, NOW)
    assert (open_end.since_ms, open_end.until_ms) == (NOW - 2 * H, NOW)


def test_legacy_custom_links():
    r = TimeRange.from_query({"range": "custom", "since": "2025-12-04T10:00", "until": "2025-12-04T11:00"}, NOW)
    assert url_time(r.since_ms) == "2025-12-04T10:00Z" and r.span_ms == H


@pytest.mark.parametrize("params, words", [
    ({"range": "5x"}, "range '5x' is not a span"),
    ({"range": "0m"}, "between 1 minute and"),
    ({"range": "999d"}, "between 1 minute and"),
    ({"range": "1h", "from": "2h"}, "either range or from/to"),
    ({"to": "2025-12-04T10:00"}, "to was given without from"),
    ({"from": "yesterday"}, "from 'yesterday' is not a time"),
    ({"from": "2025-12-04T10:00", "to": "soon"}, "to 'soon' is not a time"),
    ({"from": "2025-12-04T12:00", "to": "2025-12-04T10:00"}, "must be before to"),
    ({"from": "2020-01-01", "to": "2025-01-01"}, "at most 400 days"),
    ({"from": "1960-01-01"}, "before 1970"),
    ({"range": "custom"}, "range=custom needs a since"),
])
def test_errors_name_the_parameter(params, words):
    with pytest.raises(RangeError) as e:
        TimeRange.from_query(params, NOW)
    assert words in str(e.value)


def test_earlier_later_of_a_preset():
    r = TimeRange.last("24h", NOW)
    assert r.later() is None  # already ends now
    e = r.earlier()
    assert e.preset is None and e.span_ms == 24 * H and e.until_ms == (NOW - 24 * H) // 1000 * 1000
    back = e.later()  # the span after the earlier one reaches now: the live last 24 h again
    assert back is not None and back.preset == "24h" and back.query() == {"range": "24h"}
    ee = e.earlier()
    assert ee.until_ms == e.since_ms and ee.later().query() == e.query()


def test_later_of_a_fixed_range_ending_now_is_none():
    r = TimeRange.from_query({"from": "3h", "to": "now"}, NOW)
    assert r.later() is None


def test_zoom_out_walks_presets_then_stops():
    seen = []
    r = TimeRange.last("10m", NOW)
    while r is not None:
        seen.append(r.preset)
        r = r.zoom_out()
    assert seen == list(PRESETS)


def test_zoom_out_of_a_fixed_range_triples_around_its_middle():
    r = TimeRange.from_query({"from": "2025-12-01T10:00", "to": "2025-12-01T12:00"}, NOW)
    z = r.zoom_out()
    assert (url_time(z.since_ms), url_time(z.until_ms)) == ("2025-12-01T08:00Z", "2025-12-01T14:00Z")
    near_now = TimeRange.from_query({"from": "2h", "to": "1h"}, NOW).zoom_out()
    assert near_now.until_ms <= NOW and near_now.span_ms == 3 * H
    huge = TimeRange.from_query({"from": "2025-01-01", "to": "2025-12-01"}, NOW).zoom_out()
    assert huge is not None and huge.span_ms == MAX_SPAN_MS
    assert huge.zoom_out() is None


@pytest.mark.parametrize("token, step", [("10m", 10), ("1h", 60), ("6h", 120), ("24h", 300), ("72h", 900),
                                         ("7d", 3600), ("30d", 10800)])
def test_step_gives_about_300_points_from_rollup_multiples(token, step):
    r = TimeRange.last(token, NOW)
    assert r.step_s() == step
    assert r.span_ms / 1000 / step <= 300
    if step >= 60:
        assert step % 60 == 0
    assert TimeRange.last("30d", NOW).step_s(points=1) == 86400


def test_bar_keeps_filters_and_renders_well_formed():
    r = TimeRange.last("1h", NOW)
    bar = r.bar("/flows", keep={"src": "10.0.0.0/8", "cursor": "abc", "range": "1h", "port": ""})
    assert bar["hidden"] == {"src": "10.0.0.0/8"}
    assert [p["here"] for p in bar["presets"]].count(True) == 1
    assert bar["earlier"]["src"] == "10.0.0.0/8" and "from" in bar["earlier"]
    assert bar["later"] is None and bar["zoom_out"] == {"src": "10.0.0.0/8", "range": "6h"}
    html = Renderer().env.get_template("_range.xhtml").render(range_bar=bar)
    root = etree.fromstring(html.encode())
    links = [a.get("href") for a in root.iter("{*}a", "a")]
    assert "/flows?src=10.0.0.0%2F8&range=24h" in links
    assert not any("later" in (a.get("class") or "") for a in root.iter("a"))
