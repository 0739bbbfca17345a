import numpy as np

from flowlens_analyzer.engine import Engine
from flowlens_analyzer.window import FlowWindow

from flowmodel import addr

from flows import T0, batch, config

S = 1000
W = 1_800_000_000_000  # wall clock ms (after every flow time used here)


def win(**kw):
    args = dict(window_ms=60 * S, interval_ms=60 * S, watermark_ms=30 * S, max_flows=1000, idle_after_ms=5 * S)
    args.update(kw)
    return FlowWindow(**args)


def at(*ends):
    return batch("10.0.0.1", "10.0.0.2", 443, time_end=np.array(ends, dtype=np.int64))


def test_windows_close_on_flow_time_with_the_watermark():
    w = win()
    w.add(at(T0 + 10 * S, T0 + 50 * S), wall_ms=W)
    assert list(w.due()) == []
    w.add(at(T0 + 89 * S), wall_ms=W)  # clock = 89 - 30 = 59 s: first window (ends T0+60) not yet
    assert list(w.due()) == []
    w.add(at(T0 + 95 * S), wall_ms=W)
    [end] = list(w.due())
    assert end == T0 + 60 * S
    v = w.view(end)
    assert (v.start_ms, v.end_ms, v.count) == (T0, T0 + 60 * S, 2)
    # A flow for the window that already ran is late: counted, not analysed.
    assert w.add(at(T0 + 20 * S), wall_ms=W) == 0
    assert w.counters["late"] == 1


def test_old_capture_times_work_and_idle_wall_clock_advances_flow_time():
    w = win()
    old = 1_400_000_000_000  # 2014
    w.add(at(old + 1 * S, old + 2 * S), wall_ms=W + 10_000 * S)
    w.tick(W + 10_003 * S)
    assert list(w.due()) == []
    w.tick(W + 10_100 * S)  # idle for 100 s of wall time: flow time has moved on by as much
    ends = list(w.due())
    assert ends and ends[0] == (old // (60 * S) + 1) * 60 * S
    assert w.view(ends[0]).count == 2


def test_bounded_size_and_future_flows():
    w = win(max_flows=10)
    w.add(at(*([T0] * 8)), wall_ms=T0)
    w.add(at(*([T0 + S] * 8)), wall_ms=T0)
    assert w.size == 10 and w.counters["overflow"] == 6
    w.add(at(T0 + 3600 * S), wall_ms=T0)
    assert w.counters["future"] == 1


def test_long_gap_does_not_run_every_empty_interval():
    w = win()
    w.add(at(T0 + 10 * S), wall_ms=W)
    w.add(at(T0 + 86_400 * S), wall_ms=W)  # a day later
    ends = list(w.due())
    assert len(ends) < 5


def exporter_stream(seed=5):
    """Batches as two exporters send them, one per second of wall time: 192.0.2.1 sends flows that
    ended up to 8 s ago (unsorted, as its flow cache expires them); 192.0.2.2 sends a port scan whose
    flows end 35-45 s before they arrive (a slow active timeout), so some of them miss their window."""
    rng = np.random.default_rng(seed)
    out = []
    for s in range(180):
        arr = T0 + s * S
        out.append(batch("10.0.0.1", "10.0.0.2", 443, time_end=arr - rng.integers(0, 8 * S, 3), exporter="192.0.2.1"))
        if s < 120:
            out.append(batch("10.0.0.66", "10.0.0.5", np.arange(s * 2 + 1, s * 2 + 3), packets=1, tcp_flags=2,
                             time_end=arr - rng.integers(35 * S, 45 * S, 2), exporter="192.0.2.2"))
    return out


def run_engine(cfg, batches, step, wall=None):
    from flowmodel.schema import FlowBatch

    e = Engine(cfg)
    events = []
    for i in range(0, len(batches), step):  # never sorted: the arrival order is the exporters'
        e.add(FlowBatch.concat(batches[i:i + step]), wall_ms=wall)
        events += e.poll()
    events += e.finish(T0 + 600 * S)
    strip = [(x["key"], x["state"], x["first_seen"], x["description"]) for x in events]
    return strip, dict(e.window.counters), dict(e.window.late_by_exporter)


def test_same_arrival_order_same_advisories_and_late_counts_in_batches_of_1_10_400():
    cfg = config(scan_threshold=50, interval="10s", watermark="5s")
    flows = exporter_stream()
    one, c1, late1 = run_engine(cfg, flows, 1)
    for step in (10, 400):
        ev, c, late = run_engine(cfg, flows, step)
        assert ev == one, step
        assert c == c1 and late == late1, step
    # The case is not trivial: flows were late (only the scanner's), and the scan was seen.
    assert c1["late"] > 0
    assert set(late1) == {bytes(addr.from_texts(["192.0.2.2"])[0])}
    assert any(k == "scan:10.0.0.66" and st == "raised" for k, st, _, _ in one)


def test_an_exporter_with_a_fast_clock_does_not_make_the_others_late():
    cfg = config(scan_threshold=100)
    e = Engine(cfg)
    events = []
    for s in range(240):
        wall = T0 + s * S
        # 192.0.2.9 is 4 minutes fast; 192.0.2.1 is right and carries a port scan.
        e.add(batch("10.0.0.1", "10.0.0.2", 443, time_end=[wall + 240 * S], exporter="192.0.2.9"), wall_ms=wall)
        e.add(batch("10.0.0.66", "10.0.0.5", np.arange(s * 5 + 1, s * 5 + 6), packets=1, tcp_flags=2,
                    time_end=[wall - S] * 5, exporter="192.0.2.1"), wall_ms=wall)
        events += e.poll(wall)
    w = e.window
    assert w.counters["late"] == 0 and w.late_by_exporter == {}
    fast = bytes(addr.from_texts(["192.0.2.9"])[0])
    assert w.counters["future"] == 240 and w.future_by_exporter == {fast: 240}
    assert 239 * S <= w.ahead_ms_by_exporter[fast] <= 240 * S
    assert any(x["key"] == "scan:10.0.0.66" and x["state"] == "raised" for x in events)


def test_a_fast_clock_inside_the_tolerance_is_accepted_but_does_not_drive_the_flow_clock():
    w = win(tolerance_ms=60 * S)
    w.add(batch("10.0.0.1", "10.0.0.2", 443, time_end=[W + 50 * S], exporter="192.0.2.9"), wall_ms=W)
    w.add(batch("10.0.0.1", "10.0.0.2", 443, time_end=[W - 2 * S], exporter="192.0.2.1"), wall_ms=W)
    assert w.clock == W - 30 * S  # the first exporter alone, but never ahead of the wall clock
    w.add(batch("10.0.0.1", "10.0.0.2", 443, time_end=[W + 55 * S], exporter="192.0.2.9"), wall_ms=W + 5 * S)
    w.add(batch("10.0.0.1", "10.0.0.2", 443, time_end=[W + 3 * S], exporter="192.0.2.1"), wall_ms=W + 5 * S)
    assert w.counters["future"] == 0
    assert w.clock == W + 3 * S - 30 * S  # the slower exporter's clock minus the watermark


def test_a_silent_exporter_stops_holding_the_clock_and_a_lagging_one_holds_it_at_most_the_tolerance():
    w = win(tolerance_ms=60 * S)  # hold: max(idle_after 5 s, watermark 30 s) = 30 s
    w.add(batch("10.0.0.1", "10.0.0.2", 443, time_end=[W - 100 * S], exporter="192.0.2.2"), wall_ms=W - 100 * S)
    w.add(batch("10.0.0.1", "10.0.0.2", 443, time_end=[W], exporter="192.0.2.1"), wall_ms=W)
    assert w.clock == W - 30 * S  # 192.0.2.2 said nothing for 100 s of wall time
    w2 = win(tolerance_ms=60 * S)
    w2.add(batch("10.0.0.1", "10.0.0.2", 443, time_end=[W - 600 * S], exporter="192.0.2.2"), wall_ms=W)
    w2.add(batch("10.0.0.1", "10.0.0.2", 443, time_end=[W], exporter="192.0.2.1"), wall_ms=W)
    assert w2.clock == W - 60 * S - 30 * S  # ten minutes slow, active: held back by the tolerance only


def test_mask_prefix_matches_flowmodel_mask_column():
    from flowlens_analyzer.common import mask_prefix
    from flowmodel import addr

    a = addr.from_texts(["10.1.2.3", "192.168.5.77", "2001:db8:1:2:3:4:5:6", "255.255.255.255", "::1", "fe80::1:2"])
    for p4, p6 in ((24, 64), (16, 48), (32, 128), (0, 0), (8, 72)):
        assert addr.column_to_text(mask_prefix(a, p4, p6)) == addr.column_to_text(addr.mask_column(a, p4, p6))


def test_the_end_clock_shortcut_gives_what_the_per_flow_path_gives():
    """Batches of known, active exporters skip the per-flow clock path when no window is due in them;
    on random traffic (exporters joining, falling silent, clocks apart, flows out of order) a window
    that always takes the path runs the same windows at the same points and ends in the same state."""
    rng = np.random.default_rng(11)
    exporters = [f"192.0.2.{i}" for i in range(1, 9)]
    for trial in range(6):
        fast, slow = win(max_flows=10**6), win(max_flows=10**6)
        slow._end_clock = lambda cols, wall_ms: None  # always the per-flow path
        runs = {"fast": [], "slow": []}
        wall = W
        for step in range(60):
            n = int(rng.integers(1, 200))
            live = exporters[:2 + min(step // 8, 6)] if trial % 2 else exporters
            ex = rng.choice(live, n)
            skew = np.array([int(e.rsplit(".", 1)[1]) * 700 for e in ex])  # clocks a little apart
            ends = T0 + step * 4 * S + rng.integers(-8 * S, 2 * S, n) - skew
            b = batch("10.0.0.1", "10.0.0.2", 443, time_end=ends, exporter=list(ex))
            wall += int(rng.integers(0, 6 * S))
            for name, w in (("fast", fast), ("slow", slow)):
                w.add(b, wall_ms=wall, run_due=lambda w=w, name=name: runs[name].append(
                    (w.clock, w.size, list(w.due()))))
        assert runs["fast"] == runs["slow"] and len(runs["fast"]) >= 2
        assert (fast.clock, fast.size, fast.counters, fast.closed_until, fast.next_end) == \
            (slow.clock, slow.size, slow.counters, slow.closed_until, slow.next_end)
