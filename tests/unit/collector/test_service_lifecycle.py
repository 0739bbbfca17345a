"""The collector's parts start in order and stop in reverse through flowmodel.lifecycle.Components:
a start that fails at a taken port stops what started and raises the bind error itself; a stop is
safe before a start and twice after one (real UDP sockets on 127.0.0.1, a real ZeroMQ context)."""
from __future__ import annotations

import socket

import pytest

from support.services import free_ports
from flowlens_collector.service import Collector
from flowmodel.config import load_config


def _collector(tmp_path, port: int) -> Collector:
    cfg = load_config(None, env={}, overrides={
        "collector.template_path": str(tmp_path / "templates.json"), "collector.spool_path": str(tmp_path / "spool"),
        "collector.bind_address": "127.0.0.1", "collector.netflow_port": port, "collector.ipfix_port": 0,
        "collector.sflow_port": 0, "bus.publish_endpoint": "tcp://127.0.0.1:1",
        "bus.subscribe_endpoint": "tcp://127.0.0.1:1"})
    return Collector(cfg)


def test_parts_start_in_order_and_stop_in_reverse_once(tmp_path):
    c = _collector(tmp_path, free_ports(1, socket.SOCK_DGRAM)[0])
    c.stop()  # before a start: nothing to stop
    assert c.parts.started == []
    c.start()
    assert c.parts.started == ["enrichment", "templates", "listeners", "bus", "spool", "sequence state", "delivery", "receive loop",
                               "flush at stop"]
    port = c.listeners[0].port
    assert port == c.cfg["collector.netflow_port"]
    c.stop()
    assert c.parts.started == [] and c.listeners == [] and c._ctx is None
    assert (tmp_path / "templates.sequences.json").exists()  # the flush at stop saved the state
    c.stop()  # twice: nothing more
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", port))  # the listener is closed


def test_a_taken_port_stops_what_started_and_raises_the_bind_error(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        c = _collector(tmp_path, taken.getsockname()[1])
        with pytest.raises(OSError) as e:
            c.start()
        assert not isinstance(e.value, RuntimeError) and "Address already in use" in str(e.value)
        assert c.parts.started == [] and c._ctx is None and c.listeners == []
        c.stop()
