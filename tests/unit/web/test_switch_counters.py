"""The interface page's switch counters context, from an ifcounters reply."""
from flowlens_web.exporterviews import switch_counters, utilisation_text
from flowlens_web.timerange import TimeRange

NOW = 1_700_000_000_000


def reply(in_octets, resets=(0, 0), speed=10**9):
    return {"ok": True, "step_ms": 60_000, "times": [NOW - 120_000, NOW - 60_000], "speed_bps": speed,
            "in_octets": list(in_octets), "out_octets": [0, 0], "in_bps": [v * 8 / 60 for v in in_octets],
            "out_bps": [0.0, 0.0], "in_errors": [1, 2], "out_errors": [0, 0], "in_discards": [0, 0],
            "out_discards": [0, 5], "resets": list(resets)}


def test_utilisation_errors_and_resets():
    c = switch_counters(reply([750_000_000, 3_750_000_000], resets=(1, 0)), TimeRange.last("1h", NOW))
    assert c["in_util"] == "50.0 %" and c["out_util"] == "0.0 %"
    assert utilisation_text(120_000 / 10**10) == "0.0012 %"
    assert (c["in_errors"], c["out_discards"], c["resets"]) == ("3", "5", 1)
    assert not c["in_chart"].empty


def test_no_rows_or_no_op_means_no_section():
    assert switch_counters(None, TimeRange.last("1h", NOW)) is None
    assert switch_counters(reply([0, 0]), TimeRange.last("1h", NOW)) is None


def test_unknown_speed_has_no_utilisation():
    assert switch_counters(reply([10, 0], speed=0), TimeRange.last("1h", NOW))["in_util"] == "unknown"
