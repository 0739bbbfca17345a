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
    assert "collector.socket_buffer" in found["health:drops collector@a:1:2055"].action
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


def restarted(cid, seq, *, last_seen, exporter="192.0.2.1"):
    e = event(seq, last_seen=last_seen)
    e["collector"] = e["source"] = cid
    e["exporters"][0]["exporter"] = exporter
    return e


def test_collector_restart_under_a_new_pid_leaves_no_false_silence():
    # review 4, finding 3: the exporter kept sending through the restarted collector, yet "stopped sending"
    # and "collector has not reported" were raised against the old id and never resolved.
    ctx, st = Context(config(exporter_silence="2m")), health.HealthState()
    st.observe(restarted("collector@h:100", 50, last_seen=100 * S), 100 * S)
    st.observe(restarted("collector@h:200", 1, last_seen=110 * S), 110 * S)  # the same host, a new pid
    assert list(st.collectors) == ["collector@h:200"] and st.forgotten == 1
    for t in range(120, 1200, 10):  # the exporter keeps sending through the new collector
        st.observe(restarted("collector@h:200", t, last_seen=t * S), t * S)
        assert health.analyze(st, ctx, t * S, {}) == []


def test_a_collector_restarting_under_its_own_id_does_not_make_its_exporter_look_stopped():
    # The CI failure of test_collector_restart_raises_no_silence_advisories: the time a restarting
    # collector cannot report (down, then its first stats interval) counted as the exporter's silence.
    ctx, st = Context(config(exporter_silence="2m")), health.HealthState()
    cid = "collector@h/2055"
    st.observe(restarted(cid, 40, last_seen=100 * S), 100 * S)
    st.observe(restarted(cid, 50, last_seen=100 * S), 150 * S)  # its last event, at stop: nothing since 100
    assert health.analyze(st, ctx, 219 * S, {}) == []
    # 120 s after the exporter's last packet, the collector not yet back: it is not silent (its next
    # report is not overdue by exporter_silence), so neither is the exporter
    assert health.analyze(st, ctx, 260 * S, {}) == []
    st.observe(restarted(cid, 1, last_seen=264 * S), 265 * S)  # the new process: the exporter is there
    assert health.analyze(st, ctx, 265 * S, {}) == []
    # while the collector reports, an exporter it stops hearing is reported once its report says so
    st.observe(restarted(cid, 2, last_seen=264 * S), 383 * S)
    assert health.analyze(st, ctx, 384 * S, {}) == []
    st.observe(restarted(cid, 3, last_seen=264 * S), 385 * S)
    assert [f.key for f in health.analyze(st, ctx, 385 * S, {})] == ["health:exporter 192.0.2.1/0"]


def test_exporter_reaching_two_collectors_is_judged_by_its_newest_packet():
    ctx, st = Context(config(exporter_silence="2m")), health.HealthState()
    st.observe(restarted("collector@a:1", 1, last_seen=100 * S), 1000 * S)  # a collector that still reports
    st.observe(restarted("collector@b:1", 1, last_seen=990 * S), 1000 * S)  # where the exporter sends now
    assert [f.key for f in health.analyze(st, ctx, 1000 * S, {})] == []
    found = {f.key: f for f in health.analyze(st, ctx, 1170 * S, {})}
    assert "health:exporter 192.0.2.1/0" in found  # silent on both: reported once, from the newest packet
    assert "stopped sending 3 min ago" in found["health:exporter 192.0.2.1/0"].description


def test_a_collector_gone_for_long_is_forgotten_so_its_advisories_resolve():
    ctx, st = Context(config(exporter_silence="2m")), health.HealthState()
    st.observe(restarted("ingest-1", 1, last_seen=100 * S), 100 * S)  # a configured id: no pid to compare
    keys = {f.key for f in health.analyze(st, ctx, 400 * S, {})}
    assert keys == {"health:collector ingest-1", "health:exporter 192.0.2.1/0"}
    assert health.analyze(st, ctx, (100 + 1200) * S, {}) == []  # 10 x exporter_silence later: forgotten
    assert st.collectors == {} and st.exporters == {} and st.forgotten == 1


class Window:
    """The counters of a FlowWindow, as the service hands them to the health state."""

    def __init__(self):
        self.counters = {"flows": 0, "overflow": 0}
        self.future_by_exporter, self.ahead_ms_by_exporter = {}, {}


def test_flows_shed_by_the_window_are_a_warning_in_words():
    ctx, st = Context(config(max_window_flows=600_000)), health.HealthState()
    st.window = w = Window()
    assert health.analyze(st, ctx, 0, {}) == []
    w.counters.update(flows=1_000_000, overflow=0)
    assert health.analyze(st, ctx, 10 * S, {}) == []
    for t in range(20, 90, 10):  # 100,000 flows/s arrive, 40,000/s are shed
        w.counters.update(flows=w.counters["flows"] + 1_000_000, overflow=w.counters["overflow"] + 400_000)
        [f] = health.analyze(st, ctx, t * S, {})
    assert f.key == "health:analysis shed" and f.severity == "WARNING"
    assert f.description.startswith("Analysis saw only 3,600,000 of 6,000,000 flows in the last minute: 2,400,000 flows "
                                    "beyond analysis.max_window_flows (600,000) were dropped")
    assert f.action.startswith("Raise analysis.max_window_flows")
    assert f.evidence["shed_flows"] == 2_400_000
    w.counters["flows"] += 5
    assert health.analyze(st, ctx, 100 * S, {}) != []  # still within the minute
    assert health.analyze(st, ctx, 200 * S, {}) == []  # a quiet minute: nothing shed


def test_exporter_clock_ahead_is_named():
    ctx, st = Context(config()), health.HealthState()
    st.window = w = Window()
    w.future_by_exporter[bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 9])] = 745
    w.ahead_ms_by_exporter[bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 9])] = 240_000
    [f] = health.analyze(st, ctx, 10 * S, {})
    assert f.key == "health:clock 192.0.2.9"
    assert f.description.startswith("745 flows from exporter 192.0.2.9 ended after the analyzer's clock")
    assert "up to 4 min in the future" in f.description and f.action == "Check the clock of 192.0.2.9 (NTP)"
    assert health.analyze(st, ctx, 20 * S, {}) == []


# ---------------------------------------------------------------- confirmed delivery (issue 13)

MiB = 1 << 20


def delivery_event(seq, sent_at, *, cid="collector@a:1", held=0, since=0, spool=0, dropped=0, lost=0):
    """A collector health event as flowlens_collector's health_event builds it (delivery counters)."""
    return {"kind": "collector", "collector": cid, "source": cid, "seq": seq, "sent_at": sent_at, "schema": 2,
            "counters": {"datagrams": 1000 * seq, "pending_flows": 0, "unconfirmed_batches": held // 16384,
                         "unconfirmed_flows": held, "spooled_batches": spool // (500 * 1024), "spool_bytes": spool,
                         "spool_dropped_batches": dropped // 16384, "spool_dropped_flows": dropped, "spool_errors": 0,
                         "unconfirmed_since": since, "lost_flows": lost, "acked_batches": 40, "acked_flows": 655360,
                         "resent_batches": 0, "resent_flows": 0, "resends": 0},
            "socket": [], "exporters": [], "listen": ["0.0.0.0:2055"],
            "config": {"collector.spool_path": "data/spool", "collector.spool_max_bytes": 512 * MiB}}


def by_key(findings):
    return {f.key: f for f in findings}


def test_store_not_confirming_is_a_warning_after_30_s_then_resolves():
    from flowlens_analyzer.lifecycle import AdvisoryBook

    ctx, st = Context(config()), health.HealthState()
    book = AdvisoryBook(resolve_after_ms=60 * S, update_every_ms=300 * S, update_change=0.25)
    st.observe(delivery_event(1, 100 * S), 100 * S)
    st.observe(delivery_event(2, 110 * S, held=300_000, since=105 * S), 110 * S)
    assert health.analyze(st, ctx, 111 * S, {}) == []  # 6 s: the store may just be slow to commit
    st.observe(delivery_event(3, 230 * S, held=1_200_000, since=105 * S, spool=45 * MiB), 230 * S)
    f = by_key(health.analyze(st, ctx, 230 * S, {}))["health:unconfirmed collector@a:1"]
    assert f.severity == "WARNING"
    assert f.description == ("Collector collector@a:1 has 1,200,000 flows the store has not confirmed for 2 min: "
                             "the store may be down or slow; they are kept in its spool (47.2 MB of 536.9 MB)")
    assert f.evidence["unconfirmed_seconds"] == 125 and f.evidence["spool_max_bytes"] == 512 * MiB
    [raised] = book.fold([f], 230 * S)
    assert raised["state"] == "raised"
    # the store confirms again: nothing found; the advisory resolves after resolve_after
    st.observe(delivery_event(4, 240 * S, held=16384, since=0), 240 * S)
    assert health.analyze(st, ctx, 240 * S, {}) == []
    assert [e["state"] for e in book.fold([], 310 * S)] == ["resolved"]


def test_clock_of_the_collector_is_not_compared_with_ours():
    ctx, st = Context(config()), health.HealthState()
    # the collector's clock is an hour behind the analyzer's: 40 s without confirmation is 40 s
    st.observe(delivery_event(1, 3600 * S + 40 * S, held=5000, since=3600 * S), 7200 * S + 40 * S)
    [f] = health.analyze(st, ctx, 7200 * S + 40 * S, {})
    assert "5,000 flows the store has not confirmed for 40 s" in f.description
    assert "they are kept in its memory" in f.description


def test_spool_full_makes_it_critical_and_the_stores_count_is_one_loss_advisory():
    ctx, st = Context(config()), health.HealthState()
    st.observe(delivery_event(1, 100 * S, dropped=7000), 100 * S)  # 7,000 dropped in an earlier outage
    st.observe(delivery_event(2, 110 * S, held=2_000_000, since=105 * S, spool=512 * MiB, dropped=7000), 110 * S)
    st.observe(delivery_event(3, 200 * S, held=9_000_000, since=105 * S, spool=512 * MiB, dropped=127_000), 200 * S)
    f = by_key(health.analyze(st, ctx, 200 * S, {}))["health:unconfirmed collector@a:1"]
    assert f.severity == "CRITICAL"
    assert f.description.endswith("they are kept in its spool (536.9 MB of 536.9 MB), which is full: "
                                  "the oldest 120,000 flows were dropped")
    # the store is back (4 min after it stopped confirming) and counts what it never got
    st.observe(delivery_event(4, 345 * S, held=16384, dropped=127_000, lost=120_000), 345 * S)
    found = by_key(health.analyze(st, ctx, 346 * S, {}))
    assert set(found) == {"health:lost collector@a:1"}
    lost = found["health:lost collector@a:1"]
    assert lost.severity == "CRITICAL"
    assert lost.description.startswith("Collector collector@a:1 dropped 120,000 flows while the store was "
                                       "unreachable for 4 min: its spool (536.9 MB) was full")
    assert lost.evidence["lost_flows"] == 120_000
    # reported once: the next run finds nothing, so the advisory resolves
    st.observe(delivery_event(5, 355 * S, lost=120_000), 355 * S)
    assert health.analyze(st, ctx, 356 * S, {}) == []
    # the store counts one more flow lost later on (in words: 1 flow)
    st.observe(delivery_event(6, 365 * S, lost=120_001), 365 * S)
    [more] = health.analyze(st, ctx, 366 * S, {})
    assert " dropped 1 flow while the store was unreachable for 4 min" in more.description


def test_loss_after_a_collector_restart_counts_from_zero_but_not_at_our_start():
    ctx, st = Context(config()), health.HealthState()
    # the analyzer starts while the collector already reports an old loss: not reported again
    st.observe(delivery_event(10, 100 * S, lost=5000), 100 * S)
    assert health.analyze(st, ctx, 101 * S, {}) == []
    # the collector restarts (new pid) and the store reports a loss of its spooled stream
    st.observe(delivery_event(1, 110 * S, cid="collector@a:2", lost=800), 110 * S)
    [f] = health.analyze(st, ctx, 111 * S, {})
    assert f.key == "health:lost collector@a:2"
    assert f.description.startswith("Collector collector@a:2 dropped 800 flows while the store was unreachable: ")
    assert "health:lost collector@a:1" not in by_key(health.analyze(st, ctx, 112 * S, {}))
