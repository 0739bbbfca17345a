"""The supervisor's pure parts: the error line it quotes from a child's output, and the advisory
event it publishes about a crash loop (the contract of flowmodel.events)."""
from flowmodel.events import ADVISORY_FIELDS, ADVISORY_STATES, SEVERITIES
from flowmodel.supervisor import Crashloop, crashloop_event, last_error


def test_last_error_quotes_the_last_error_line_in_plain_words():
    store = ['ts=1 level=error service=store logger=flowlens_store msg="start failed" error="unable to open database file"',
             "flowlens-store: cannot start: unable to open database file",
             "ts=2 level=info service=store logger=flowlens_store.service msg=stopped flows_in=0"]
    assert last_error(store) == "flowlens-store: cannot start: unable to open database file"
    assert last_error(store[:1] + store[2:]) == "start failed: unable to open database file"
    web = ['ts=1 level=error service=web msg="[Errno 98] error while attempting to bind on address: address already in use"',
           "ts=2 level=info service=web msg=stopped"]
    assert last_error(web) == "[Errno 98] error while attempting to bind on address: address already in use"
    assert last_error(["Traceback (most recent call last):", '  File "x.py", line 1', "KeyError: 'port'"]) == "KeyError: 'port'"
    assert last_error(['{"level": "error", "msg": "start failed", "error": "boom"}']) == "start failed: boom"
    assert last_error(["ts=1 level=info msg=ready"]) == "no error line; its last line was: ready"
    assert last_error([]) == "no output"


def test_crashloop_event_is_an_advisory_the_analyzer_will_not_adopt():
    loop = Crashloop("store", 1_000, 2_000, crashes=4, exit_code=1, backoff_s=4.0, max_backoff_s=300.0,
                     error="flowlens-store: cannot start: unable to open database file")
    for state in ("raised", "updated", "resolved"):
        event = crashloop_event(loop, state)
        assert set(event) == set(ADVISORY_FIELDS), event
        assert (event["severity"], event["state"], event["subject"]) == ("CRITICAL", state, "store")
        assert event["severity"] in SEVERITIES and event["state"] in ADVISORY_STATES
        assert "unable to open database file" in event["description"]
        # the analyzer adopts open advisories whose key is its own '<analyzer>:<subject>'
        assert event["key"] != f"{event['analyzer']}:{event['subject']}"
    assert "after 4 s, then after longer waits up to 300 s" in crashloop_event(loop, "raised")["description"]
    loop.backoff_s = 300.0
    assert "restarts it every 300 s" in crashloop_event(loop, "updated")["description"]


def _up_args(config, services="store,analyzer,web,collector"):
    import argparse

    return argparse.Namespace(config=str(config), collector_config=[], services=services, stop_timeout=5.0,
                              max_backoff=1.0, stable_after=1.0)


def test_up_starts_the_notifier_only_with_targets_and_a_store(tmp_path):
    import pytest
    import yaml

    from flowmodel.supervisor import Supervisor

    plain = tmp_path / "plain.yaml"
    plain.write_text("log: {level: warning}\n")
    with_targets = tmp_path / "notify.yaml"
    with_targets.write_text(yaml.safe_dump({"log": {"level": "warning"}, "notify": {"targets": [
        {"name": "siem", "type": "syslog", "host": "127.0.0.1"}]}}))
    names = lambda sup: [c.name for c in sup.children]
    assert names(Supervisor.from_args(_up_args(plain))) == ["store", "analyzer", "web", "collector"]
    assert names(Supervisor.from_args(_up_args(with_targets))) == ["store", "analyzer", "web", "notifier", "collector"]
    assert names(Supervisor.from_args(_up_args(with_targets, "collector"))) == ["collector"]  # a collector box
    with pytest.raises(SystemExit):
        Supervisor.from_args(_up_args(plain, "store,notifier"))  # asked for, but nowhere to send


def test_up_starts_the_poller_only_with_snmp_targets_and_a_store(tmp_path):
    import pytest
    import yaml

    from flowmodel.supervisor import Supervisor

    plain = tmp_path / "plain.yaml"
    plain.write_text("log: {level: warning}\n")
    with_agents = tmp_path / "snmp.yaml"
    with_agents.write_text(yaml.safe_dump({"log": {"level": "warning"}, "snmp": {"targets": [
        {"exporter": "192.0.2.1", "community": "public"}]}}))
    names = lambda sup: [c.name for c in sup.children]
    assert names(Supervisor.from_args(_up_args(with_agents))) == ["store", "analyzer", "web", "poller", "collector"]
    assert names(Supervisor.from_args(_up_args(with_agents, "collector"))) == ["collector"]  # a collector box
    with pytest.raises(SystemExit):
        Supervisor.from_args(_up_args(plain, "store,poller"))  # asked for, but no agent to walk


def test_up_refuses_a_daily_report_it_has_no_email_target_for(tmp_path, capsys):
    """report.email_to without an email target in notify.targets would send nothing, silently (no
    targets: no notifier); up stops at start naming the keys, as the notifier itself would."""
    import pytest
    import yaml

    from flowmodel.supervisor import Supervisor

    def config(name, targets):
        path = tmp_path / name
        path.write_text(yaml.safe_dump({"log": {"level": "warning"}, "report": {"email_to": ["noc@example.net"]},
                                        "notify": {"targets": targets}}))
        return path

    syslog = {"name": "siem", "type": "syslog", "host": "127.0.0.1"}
    mail = {"name": "noc-mail", "type": "email", "host": "127.0.0.1", "from": "f@example.net", "to": ["n@example.net"]}
    for path in (config("none.yaml", []), config("syslog.yaml", [syslog])):
        with pytest.raises(SystemExit) as stop:
            Supervisor.from_args(_up_args(path))
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert "report.email_to" in err and "notify.targets" in err and "email" in err
    names = [c.name for c in Supervisor.from_args(_up_args(config("mail.yaml", [syslog, mail]))).children]
    assert names == ["store", "analyzer", "web", "notifier", "collector"]
    assert [c.name for c in Supervisor.from_args(_up_args(config("box.yaml", []), "collector")).children] == ["collector"]
