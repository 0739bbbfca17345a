import numpy as np

from flowlens_analyzer import anomaly
from flowlens_analyzer.common import Context, view_from_batch
from flowmodel import addr
from flowmodel.schema import FlowBatch

from flows import T0, batch, config, normal_mix

MIN = 60_000


def minute_of_traffic(t_end, per_prefix_bytes, exporter="192.0.2.1"):
    """Traffic to 192.168.5.0/24 and 10.9.9.0/24 in the minute ending t_end (10 flows per prefix)."""
    parts = []
    for prefix, nbytes in per_prefix_bytes.items():
        if nbytes:
            hosts = [prefix.replace("0/24", str(i)) for i in range(1, 11)]
            parts.append(batch("203.0.113.9", hosts, 443, bytes=nbytes // 10, time_end=t_end - 1000, exporter=exporter))
    return FlowBatch.concat(parts)


def run_minutes(ctx, state, minutes, start=T0):
    """Feed one run per minute; returns the findings of the last run."""
    found = []
    for i, traffic in enumerate(minutes):
        end = start + (i + 1) * MIN
        found = anomaly.analyze(view_from_batch(minute_of_traffic(end, traffic), end - MIN, end), ctx, state)
    return found


def test_drop_against_the_short_term_median():
    ctx, state = Context(config()), {}
    steady = {"192.168.5.0/24": 50_000_000, "10.9.9.0/24": 40_000_000}
    assert run_minutes(ctx, state, [steady] * 15) == []
    found = run_minutes(ctx, state, [{"192.168.5.0/24": 2_500_000, "10.9.9.0/24": 40_000_000}], start=T0 + 15 * MIN)
    [f] = found
    assert f.key == "anomaly:192.168.5.0/24"
    assert f.severity == "WARNING"
    assert f.description.startswith("Traffic to 192.168.5.0/24 dropped 95% at ")
    assert "possible link failure" in f.description and "median of the previous 15 minutes" in f.description
    assert "links" in f.action
    assert f.filter["dst"] == "192.168.5.0/24"


def test_spike_and_exporter_level_change():
    ctx, state = Context(config()), {}
    steady = {"192.168.5.0/24": 5_000_000, "10.9.9.0/24": 4_000_000}
    assert run_minutes(ctx, state, [steady] * 12) == []
    found = run_minutes(ctx, state, [{"192.168.5.0/24": 100_000_000, "10.9.9.0/24": 4_000_000}], start=T0 + 12 * MIN)
    keys = {f.key: f for f in found}
    assert set(keys) == {"anomaly:192.168.5.0/24", "anomaly:exporter 192.0.2.1"}
    assert keys["anomaly:192.168.5.0/24"].description.startswith("Traffic to 192.168.5.0/24 rose to 20.0x the median")


def test_total_silence_is_a_critical_drop():
    ctx, state = Context(config()), {}
    assert run_minutes(ctx, state, [{"192.168.5.0/24": 50_000_000, "10.9.9.0/24": 0}] * 12) == []
    found = run_minutes(ctx, state, [{}], start=T0 + 12 * MIN)
    assert {f.key for f in found} == {"anomaly:192.168.5.0/24", "anomaly:exporter 192.0.2.1"}
    assert all(f.severity == "CRITICAL" and "dropped 100%" in f.description for f in found)


def test_too_little_history_or_traffic_is_not_judged():
    ctx, state = Context(config()), {}
    assert run_minutes(ctx, state, [{"192.168.5.0/24": 50_000_000}] * 5 + [{}]) == []  # 5 < 10 minutes of history
    ctx, state = Context(config()), {}
    small = {"192.168.5.0/24": 500_000}  # below anomaly_min_bytes per window
    assert run_minutes(ctx, state, [small] * 12 + [{}]) == []


def test_seeded_same_hour_history_is_used():
    ctx, state = Context(config(anomaly_history_minutes=30)), {}
    key = np.frombuffer(addr.to_bytes("192.168.5.0"), dtype="V16")
    # Three earlier days of 50 MB/min at this hour, seeded as the store's rollups would be.
    now_minute = (T0 + 60 * MIN) // MIN
    minutes = np.array([now_minute - d * 1440 + m for d in (3, 2, 1) for m in range(-90, 90)], dtype=np.int64)
    anomaly.seed(state, ctx, "dst_prefix", minutes, np.repeat(key, len(minutes)), np.full(len(minutes), 50e6))
    found = run_minutes(ctx, state, [{"192.168.5.0/24": 1_000_000}], start=T0 + 60 * MIN)
    [f] = [f for f in found if f.subject == "192.168.5.0/24"]
    assert "the usual level at this hour" in f.description and "dropped 98%" in f.description


def test_normal_mix_raises_nothing():
    ctx, state = Context(config()), {}
    for i in range(15):
        end = T0 + (i + 1) * MIN
        b = normal_mix(seed=i, t_end=end)
        assert anomaly.analyze(view_from_batch(b, end - MIN, end), ctx, state) == []


def test_store_rollups_reply_is_read_in_its_column_form():
    from flowlens_analyzer.service import rollup_rows

    reply = {"ok": True, "kind": "dst_prefix", "step_ms": 60_000,
             "rows": {"minute": [T0, T0 + MIN, T0 + MIN], "key": ["192.168.5.0/24", "192.168.5.0/24", "10.0.0.0/16"],
                      "bytes": [100, 200, 300], "packets": [1, 2, 3], "flows": [1, 1, 1]}}
    minutes, keys, values = rollup_rows(reply, config())
    assert minutes.tolist() == [T0 // MIN, T0 // MIN + 1]  # the /16 is not our prefix length: skipped
    assert addr.column_to_text(keys) == ["192.168.5.0", "192.168.5.0"]
    assert values.tolist() == [100.0, 200.0]
    m, k, v = rollup_rows({"rows": {"minute": [T0], "key": ["192.0.2.1"], "bytes": [5]}}, config())
    assert addr.column_to_text(k) == ["192.0.2.1"] and v.tolist() == [5.0]
