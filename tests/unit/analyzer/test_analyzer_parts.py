"""The analyzer's parts start in order and stop in reverse through flowmodel.lifecycle.Components: a
stop is safe before a start and twice after one; a part that fails to start stops what started and
raises its own error (real ZeroMQ sockets; nothing listens at the endpoints, which ZeroMQ allows)."""
from __future__ import annotations

import pytest

from flowlens_analyzer.service import AnalyzerService
from flowmodel.config import Config, load_config


def _analyzer(**overrides) -> AnalyzerService:
    cfg = load_config(None, env={}, overrides={
        "bus.publish_endpoint": "tcp://127.0.0.1:1", "bus.subscribe_endpoint": "tcp://127.0.0.1:1",
        "bus.events_endpoint": "tcp://127.0.0.1:1", "query.endpoint": "tcp://127.0.0.1:1", **overrides})
    return AnalyzerService(cfg)


def test_parts_start_in_order_and_stop_in_reverse_once():
    a = _analyzer()
    a.stop()  # before a start: nothing to stop
    assert a.parts.started == []
    a.start()
    assert a.parts.started == ["context", "publisher", "subscriber", "events", "silences", "flush at stop"]
    assert a.pub is not None and a.sub is not None and a.events is not None
    a.stop()
    assert a.parts.started == [] and a.pub is None and a.sub is None and a._ctx is None
    assert a.silence_reader._stop.is_set()  # the silences reader was asked to stop
    a.stop()  # twice: nothing more


def test_a_part_that_fails_stops_what_started_and_raises_its_error():
    # the subscriber's connect fails: load_config refuses a malformed endpoint, so it goes in past it
    a = AnalyzerService(Config({**_analyzer().cfg, "bus.subscribe_endpoint": "tcp://no such host:"}))
    with pytest.raises(Exception) as e:
        a.start()
    assert type(e.value).__name__ != "StartError" and "Invalid argument" in str(e.value)
    assert a.parts.started == [] and a.pub is None and a._ctx is None
    a.stop()
