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


REPORTING_MAIN = '''
import os
import sys
from flowmodel.lifecycle import service_main

class Reporting:
    def __init__(self, cfg):
        self.cfg = cfg
    def config_report(self):
        return {"notify.targets": "[{'password': '(set)'}]", "log.level": self.cfg["log.level"]}
    def start(self): pass
    def run(self): pass
    def request_stop(self): pass
    def stop(self): pass

sys.exit(service_main(sys.argv[1:], prog="flowlens-test", kind="test", description="test", sections=("log",),
                      build=Reporting, report_config=os.environ["REPORT"] == "yes"))
'''


@pytest.mark.parametrize("report", [True, False])
def test_service_main_logs_the_services_own_config_report(tmp_path, report):
    """report_config: the service's redacted report is a config line of its own, after the sections'."""
    import os
    import subprocess
    import sys

    config = tmp_path / "flowlens.yaml"
    config.write_text("log:\n  level: info\n")
    out = subprocess.run([sys.executable, "-c", REPORTING_MAIN, "--config", str(config)], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "REPORT": "yes" if report else "no"})
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if "msg=config" in line]
    assert len(lines) == (2 if report else 1), out.stderr
    assert "log.level=info" in lines[0]
    assert ("(set)" in lines[-1]) is report
