"""/metrics for confirmed delivery (issue 13): per collector identity the flows held unconfirmed,
spooled, resent and lost, the store's delivery block; a restarted collector ('collector@host:<new
pid>') replaces its predecessor, so every label set has one series."""
import re

from flowlens_web import metrics


def collector(cid, last_seen, **counters):
    """A collector as the store's ``exporters`` reply lists it (counters from its health event)."""
    base = {"unconfirmed_batches": 0, "unconfirmed_flows": 0, "spooled_batches": 0, "spool_bytes": 0,
            "spool_dropped_batches": 0, "spool_dropped_flows": 0, "spool_errors": 0, "unconfirmed_since": 0,
            "lost_flows": 0, "acked_batches": 10, "acked_flows": 163840, "resent_batches": 0, "resent_flows": 0,
            "resends": 0, "datagrams": 500}
    return {"collector": cid, "kind": "collector", "last_seen": last_seen, "counters": {**base, **counters},
            "listen": ["0.0.0.0:2055"], "socket": [{"port": 2055, "kernel_drops": 3}], "process": {}}


def exporter_row(cid, last_seen, flows):
    return {"exporter": "192.0.2.1", "observation_domain": 0, "collector": cid, "flows": flows, "packets": 10,
            "last_seen": last_seen, "store_flows": 900, "store_last_seen": last_seen}


STATUS = {"delivery": {"streams": 3, "duplicate_batches": 12, "duplicate_flows": 50340, "out_of_order_batches": 2,
                       "lost_flows": 357540, "lost_flows_by_stream": {"collector@a:1/1": 357540}}}


def render(collectors, rows=(), status=STATUS):
    return metrics.render(metrics.LatencyHistogram(), {"exporters": list(rows), "collectors": collectors}, status)


def samples(body):
    """name{labels} -> value, failing on any series given twice."""
    seen = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            assert key not in seen, f"duplicate series {key}"
            seen[key] = float(value)
    return seen


def test_delivery_figures_per_collector_and_from_the_store():
    body = render([collector("collector@a:1", 100_000, unconfirmed_flows=1_200_000, unconfirmed_batches=74,
                             spooled_batches=60, spool_bytes=47_185_920, unconfirmed_since=1_700_000_000_000,
                             resent_flows=50_340, resent_batches=4, spool_dropped_flows=357_540, lost_flows=357_540),
                   {"collector": "analyzer@a:7", "kind": "analyzer", "last_seen": 100_000, "counters": {}}])
    s = samples(body)
    c = '{collector="collector@a"}'
    assert s["flowlens_collector_unconfirmed_flows" + c] == 1_200_000
    assert s["flowlens_collector_unconfirmed_batches" + c] == 74
    assert s["flowlens_collector_spooled_batches" + c] == 60
    assert s["flowlens_collector_spool_bytes" + c] == 47_185_920
    assert s["flowlens_collector_flows_resent_total" + c] == 50_340
    assert s["flowlens_collector_flows_lost_total" + c] == 357_540
    assert s["flowlens_collector_spool_dropped_flows_total" + c] == 357_540
    assert s["flowlens_collector_unconfirmed_since_seconds" + c] == 1_700_000_000
    assert s["flowlens_store_duplicate_batches_total"] == 12 and s["flowlens_store_duplicate_flows_total"] == 50340
    assert s["flowlens_store_delivery_streams"] == 3 and s["flowlens_store_flows_lost_total"] == 357540
    assert s["flowlens_store_out_of_order_batches_total"] == 2
    assert "analyzer@a" not in body  # the analyzer's health report is no collector
    assert "# TYPE flowlens_collector_flows_lost_total counter" in body


def test_a_restarted_collector_replaces_its_predecessor():
    old, new = "collector@a:100", "collector@a:200"
    body = render([collector(old, 50_000, lost_flows=7, unconfirmed_flows=999),
                   collector(new, 90_000, unconfirmed_flows=16384),
                   collector("edge-1", 80_000)],  # a configured collector.instance_id: its own series
                  rows=[exporter_row(old, 49_000, 100), exporter_row(new, 89_000, 40)])
    s = samples(body)  # no label set twice
    assert s['flowlens_collector_unconfirmed_flows{collector="collector@a"}'] == 16384
    assert s['flowlens_collector_flows_lost_total{collector="collector@a"}'] == 0
    assert s['flowlens_collector_unconfirmed_flows{collector="edge-1"}'] == 0
    assert len([k for k in s if k.startswith("flowlens_collector_unconfirmed_flows{")]) == 2
    assert s['flowlens_collector_kernel_drops_total{collector="collector@a",port="2055"}'] == 3
    assert s['flowlens_exporter_flows_decoded_total{exporter="192.0.2.1",observation_domain="0"}'] == 40
    assert not re.search(r":(100|200)\b", body)


def test_collectors_without_delivery_counters_and_a_store_that_does_not_answer():
    older = collector("collector@b:1", 1000)
    older["counters"] = {"datagrams": 5}  # a collector from before confirmed delivery: no made-up zeros
    s = samples(render([older], status={"ring": {"fill": 1}}))
    assert not any(k.startswith("flowlens_collector_unconfirmed_flows{") for k in s)
    assert "flowlens_store_duplicate_flows_total" not in s
    body = metrics.render(metrics.LatencyHistogram(), None, None)
    assert "# TYPE flowlens_collector_flows_lost_total counter" in body and "flowlens_store_up 0" in body


def test_advisory_delivery_from_the_stores_events_block():
    status = {**STATUS, "events": {"streams": 2, "taken": 3120, "duplicates": 900, "lost": 4, "refused": 0}}
    s = samples(render([], status=status))
    assert s["flowlens_store_advisories_taken_total"] == 3120
    assert s["flowlens_store_advisories_duplicate_total"] == 900
    assert s["flowlens_store_advisories_lost_total"] == 4
    assert "flowlens_store_advisories_lost_total" not in samples(render([], status=STATUS))  # an older store


def test_the_stores_curve_gate_admitted_and_refused():
    status = {**STATUS, "security": {"curve": True, "authorized_keys": 3, "admitted": 12, "refused_total": 7,
                                     "refused_peers": [{"peer": "198.18.0.2"}], "handshake_failures": {}}}
    s = samples(render([], status=status))
    assert s["flowlens_store_curve_enabled"] == 1
    assert s["flowlens_store_peers_admitted_total"] == 12 and s["flowlens_store_peers_refused_total"] == 7
    off = samples(render([], status={**STATUS, "security": {"curve": False}}))
    assert off["flowlens_store_curve_enabled"] == 0 and "flowlens_store_peers_refused_total" not in off


def test_reverse_halves_of_biflow_records_per_exporter():
    row = {**exporter_row("collector@a/2055", 100_000, 40), "reverse_flows": 17}
    s = samples(render([collector("collector@a/2055", 100_000)], rows=[row]))
    assert s['flowlens_exporter_reverse_flows_total{exporter="192.0.2.1",observation_domain="0"}'] == 17


def test_the_rings_memory_from_the_stores_status():
    s = samples(render([], status={**STATUS, "ring": {"fill": 600_000, "bytes": 13_631_488}}))
    assert s["flowlens_ring_bytes"] == 13_631_488 and s["flowlens_ring_flows"] == 600_000
