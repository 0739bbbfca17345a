"""The stacked area chart's geometry and the series statistics: band edges meet, the stack's top is
the total, Other is drawn on top, p95 is the nearest-rank one."""
from __future__ import annotations

import pytest
from lxml import etree

from flowlens_web import render
from flowlens_web.seriesstats import percentile, rates, series_stats, utilisation
from flowlens_web.stackchart import OTHER_COLOUR, PALETTE, Layer, colour, stacked_chart

T0 = 1_764_900_000_000  # a whole minute
STEP = 60_000


def chart(values_by_layer, unit="bps"):
    n = len(values_by_layer[0][1])
    layers = [Layer(label, vals, OTHER_COLOUR if label == "Other" else colour(i), href=f"/explore?k={i}")
              for i, (label, vals) in enumerate(values_by_layer)]
    return stacked_chart([T0 + i * STEP for i in range(n)], STEP, layers, unit, T0, T0 + n * STEP)


def test_band_heights_sum_to_the_totals():
    a, b, other = [10, 0, 30, 5], [5, 5, 5, 5], [1, 2, 3, 4]
    c = chart([("a", a), ("b", b), ("Other", other)])
    ph = c.plot_bottom - c.top
    for i in range(4):
        heights = [band.bottoms[i] - band.tops[i] for band in c.bands]
        total = a[i] + b[i] + other[i]
        assert sum(heights) == pytest.approx(ph * total / c.axis_top)
        # each band starts where the one below ends
        for lower, upper in zip(c.bands, c.bands[1:]):
            assert upper.bottoms[i] == pytest.approx(lower.tops[i])
    assert c.bands[0].bottoms == [c.plot_bottom] * 4
    assert c.axis_top == 50  # peak 38 -> the next 1/2/2.5/5 step
    assert c.peak == "38 bps"
    assert [band.label for band in c.bands][-1] == "Other" and c.bands[-1].colour == OTHER_COLOUR
    assert not c.empty


def test_band_path_rises_from_the_axis_along_its_steps():
    c = chart([("a", [1, 2])])
    band = c.bands[0]
    mid = (c.left + c.plot_right) / 2
    assert band.path == (f"M{c.left:.1f},{c.plot_bottom:.1f}V{band.tops[0]:.1f}H{mid:.1f}V{band.tops[1]:.1f}"
                         f"H{c.plot_right:.1f}V{c.plot_bottom:.1f}Z")
    assert band.tops[1] < band.tops[0]  # the second step is higher


def test_level_runs_are_one_move():
    n = 300
    c = chart([("quiet", [5.0] * n), ("bursty", [0.0] * (n - 1) + [50.0])])
    assert c.bands[0].path.count("H") == 1 and c.bands[0].path.count("V") == 2  # a rectangle
    assert c.bands[1].path.count("H") == 2  # level with the quiet band, then the burst


def test_all_zero_is_empty_and_mismatched_lengths_refused():
    assert chart([("a", [0, 0, 0])]).empty
    with pytest.raises(ValueError, match="'b' has 2 values for 3 steps"):
        stacked_chart([T0, T0 + STEP, T0 + 2 * STEP], STEP, [Layer("a", [1, 2, 3], "#000"), Layer("b", [1, 2], "#111")],
                      "bps", T0, T0 + 3 * STEP)


def test_colours_are_distinct_for_fifty_series():
    colours = [colour(i) for i in range(50)]
    assert len(set(colours)) == 50 and OTHER_COLOUR not in colours
    assert colours[: len(PALETTE)] == list(PALETTE)


def test_time_labels_carry_dates_past_a_day():
    n = 72
    c = stacked_chart([T0 + i * 3_600_000 for i in range(n)], 3_600_000, [Layer("a", [1] * n, "#000")],
                      "bps", T0, T0 + n * 3_600_000)
    assert 2 <= len(c.x_ticks) <= 7
    assert all("-" in label for _x, label in c.x_ticks)  # 'MM-DD ...'


def test_partial_renders_well_formed_svg_with_links():
    env = render.environment()
    c = chart([("10.0.0.1", [8, 16]), ("<b>&amp;", [1, 1]), ("Other", [2, 2])])
    html = env.get_template("_stack.xhtml").render(c=c, label="Bits per second", window_text="the last hour")
    root = etree.fromstring(f'<div xmlns="http://www.w3.org/1999/xhtml">{html}</div>'.encode())
    ns = {"svg": "http://www.w3.org/2000/svg"}
    paths = root.xpath("//svg:a/svg:path", namespaces=ns)
    # painted top layer first: Other, then each band below over it
    assert len(paths) == 3 and paths[0].get("fill") == OTHER_COLOUR
    assert root.xpath("//svg:a/@href", namespaces=ns) == ["/explore?k=2", "/explore?k=1", "/explore?k=0"]
    assert "<b>&amp;" in "".join(root.xpath("//svg:title/text()", namespaces=ns))  # escaped, then read back
    assert root.xpath("//svg:text[@class='ylabel']", namespaces=ns) and root.xpath("//svg:text[@class='xlabel']", namespaces=ns)


def test_percentile_nearest_rank():
    assert percentile(list(range(1, 101)), 95) == 95
    assert percentile(list(range(100, 0, -1)), 95) == 95  # order does not matter
    assert percentile(list(range(1, 21)), 95) == 19
    assert percentile([7], 95) == 7
    assert percentile([], 95) == 0
    assert percentile([1, 2, 3, 4], 100) == 4
    with pytest.raises(ValueError):
        percentile([1], 0)


def test_series_stats_as_rates():
    # bytes per 60 s step; bits/s = bytes * 8 / 60
    sums = [600, 0, 1200, 60, 6000] + [0] * 15
    s = series_stats(sums, 60, factor=8)
    assert s.total == 7860
    assert s.average == pytest.approx(7860 * 8 / (20 * 60))
    assert s.maximum == pytest.approx(800)
    assert s.p95 == pytest.approx(160)  # 20 steps: the 19th smallest of the rates, the second highest
    assert rates([60, 120], 60) == [1.0, 2.0]
    with pytest.raises(ValueError):
        rates([1], 0)


def test_utilisation():
    assert utilisation(250e6, 1e9) == pytest.approx(25.0)
    assert utilisation(1, 0) is None and utilisation(1, None) is None


def test_step_seconds_inside_the_range():
    from flowlens_web.seriesstats import step_seconds
    five = 300_000
    assert step_seconds([0, five, 2 * five], five, 0, 2 * five + 60_000) == [300, 300, 60]  # the last one filling
    assert step_seconds([0, five, 2 * five], five, 0, 2 * five + 5_000) == [300, 300, 300]  # 5 s: the whole step
    assert step_seconds([0, five], five, 120_000, 2 * five) == [180, 300]  # the first starts before the range
    s = series_stats([600, 600, 120], [300, 300, 60], factor=8)
    assert s.maximum == pytest.approx(16) and s.average == pytest.approx(1320 * 8 / 660)
    with pytest.raises(ValueError, match="2 step lengths for 3 steps"):
        rates([1, 2, 3], [1, 2])
