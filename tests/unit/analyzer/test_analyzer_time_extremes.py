"""The analyzer's wording takes any int64 ms time (a broken exporter clock) without raising."""
import pytest

from flowlens_analyzer.wording import fmt_time

FAR_FUTURE_MS = 9_151_314_449_241_600_000


@pytest.mark.parametrize("ms,text", [(1_764_000_000_123, "16:00"), (0, "00:00"),
                                     (FAR_FUTURE_MS, "+289995580-07-29T16:00:00Z"),
                                     (-9_000_000_000_000_000_000, "-285196677-06-10T08:00:00Z"),
                                     ((1 << 63) - 1, "+292278994-08-17T07:12:55Z")])
def test_fmt_time_of_any_int64(ms, text):
    assert fmt_time(ms) == text


def _event(seq, future, ahead_s, other=0):
    return {"kind": "collector", "collector": "collector@a:1", "source": "collector@a:1", "seq": seq,
            "exporters": [{"exporter": "192.0.2.1", "observation_domain": 0, "version": 10, "packets": seq,
                           "flows": 10 * seq, "decode_errors": {"time_in_future": future, "short": other},
                           "time_ahead_max_s": ahead_s, "last_seen": 100_000}]}


def test_health_advisory_says_how_far_ahead_an_exporters_flow_times_are():
    from flowlens_analyzer import health
    from flowlens_analyzer.common import Context
    from flows import config

    ctx, st = Context(config()), health.HealthState()
    ahead_s = (FAR_FUTURE_MS - 100_000) // 1000
    st.observe(_event(1, 3, ahead_s), 100_000)  # the first report of a collector counts from 0
    found = {f.key: f for f in health.analyze(st, ctx, 101_000, {})}
    f = found["health:future 192.0.2.1/0"]
    assert f.description.startswith("Exporter 192.0.2.1 sends flow times 290 million years ahead: check its clock.")
    assert "dropped 3 flows" in f.description and f.evidence["time_in_future_flows"] == 3
    assert "health:decode 192.0.2.1/0" not in found  # not counted again as undecodable
    assert health.analyze(st, ctx, 102_000, {}) == []  # nothing new
    st.observe(_event(2, 5, 3 * 86_400, other=1), 103_000)
    found = {f.key: f for f in health.analyze(st, ctx, 104_000, {})}
    assert "dropped 2 flows" in found["health:future 192.0.2.1/0"].description
    assert "sends flow times 3 days ahead" in found["health:future 192.0.2.1/0"].description
    assert found["health:decode 192.0.2.1/0"].evidence["decode_errors"] == 1
