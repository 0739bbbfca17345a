"""Pure formatters: human units, exact values, times, protocol and service names, XML-safe text."""
import pytest

from flowlens_web import formatters as fmt
from flowlens_web.chart import line_chart, nice_ceiling, time_ticks


@pytest.mark.parametrize("n,text", [(0, "0 B"), (1023, "1023 B"), (1024, "1 KB"), (1536, "1.50 KB"),
                                    (10 * 1024 * 1024, "10 MB"), (10.5 * 1024 * 1024, "10.5 MB"), (5 * 1024**3 + 1, "5.00 GB"), (None, "-")])
def test_human_bytes(n, text):
    assert fmt.human_bytes(n) == text


@pytest.mark.parametrize("n,unit,text", [(0, "bps", "0 bps"), (999, "bps", "999 bps"), (1500, "bps", "1.50 kbps"),
                                         (2.5e9, "bps", "2.50 Gbps"), (123456, "pps", "123 kpps")])
def test_human_rate(n, unit, text):
    assert fmt.human_rate(n, unit) == text


def test_exact_and_share():
    assert fmt.exact(1234567) == "1,234,567"
    assert fmt.exact(None) == ""
    assert fmt.share(1, 4) == 25.0
    assert fmt.share(1, 0) == 0.0
    assert fmt.percent(25.0) == "25.0 %"
    assert fmt.percent(0.01) == "<0.1 %"


def test_times_are_utc():
    ms = 1_764_000_000_123  # 2025-11-24T16:00:00.123Z
    assert fmt.iso_time(ms) == "2025-11-24T16:00:00.123Z"
    assert fmt.human_time(ms, ms + 60_000) == "16:00:00"
    assert fmt.human_time(ms, ms + 3 * 86_400_000) == "11-24 16:00"
    assert fmt.human_time(None, ms) == "-"


@pytest.mark.parametrize("s,text", [(0.25, "250 ms"), (5, "5 s"), (2.5, "2.5 s"), (75, "1 min 15 s"),
                                    (3600, "1 h"), (90000, "1 d 1 h"), (-3, "0 ms")])
def test_human_duration(s, text):
    assert fmt.human_duration(s) == text


def test_protocol_and_service_names():
    assert fmt.proto(6) == "TCP" and fmt.proto(17) == "UDP" and fmt.proto(253) == "253"
    assert fmt.flow_service(6, 51514, 443) == "https"
    assert fmt.flow_service(17, 53, 40000) == "dns"      # the named port wins even when it is the source
    assert fmt.flow_service(1, 0, 771) == ""             # ICMP type/code is not a port
    assert fmt.port_label(22) == "22 (ssh)" and fmt.port_label(40000) == "40000"
    assert fmt.endpoint("10.0.0.1", 443, 6) == "10.0.0.1:443"
    assert fmt.endpoint("2001:db8::1", 443, 6) == "[2001:db8::1]:443"
    assert fmt.endpoint("10.0.0.1", 0, 1) == "10.0.0.1"
    assert fmt.tcp_flags(0x12) == "AS" and fmt.tcp_flags(0) == ""


def test_xml_text_removes_forbidden_characters():
    assert fmt.xml_text("a\x00b\x1bc\ttab") == "a\ufffdb\ufffdc\ttab"
    assert fmt.xml_text(None) == ""
    assert fmt.xml_text("<&>") == "<&>"  # escaping is the template's job


def test_nice_ceiling():
    assert nice_ceiling(0) == 1.0
    assert nice_ceiling(7) == 10.0
    assert nice_ceiling(1.9e6) == 2e6
    assert nice_ceiling(2.1e6) == 2.5e6


def test_line_chart_geometry():
    since, until = 0, 600_000
    c = line_chart([5_000, 595_000], [0.0, 5e6], "bps", since, until)
    assert not c.empty
    xs = [float(p.split(",")[0]) for p in c.points.split()]
    ys = [float(p.split(",")[1]) for p in c.points.split()]
    assert c.left <= xs[0] < xs[1] <= c.plot_right
    assert ys[0] == pytest.approx(c.plot_bottom) and ys[1] == pytest.approx(c.top)  # 5 Mbps is the axis top
    assert c.y_ticks[-1][1] == "5 Mbps" and c.y_ticks[0][1] == "0 bps"
    assert c.current == "5 Mbps" and c.x_ticks[0][1] == "00:00" and c.x_ticks[-1][1] == "00:10"
    assert line_chart([], [], "pps", since, until).empty


def test_time_ticks_fall_on_round_minutes():
    # a dashboard window ending at 10:21:39.5 (review 5: ticks were labelled 10:11:39, 10:13:39, ...)
    until = (10 * 3600 + 21 * 60 + 39) * 1000 + 500
    since = until - 600_000
    ticks = time_ticks(since, until)
    assert ticks == [(10 * 3600 + m * 60) * 1000 for m in (12, 14, 16, 18, 20)]
    c = line_chart([], [], "bps", since, until)
    assert [t for _x, t in c.x_ticks] == ["10:12", "10:14", "10:16", "10:18", "10:20"]
    xs = [x for x, _t in c.x_ticks]
    assert c.left < xs[0] < xs[-1] < c.plot_right
    assert time_ticks(0, 30_000) == [0, 10_000, 20_000, 30_000]
    assert time_ticks(0, 86_400_000) == [h * 3_600_000 for h in range(0, 25, 6)]
