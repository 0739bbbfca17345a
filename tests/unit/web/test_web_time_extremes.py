"""Page formatters take any int64 ms time: one spoofed record dated in the year 289,995,580 (or a
time far before year 1) must never make a page answer 500."""
import pytest

from flowlens_web import formatters as fmt
from flowlens_web import flowtable, views
from flowlens_web.chart import line_chart

NOW = 1_764_000_000_123  # 2025-11-24T16:00:00.123Z
FAR_FUTURE_MS = 9_151_314_449_241_600_000
EXTREMES = [FAR_FUTURE_MS, -9_000_000_000_000_000_000, (1 << 63) - 1, -(1 << 63), 253_402_300_800_000,
            -62_135_596_800_001, float(FAR_FUTURE_MS)]


@pytest.mark.parametrize("ms", EXTREMES)
def test_time_formatters_take_any_int64(ms):
    assert fmt.utc(ms) is None  # datetime cannot hold it
    assert fmt.iso_time(ms).endswith("Z")
    assert fmt.human_time(ms, NOW).startswith("far ")
    assert fmt.clock_time(ms).endswith("Z")
    assert fmt.ago(ms, NOW).endswith("ago")


def test_far_future_wording():
    assert fmt.iso_time(FAR_FUTURE_MS) == "+289995580-07-29T16:00:00.000Z"
    assert fmt.human_time(FAR_FUTURE_MS, NOW) == "far future (year 289,995,580)"
    assert fmt.human_time(-9_000_000_000_000_000_000, NOW) == "far past (year -285,196,677)"
    # ordinary times unchanged, the year 1970 included
    assert fmt.iso_time(0) == "1970-01-01T00:00:00.000Z"
    assert fmt.human_time(1000, NOW) == "1970-01-01 00:00"
    assert fmt.human_time(NOW, NOW) == "16:00:00"
    assert fmt.clock_time(NOW - 123) == "16:00"


def test_flow_rows_and_status_figures_take_any_int64():
    row = {"time_start": -9_000_000_000_000_000_000, "time_end": FAR_FUTURE_MS, "src_addr": "10.0.0.1",
           "dst_addr": "10.0.0.2", "src_port": 1, "dst_port": 443, "protocol": 6, "bytes": 1, "packets": 1,
           "tcp_flags": 0, "exporter": "127.0.0.1", "sampling_rate": 1}
    out = flowtable.flow_rows([row], NOW)[0]
    assert out["end"] == "far future (year 289,995,580)"
    assert out["start_exact"] == "-285196677-06-10T08:00:00.000Z"
    assert out["end_exact"] == "+289995580-07-29T16:00:00.000Z"
    for key in ("start_ms", "end_ms", "newest_time", "last_seen", "max_time_end"):
        assert views.human_number(key, FAR_FUTURE_MS) == "+289995580-07-29T16:00:00.000Z"


def test_a_chart_over_a_far_future_range_has_ticks():
    chart = line_chart([FAR_FUTURE_MS], [1.0], "bps", FAR_FUTURE_MS - 600_000, FAR_FUTURE_MS)
    assert chart.x_ticks and all(label.startswith("+289995580") for _x, label in chart.x_ticks)
