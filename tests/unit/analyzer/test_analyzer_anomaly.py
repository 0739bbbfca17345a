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
    from flowlens_analyzer.baseline_seed import rollup_rows

    reply = {"ok": True, "kind": "dst_prefix", "step_ms": 60_000,
             "rows": {"minute": [T0, T0 + MIN, T0 + MIN], "key": ["192.168.5.0/24", "192.168.5.0/24", "10.0.0.0/16"],
                      "bytes": [100, 200, 300], "packets": [1, 2, 3], "flows": [1, 1, 1]}}
    minutes, keys, values = rollup_rows(reply, config())
    assert minutes.tolist() == [T0 // MIN, T0 // MIN + 1]  # the /16 is not our prefix length: skipped
    assert addr.column_to_text(keys) == ["192.168.5.0", "192.168.5.0"]
    assert values.tolist() == [100.0, 200.0]
    m, k, v = rollup_rows({"rows": {"minute": [T0], "key": ["192.0.2.1"], "bytes": [5]}}, config())
    assert addr.column_to_text(k) == ["192.0.2.1"] and v.tolist() == [5.0]


HOUR_MIN = 60


def prefix_keys(*texts):
    return np.frombuffer(b"".join(addr.to_bytes(t) for t in texts), dtype="V16").copy()


def test_hourly_sums_fold_as_their_60_minutes_would():
    """fold_hours over hourly sums gives the profiles that folding every minute of those hours through
    the ring gives (quiet minutes as zeros, a key quiet for a whole hour, a key that starts later)."""
    rng = np.random.default_rng(7)
    h0 = (T0 // MIN) // HOUR_MIN + 3  # an hour number
    hours = list(range(h0, h0 + 30))
    names = ("10.0.0.0", "10.0.1.0", "10.0.2.0")  # steady; quiet in hour h0+4; from hour h0+9 on
    per_minute = {}  # (minute, key) -> bytes
    for h in hours:
        for m in range(h * 60, h * 60 + 60):
            per_minute[(m, names[0])] = float(rng.integers(1, 1000))
            if h != h0 + 4 and (m == h0 * 60 or rng.random() < 0.5):  # (from the first minute, as hours count)
                per_minute[(m, names[1])] = float(rng.integers(1, 1000))
            if h >= h0 + 9 and (m % 7 == 0 or m == (h0 + 9) * 60):
                per_minute[(m, names[2])] = 5000.0
    live, hourly = anomaly.MinuteHistory(1, 10), anomaly.MinuteHistory(1, 10)  # a 1-minute ring folds every minute
    for m in sorted({m for m, _k in per_minute}) + [(hours[-1] + 1) * 60]:  # the extra minute folds the last one
        ks = [k for k in names if (m, k) in per_minute]
        live.add(m, np.array([addr.to_bytes(k) for k in ks], dtype=object),
                 np.array([per_minute[(m, k)] for k in ks]), 0.0)
    hs, ks, vs = [], [], []
    for (m, k), v in per_minute.items():
        hs.append(m // 60)
        ks.append(k)
        vs.append(v)
    assert hourly.fold_hours(np.array(hs), prefix_keys(*ks), np.array(vs)) == 3
    for name in names:
        a, b = live.rows[addr.to_bytes(name)], hourly.rows[addr.to_bytes(name)]
        for attr in ("hod_sum", "hod_n", "how_sum", "how_n"):
            np.testing.assert_allclose(getattr(hourly, attr)[b], getattr(live, attr)[a], err_msg=f"{name} {attr}")
    late = hourly.rows[addr.to_bytes(names[2])]
    assert hourly.hod_n[late, (h0 + 8) % 24] == 0 and hourly.hod_n[late, (h0 + 9) % 24] == 60
    quiet = hourly.rows[addr.to_bytes(names[1])]
    assert hourly.how_n[quiet, (h0 + 4) % 168] == 60 and hourly.how_sum[quiet, (h0 + 4) % 168] == 0


def test_hours_without_any_row_are_not_counted_and_keys_stop_at_max_keys():
    hist = anomaly.MinuteHistory(60, 2)
    h = 1000 * 24  # hour numbers; hour h+1 has no row at all (the store saw nothing)
    hours = np.array([h, h, h, h + 2, h + 2])
    keys = prefix_keys("10.0.0.0", "10.0.1.0", "10.0.2.0", "10.0.0.0", "10.0.2.0")
    assert hist.fold_hours(hours, keys, np.array([100.0, 50.0, 70.0, 200.0, 90.0])) == 2
    assert set(hist.rows) == {addr.to_bytes("10.0.0.0"), addr.to_bytes("10.0.2.0")}  # the two biggest totals
    row = hist.rows[addr.to_bytes("10.0.0.0")]
    assert hist.hod_n[row, [h % 24, (h + 1) % 24, (h + 2) % 24]].tolist() == [60, 0, 60]
    assert hist.hod_sum[row, [h % 24, (h + 2) % 24]].tolist() == [100.0, 200.0]
    # per-minute seeding afterwards keeps the profiled keys (a new key finds no free row)
    anomaly_state, ctx = {}, Context(config(anomaly_max_keys=2))
    anomaly.seed_hours(anomaly_state, ctx, "dst_prefix", hours, keys, np.array([100.0, 50.0, 70.0, 200.0, 90.0]))
    m = (h + 3) * 60
    anomaly.seed(anomaly_state, ctx, "dst_prefix", np.array([m, m]), prefix_keys("10.0.5.0", "10.0.0.0"),
                 np.array([1e9, 10.0]))
    seeded = anomaly_state["history"]["dst_prefix"]
    assert set(seeded.rows) == {addr.to_bytes("10.0.0.0"), addr.to_bytes("10.0.2.0")}
    assert seeded.hist[seeded.rows[addr.to_bytes("10.0.0.0")], m % seeded.M] == 10.0


def test_seeded_hourly_profiles_judge_the_same_hour():
    """Two days of this hour as hourly sums (120 samples) make the hour-of-day baseline usable."""
    ctx, state = Context(config(anomaly_history_minutes=30)), {}
    now_hour = (T0 + 60 * MIN) // (60 * MIN)
    hours = np.array([now_hour - d * 24 + o for d in (2, 1) for o in (-1, 0, 1)], dtype=np.int64)
    anomaly.seed_hours(state, ctx, "dst_prefix", hours, prefix_keys(*["192.168.5.0"] * len(hours)),
                       np.full(len(hours), 60 * 50e6))
    found = run_minutes(ctx, state, [{"192.168.5.0/24": 1_000_000}], start=T0 + 60 * MIN)
    [f] = [f for f in found if f.subject == "192.168.5.0/24"]
    assert "the usual level at this hour" in f.description and "dropped 98%" in f.description


def test_rollup_rows_skip_keys_they_cannot_read():
    from flowlens_analyzer.baseline_seed import rollup_rows

    raw = addr.to_bytes("10.1.2.0")
    reply = {"rows": {"minute": [T0, T0, T0 + MIN, T0], "key": ["not an address", "192.168.5.0/24", raw, "10.1.0.0/16"],
                      "bytes": [1, 2, 3, 4]}}
    minutes, keys, values = rollup_rows(reply, config())
    assert addr.column_to_text(keys) == ["192.168.5.0", "10.1.2.0"] and values.tolist() == [2.0, 3.0]
    assert minutes.tolist() == [T0 // MIN, T0 // MIN + 1]
    assert len(rollup_rows({"rows": {"minute": [T0], "key": []}}, config())[0]) == 0  # unequal columns
