"""The analyzer's wording takes any int64 ms time (a broken exporter clock) without raising."""
import pytest

from flowlens_analyzer.common import fmt_time

FAR_FUTURE_MS = 9_151_314_449_241_600_000


@pytest.mark.parametrize("ms,text", [(1_764_000_000_123, "16:00"), (0, "00:00"),
                                     (FAR_FUTURE_MS, "+289995580-07-29T16:00:00Z"),
                                     (-9_000_000_000_000_000_000, "-285196677-06-10T08:00:00Z"),
                                     ((1 << 63) - 1, "+292278994-08-17T07:12:55Z")])
def test_fmt_time_of_any_int64(ms, text):
    assert fmt_time(ms) == text
