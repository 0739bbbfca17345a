"""The daily report's schedule and its place in the state file (flowlens_notifier.dailyreport): due
once report.send_at has passed, for the day before, once; after a failure, again with growing waits."""
from __future__ import annotations

import datetime as dt

import pytest

from flowmodel.config import ConfigError, load_config
from flowlens_notifier.dailyreport import DailyReport, report_target

MAIL = {"name": "mail", "type": "email", "host": "127.0.0.1", "port": 2525, "from": "f@example.net", "to": ["a@example.net"]}
HOOK = {"name": "hook", "type": "webhook", "url": "http://127.0.0.1:1/x"}
DAY = dt.date(2026, 12, 4)
MIDNIGHT = int(dt.datetime(2026, 12, 5, tzinfo=dt.timezone.utc).timestamp() * 1000)


def config(tmp_path, **report):
    path = tmp_path / "f.yaml"
    import yaml
    path.write_text(yaml.safe_dump({"notify": {"targets": [HOOK, MAIL]}, "report": report}))
    return load_config(str(path), env={})


def test_the_report_goes_through_the_named_or_first_email_target(tmp_path):
    assert report_target(config(tmp_path)) is None  # no email_to: no report
    assert report_target(config(tmp_path, email_to=["b@example.net"]))["name"] == "mail"
    assert report_target(config(tmp_path, email_to=["b@example.net"], target="mail"))["name"] == "mail"
    # a target that is missing or not an email one is refused when the config loads
    with pytest.raises(ConfigError, match="report.target 'hook' is a webhook target"):
        config(tmp_path, email_to=["b@example.net"], target="hook")


def test_due_after_send_at_at_the_offset_once_per_day_and_retried_later(tmp_path):
    cfg = config(tmp_path, email_to=["b@example.net"], send_at="06:30", utc_offset="+01:00")
    d = DailyReport(cfg, MAIL, clock=lambda: now)
    now = MIDNIGHT + 5 * 3_600_000 + 29 * 60_000           # 06:29 at +01:00
    assert d.due_day(now) is None
    now += 60_000                                          # 06:30
    assert d.due_day(now) == DAY
    d.results.put((DAY, False, "refused"))
    assert d.collect() and d.counters["failed"] == 1
    assert d.due_day(now + 59_000) is None and d.due_day(now + 60_000) == DAY  # 1 min, then 2, 4...
    d.results.put((DAY, True, ""))
    now += 60_000
    assert d.collect() and d.counters == {"sent": 1, "failed": 1, "retried": 1, "checks": 4}
    assert d.due_day(now + 3_600_000) is None              # sent: not again that day
    # a restart reads the state: still not again; the next morning, the next day
    again = DailyReport(cfg, MAIL, clock=lambda: now)
    again.load_state(d.to_state())
    assert again.due_day(now) is None
    assert again.due_day(now + 86_400_000) == DAY + dt.timedelta(days=1)
