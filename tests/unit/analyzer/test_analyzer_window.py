import numpy as np

from flowlens_analyzer.engine import Engine
from flowlens_analyzer.window import FlowWindow

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


def test_engine_same_flows_same_advisories_in_any_batching():
    cfg = config(scan_threshold=50, interval="10s", watermark="5s")
    ports = np.arange(1, 201)
    rng = np.random.default_rng(3)
    ends = T0 + rng.integers(0, 50_000, len(ports))
    flows = batch("10.0.0.9", "10.0.0.5", ports, packets=1, tcp_flags=2, time_end=ends)
    tail = at(T0 + 200 * S)

    def run(chunks):
        e = Engine(cfg)
        events = []
        for c in chunks:
            e.add(c, wall_ms=T0)
            events += e.poll(T0)
        e.add(tail, wall_ms=T0)
        return events + e.poll(T0)

    one = run([flows])
    order = np.argsort(ends)
    many = run([flows.select(order[i:i + 7]) for i in range(0, len(ports), 7)])
    strip = lambda evs: [(e["key"], e["state"], e["first_seen"], e["description"]) for e in evs]
    assert strip(one) == strip(many)
    assert "scan:10.0.0.9" in {e["key"] for e in one}


def test_mask_prefix_matches_flowmodel_mask_column():
    from flowlens_analyzer.common import mask_prefix
    from flowmodel import addr

    a = addr.from_texts(["10.1.2.3", "192.168.5.77", "2001:db8:1:2:3:4:5:6", "255.255.255.255", "::1", "fe80::1:2"])
    for p4, p6 in ((24, 64), (16, 48), (32, 128), (0, 0), (8, 72)):
        assert addr.column_to_text(mask_prefix(a, p4, p6)) == addr.column_to_text(addr.mask_column(a, p4, p6))
