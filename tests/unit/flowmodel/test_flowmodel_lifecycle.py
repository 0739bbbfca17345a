"""flowmodel.lifecycle.Components: start in order, stop in reverse, once each, after a failed start too."""
import logging

import pytest

from flowmodel.lifecycle import Components, StartError


def parts(log: list, fail_start: str = "", fail_stop: str = ""):
    c = Components("test")

    def step(name, what, fail):
        def run():
            log.append(f"{what} {name}")
            if name == fail:
                raise OSError(f"{name} is broken")
        return run

    for name in ("bus", "writer", "queries"):
        c.add(name, step(name, "start", fail_start), step(name, "stop", fail_stop))
    return c


def test_started_in_order_and_stopped_in_reverse_once():
    log = []
    c = parts(log)
    c.start()
    assert c.started == ["bus", "writer", "queries"]
    c.stop()
    c.stop()
    assert log == ["start bus", "start writer", "start queries", "stop queries", "stop writer", "stop bus"]


def test_a_failed_start_stops_only_what_started_and_names_the_part():
    log = []
    c = parts(log, fail_start="writer")
    with pytest.raises(StartError, match="writer: writer is broken") as err:
        c.start()
    assert err.value.part == "writer"
    assert log == ["start bus", "start writer", "stop bus"]
    c.stop()  # the service's own stop after the failed start: nothing left to stop
    assert log[-1] == "stop bus" and c.started == []


def test_a_part_that_fails_to_stop_does_not_keep_the_others_running(caplog):
    log = []
    c = parts(log, fail_stop="writer")
    c.start()
    with caplog.at_level(logging.ERROR):
        c.stop()
    assert log[3:] == ["stop queries", "stop writer", "stop bus"]
    assert c.stop_errors == 1 and "part failed to stop" in caplog.text


def test_parts_without_a_start_or_stop_and_duplicate_names():
    log = []
    c = Components("test")
    c.add("socket", None, lambda: log.append("close"))
    c.add("thread", lambda: log.append("spawn"), None)
    with pytest.raises(ValueError, match="already added"):
        c.add("socket")
    c.start()
    c.stop()
    assert log == ["spawn", "close"]
