from flowlens_analyzer import health
from flowlens_analyzer.common import Context

from flows import config

S = 1000


def event(seq, *, last_seen, lost=0, drops=0, expired=0, waiting=0, errors=0):
    return {"kind": "collector", "collector": "collector@a:1", "source": "collector@a:1", "seq": seq,
            "socket": [{"port": 2055, "rcvbuf_requested": 8 << 20, "rcvbuf_granted": 425984, "kernel_drops": drops}],
            "exporters": [{"exporter": "192.0.2.1", "observation_domain": 0, "version": 9, "packets": 100 * seq,
                           "flows": 1000 * seq, "decode_errors": {"short": errors}, "sequence_lost": lost,
                           "pending_sets": waiting, "pending_bytes": 300 * waiting, "pending_expired": expired,
                           "last_seen": last_seen}]}


def test_losses_drops_and_template_trouble_are_reported_once_per_increase():
    ctx, st = Context(config()), health.HealthState()
    st.observe(event(1, last_seen=100 * S), 100 * S)
    st.observe(event(2, last_seen=105 * S, lost=12, drops=40, expired=7, errors=2), 105 * S)
    found = {f.key: f for f in health.analyze(st, ctx, 106 * S, {"collector@a:1": 3})}
    assert set(found) == {"health:sequence 192.0.2.1/0", "health:drops collector@a:1:2055", "health:templates 192.0.2.1/0",
                          "health:decode 192.0.2.1/0", "health:bus collector@a:1"}
    assert found["health:sequence 192.0.2.1/0"].description.startswith("Exporter 192.0.2.1 (observation domain 0) lost 12 export")
    assert "lost 40 datagrams in the kernel receive buffer of UDP port 2055" in found["health:drops collector@a:1:2055"].description
    assert "collector.buffer_size" in found["health:drops collector@a:1:2055"].action
    assert "missed 3 bus messages" in found["health:bus collector@a:1"].description
    # Nothing new since: nothing found.
    assert health.analyze(st, ctx, 107 * S, {"collector@a:1": 3}) == []


def test_exporter_that_stopped_sending_is_critical():
    ctx, st = Context(config(exporter_silence="2m")), health.HealthState()
    st.observe(event(1, last_seen=100 * S), 300 * S)
    found = health.analyze(st, ctx, 300 * S, {})
    [f] = [f for f in found if f.key == "health:exporter 192.0.2.1/0"]
    assert f.severity == "CRITICAL"
    assert f.description.startswith("Exporter 192.0.2.1 (observation domain 0) stopped sending 3 min ago (last export packet at 00:01")
    assert f.filter["exporter"] == "192.0.2.1"


def test_waiting_records_and_silent_collector():
    ctx, st = Context(config()), health.HealthState()
    st.observe(event(1, last_seen=100 * S, waiting=5), 100 * S)
    [f] = health.analyze(st, ctx, 101 * S, {})
    assert f.severity == "INFO" and "5 data sets (1,500 bytes) from 192.0.2.1" in f.description
    found = {f.key for f in health.analyze(st, ctx, 400 * S, {})}
    assert "health:collector collector@a:1" in found


def test_healthy_collector_raises_nothing_and_restart_is_not_a_loss():
    ctx, st = Context(config()), health.HealthState()
    st.observe(event(5, last_seen=100 * S, lost=50), 100 * S)
    st.observe(event(1, last_seen=101 * S, lost=0), 101 * S)  # restarted: counters began again
    st.observe(event(2, last_seen=106 * S, lost=0), 106 * S)
    assert health.analyze(st, ctx, 107 * S, {}) == []


def test_flows_arriving_after_their_window_are_reported_per_exporter():
    import numpy as np

    from flowlens_analyzer.window import FlowWindow
    from flows import T0, batch

    w = FlowWindow(window_ms=60 * S, interval_ms=60 * S, watermark_ms=30 * S, max_flows=1000, idle_after_ms=5 * S)
    w.add(batch("10.0.0.1", "10.0.0.2", 443, time_end=np.array([T0 + S, T0 + 95 * S])), wall_ms=T0 + 100 * S)
    assert list(w.due()) == [T0 + 60 * S]
    w.add(batch("10.0.0.1", "10.0.0.2", 443, time_end=T0 + 2 * S, exporter="192.0.2.9", n=3), wall_ms=T0 + 100 * S)
    ctx, st = Context(config()), health.HealthState()
    [f] = health.analyze(st, ctx, T0 + 101 * S, {}, w.late_by_exporter)
    assert f.key == "health:late 192.0.2.9"
    assert f.description.startswith("3 flows from exporter 192.0.2.9 arrived more than 30 s after their time")
    assert "NTP" in f.action
    assert health.analyze(st, ctx, T0 + 102 * S, {}, w.late_by_exporter) == []
