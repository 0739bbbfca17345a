"""The collector's health events under issue 13 item 5: the whole exporter table first, then only
the rows that changed, the whole table again when a subscription to health events reaches the
collector's bus socket (a store started again); and the default id, the same across restarts."""
from __future__ import annotations

import socket

import zmq

from flowlens_collector.service import Collector, default_source_id
from flowmodel import bus
from flowmodel.config import load_config

from packet_builders import EXP, v5_packet


def _collector(tmp_path, **overrides) -> Collector:
    cfg = load_config(None, env={}, overrides={"collector.template_path": str(tmp_path / "templates.json"),
                                               "collector.spool_path": "", **overrides})
    return Collector(cfg)  # inert: no sockets until start()


def test_the_whole_table_first_then_changed_rows_then_whole_on_a_new_subscription(tmp_path):
    c = _collector(tmp_path)
    c._decode([v5_packet(2, 0), v5_packet(2, 0)], [EXP, ("192.0.2.2", 4000)])
    first = c.reports.health_event(1_000)
    assert first["exporters_full"] is True and len(first["exporters"]) == 2
    c._decode([v5_packet(2, 2)], [EXP])
    second = c.reports.health_event(2_000)
    assert second["exporters_full"] is False and [r["exporter"] for r in second["exporters"]] == [EXP[0]]
    assert c.reports.health_event(3_000)["exporters"] == []  # nothing changed since
    ctx = zmq.Context()
    try:
        c._pub = ctx.socket(zmq.XPUB)
        c._pub.bind("inproc://health-table")
        sub = ctx.socket(zmq.SUB)
        sub.connect("inproc://health-table")
        sub.setsockopt(zmq.SUBSCRIBE, bus.TOPIC_EXPORTER)  # a store subscribing again
        assert c._pub.poll(2000, zmq.POLLIN)
        c._read_subscriptions()
        again = c.reports.health_event(4_000)
        assert again["exporters_full"] is True and len(again["exporters"]) == 2
        sub.close(0)
    finally:
        c._pub.close(0)
        ctx.term()
    assert c.reports.health_event(5_000)["exporters_full"] is False


def test_the_default_id_names_the_host_and_port_not_the_process(tmp_path):
    c = _collector(tmp_path, **{"collector.netflow_port": 9995})
    assert c.source_id == default_source_id(c.cfg) == f"collector@{socket.gethostname()}/9995"
    assert _collector(tmp_path, **{"collector.instance_id": "edge-1"}).source_id == "edge-1"
