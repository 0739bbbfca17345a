"""The notifier through real processes and real receivers on loopback: a replayed nmap capture through
collector, analyzer and store gives each target (webhook, email, syslog over UDP and TCP) one
notification per advisory raised and one on its resolution; a failing webhook is retried, counted
and raises a WARNING advisory of its own; a burst of 1,000 advisories is one message per target per
grouping interval; a notifier restart loses and repeats none. Advisories not from the analyzer
travel the store's events socket the way the analyzer sends them (flowmodel.eventbox)."""
from __future__ import annotations

import collections
import re

from support.notify import FAST_NOTIFY, Injector, advisory, flowlens, notifier_counters, targets
from support.receivers import SmtpReceiver, SyslogReceiver, WebhookReceiver
from support.services import ServiceProcess, ServiceStack, send_udp, wait_until
from test_analyzer_scenarios import FAST, payloads



def test_replayed_scan_gives_each_target_one_notification_and_one_on_resolution(tmp_path):
    with WebhookReceiver() as hook, SmtpReceiver() as smtp, SyslogReceiver("udp") as udp, SyslogReceiver("tcp") as tcp:
        receivers = {"hook": hook, "mail": smtp, "siem-udp": udp, "siem-tcp": tcp}
        notify = {**FAST_NOTIFY, "state_path": str(tmp_path / "notifier.json"),
                  "targets": targets(hook, smtp, udp, tcp),
                  "rules": [{"analyzer": ["scan"], "targets": list(receivers)}]}
        with ServiceStack(tmp_path, ["store", "collector", "analyzer", "notifier"], notify=notify,
                          analysis={**FAST, "resolve_after": "3s", "window": "10s"}) as stack:
            client = stack.client()
            try:
                send_udp(stack.netflow_port, payloads("softflowd_v9_scan.pcap"))
                want = {("scan:127.0.0.1", "raised"), ("scan:127.0.0.1", "resolved"),
                        ("scan:127.0.0.1 port 22", "raised"), ("scan:127.0.0.1 port 22", "resolved")}
                for name, r in receivers.items():
                    try:
                        wait_until(lambda: want <= set(r.notifications()), 60)
                    except AssertionError:
                        raise AssertionError(f"{name} got {r.notifications()}; the store holds "
                                             f"{[(a['key'], a['state']) for a in client.advisories(include_resolved=True)]}; "
                                             "notifier log:\n" + stack.procs["notifier"].log()[-3000:]) from None
                stored = {a["key"]: a for a in client.advisories(analyzer="scan", include_resolved=True)}
                counters = wait_until(lambda: (t := notifier_counters(client).get("targets")) and
                                      all(t[n]["sent"] >= 2 for n in receivers) and t, 15)
            finally:
                client.close()
        assert stack.procs["notifier"].proc.returncode == 0, stack.procs["notifier"].log()[-3000:]
    assert set(stored) == {"scan:127.0.0.1", "scan:127.0.0.1 port 22"}
    for name, r in receivers.items():
        seen = collections.Counter(n for n in r.notifications() if n[1] in ("raised", "resolved"))
        assert set(seen) == want and set(seen.values()) == {1}, (name, seen)
        assert counters[name]["failed"] == 0 and counters[name]["dropped"] == 0
    # what each form carries: the sentence, the action, the link (no public_url here: none)
    post = hook.posts[0]["notifications"][0]
    assert post["description"].startswith("127.0.0.1 contacted") and post["action"] and post["evidence"]
    assert smtp.messages[0]["Subject"].startswith("FlowLens: CRITICAL raised: ")
    assert udp.records[0].startswith(b"<130>1 ")  # local0 (16) * 8 + crit (2)


def test_failing_target_is_retried_counted_and_raises_its_own_advisory(tmp_path):
    with WebhookReceiver(fail_first=3) as hook:
        notify = {**FAST_NOTIFY, "state_path": str(tmp_path / "notifier.json"), "targets": targets(hook),
                  "failing_after": 2, "retry_max_backoff": "2s"}
        with ServiceStack(tmp_path, ["store", "notifier"], notify=notify) as stack:
            client, inject = stack.client(), Injector(stack.cfg)
            try:
                inject.send([advisory(1)])
                own = wait_until(lambda: [a for a in client.advisories(analyzer="notifier", include_resolved=True)
                                          if a["state"] == "resolved"], 30)
                wait_until(lambda: hook.notifications(), 10)
                counters = wait_until(lambda: (c := notifier_counters(client).get("targets", {}).get("hook")) and
                                      c["sent"] == 1 and c, 10)
            finally:
                inject.close()
                client.close()
    assert hook.refused == 3
    # delivered once, after the failures; its own advisory (no rules: every target) follows it there
    assert [n for n in hook.notifications() if n[0] == "scan:10.9.0.1"] == [("scan:10.9.0.1", "raised")]
    assert counters["failed"] == 3 and counters["retried"] == 3 and counters["dropped"] == 0
    assert own[0]["key"] == "notifier:target:hook" and own[0]["severity"] == "WARNING"


def test_a_burst_of_1000_is_one_message_per_target_per_interval(tmp_path):
    with WebhookReceiver() as hook, SyslogReceiver("tcp") as tcp, SmtpReceiver() as smtp:
        notify = {**FAST_NOTIFY, "group_wait": "1s", "group_interval": "1h", "max_items": 20,
                  "state_path": str(tmp_path / "notifier.json"), "targets": targets(hook, smtp, tcp=tcp)}
        with ServiceStack(tmp_path, ["store", "notifier"], notify=notify) as stack:
            client, inject = stack.client(), Injector(stack.cfg)
            try:
                inject.send([advisory(i) for i in range(1000)])
                counters = wait_until(lambda: (c := notifier_counters(client)) and c.get("notifications") == 1000
                                      and all(t["sent"] == 1 for t in c["targets"].values()) and c, 30)
            finally:
                inject.close()
                client.close()
    # every target took all 1,000 (queued), in one message so far; the rest wait for the next interval
    for name, c in counters["targets"].items():
        assert c["queued"] == 1000 and c["sent"] == 1 and c["notifications_sent"] + c["pending"] == 1000, name
    assert len(hook.posts) == 1 and len(smtp.messages) == 1 and tcp.connections == 1
    first = counters["targets"]["hook"]["notifications_sent"]
    assert len(hook.posts[0]["notifications"]) == first  # the JSON carries every one of them
    assert len(tcp.records) == min(first, 20) + (first > 20)  # syslog: max_items records and one counting the rest


def test_a_notifier_restart_loses_and_repeats_none(tmp_path):
    with WebhookReceiver() as hook:
        notify = {**FAST_NOTIFY, "group_interval": "3s", "state_path": str(tmp_path / "notifier.json"),
                  "targets": targets(hook)}
        with ServiceStack(tmp_path, ["store", "notifier"], notify=notify) as stack:
            client, inject = stack.client(), Injector(stack.cfg)
            try:
                inject.send([advisory(i) for i in range(10)])
                wait_until(lambda: len(hook.notifications()) >= 10, 20)
                inject.send([advisory(i) for i in range(10, 20)])  # held by the grouping interval...
                assert stack.procs["notifier"].stop() == 0         # ...when the notifier stops
                inject.send([advisory(i) for i in range(20, 30)])  # and these arrive while it is away
                stack.procs["notifier"] = ServiceProcess("notifier", stack.config_path).start()
                wait_until(lambda: len({k for k, t in hook.notifications()}) >= 30, 30)
                inject.send([advisory(i, "resolved") for i in range(30)])
                wait_until(lambda: len([1 for _k, t in hook.notifications() if t == "resolved"]) >= 30, 30)
            finally:
                inject.close()
                client.close()
    seen = collections.Counter(hook.notifications())
    keys = {f"scan:10.9.0.{i}" for i in range(30)}
    assert {k for k, _t in seen} == keys
    assert all(seen[(k, "raised")] == 1 and seen[(k, "resolved")] == 1 for k in keys), seen
    assert sum(seen.values()) == 60


def test_the_notifier_reads_and_reports_over_curve_when_the_store_asks_for_keys(tmp_path):
    import shutil

    from flowmodel.curve import generate_keys

    keys, authorised = tmp_path / "keys", tmp_path / "authorised"
    authorised.mkdir()
    for name in ("store", "notifier"):
        generate_keys(str(keys), name)
    shutil.copy(keys / "notifier.key", authorised / "notifier.key")
    security = {"server_key": str(keys / "store.key_secret"), "authorized_keys": str(authorised),
                "client_key": str(keys / "notifier.key_secret"), "store_public_key": str(keys / "store.key")}
    with WebhookReceiver() as hook:
        notify = {**FAST_NOTIFY, "state_path": str(tmp_path / "notifier.json"), "targets": targets(hook)}
        with ServiceStack(tmp_path, ["store", "notifier"], notify=notify, security=security) as stack:
            from flowmodel.client import StoreClient
            from flowmodel.config import load_config
            from flowmodel.curve import client_keys

            cfg = load_config(stack.config_path, env={})
            client = StoreClient.from_config(cfg)
            inject = Injector(stack.cfg, keys=client_keys(cfg))  # the notifier's key: the store admits it
            try:
                inject.send([advisory(7)])
                wait_until(lambda: hook.notifications(), 20)
                counters = wait_until(lambda: (t := notifier_counters(client).get("targets")) and  # its health event
                                      t["hook"]["sent"] == 1 and t, 10)
            finally:
                inject.close()
                client.close()
    assert hook.notifications() == [("scan:10.9.0.7", "raised")]
    assert counters["hook"]["queued"] == 1 and counters["hook"]["failed"] == 0


def test_cli_acknowledgement_and_silence_stop_notifications_and_outlive_a_store_restart(tmp_path):
    with WebhookReceiver() as hook:
        notify = {**FAST_NOTIFY, "state_path": str(tmp_path / "notifier.json"), "targets": targets(hook)}
        with ServiceStack(tmp_path, ["store", "notifier"], notify=notify) as stack:
            client, inject = stack.client(), Injector(stack.cfg)
            try:
                inject.send([advisory(1, severity="WARNING"), advisory(2, severity="WARNING")])
                wait_until(lambda: len(hook.notifications()) == 2, 20)
                rc, out, err = flowlens(stack.config_path, "advisory", "ack", "scan:10.9.0.1", "--comment", "known")
                assert rc == 0 and "acknowledged scan:10.9.0.1" in out, err
                rc, out, err = flowlens(stack.config_path, "silence", "add", "--address", "10.9.0.3", "--for", "1h",
                                        "--comment", "10.9.0.3 is our Nessus scanner", "--by", "ann")
                assert rc == 0 and out.startswith("silence "), err
                silence_id = out.split()[1]
                # the store restarts: the notes are events it keeps
                assert stack.procs["store"].stop() == 0
                stack.procs["store"] = ServiceProcess("store", stack.config_path).start()
                rc, out, err = flowlens(stack.config_path, "silence", "list")
                assert rc == 0 and silence_id in out and "ann" in out and "Nessus" in out, (out, err)
                inject.send([advisory(1, "updated", "CRITICAL"),   # acknowledged: its escalation is not told
                             advisory(2, "updated", "CRITICAL"),   # escalated: told
                             advisory(3), advisory(4)])            # 3 silenced, 4 told
                wait_until(lambda: {("scan:10.9.0.2", "escalated"), ("scan:10.9.0.4", "raised")}
                           <= set(hook.notifications()), 30)
                counters = wait_until(lambda: (c := notifier_counters(client)) and c.get("acknowledged") == 1
                                      and c.get("silenced") == 1 and c, 15)
                rc, out, err = flowlens(stack.config_path, "silence", "remove", silence_id)
                assert rc == 0, err
                inject.send([advisory(3, "updated", "CRITICAL")])  # the silence lifted: told again
                wait_until(lambda: ("scan:10.9.0.3", "raised") in hook.notifications(), 20)
            finally:
                inject.close()
                client.close()
    seen = hook.notifications()
    assert ("scan:10.9.0.1", "escalated") not in seen and seen.count(("scan:10.9.0.3", "raised")) == 1
    assert counters["targets"]["hook"]["failed"] == 0


def test_flowlens_up_starts_the_notifier_when_targets_are_set(tmp_path):
    import signal
    import subprocess
    import sys
    import threading

    from support.services import REPO, stack_config, write_config

    with WebhookReceiver() as hook:
        cfg = stack_config(tmp_path, notify={**FAST_NOTIFY, "state_path": str(tmp_path / "notifier.json"),
                                             "targets": targets(hook)})
        path = write_config(tmp_path / "flowlens.yaml", cfg)
        up = subprocess.Popen([sys.executable, "-m", "flowmodel.cli", "up", "--config", str(path), "--services", "store",
                               "--stop-timeout", "20"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              cwd=REPO)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(line.rstrip("\n") for line in up.stdout), daemon=True)
        reader.start()
        inject = None
        try:
            wait_until(lambda: any(line.startswith("notifier") and "msg=ready" in line for line in lines), 30)
            inject = Injector(cfg)
            inject.send([advisory(5)])
            wait_until(lambda: hook.notifications() == [("scan:10.9.0.5", "raised")], 20)
        finally:
            if inject is not None:
                inject.close()
            up.send_signal(signal.SIGTERM)
            rc = up.wait(60)
            reader.join(5)
    assert rc == 0, "\n".join(lines[-40:])
    assert [line for line in lines if "msg=stopped child=notifier rc=0" in line], "\n".join(lines[-40:])


def test_metrics_show_open_advisories_and_each_targets_deliveries(tmp_path):
    import httpx

    with WebhookReceiver(fail_first=1000) as hook:  # a target that never takes a message
        notify = {**FAST_NOTIFY, "state_path": str(tmp_path / "notifier.json"), "targets": targets(hook),
                  "retry_max_backoff": "1s"}
        with ServiceStack(tmp_path, ["store", "web", "notifier"], notify=notify) as stack:
            client, inject = stack.client(), Injector(stack.cfg)
            url = f"http://{stack.cfg['web']['listen']}/metrics"
            try:
                inject.send([advisory(1), advisory(2), advisory(3, severity="WARNING")])
                text = wait_until(lambda: (t := httpx.get(url, timeout=30).text) and
                                  re.search(r'^flowlens_notify_failed_total\{target="hook"\} [3-9]', t, re.M) and t, 30)
            finally:
                inject.close()
                client.close()
    assert 'flowlens_advisories_active{severity="CRITICAL",analyzer="scan"} 2' in text
    assert 'flowlens_advisories_active{severity="WARNING",analyzer="scan"} 1' in text
    assert re.search(r'^flowlens_advisory_info\{key="scan:10.9.0.1",.*\} 1$', text, re.M)
    assert 'flowlens_notify_messages_sent_total{target="hook"} 0' in text
    assert re.search(r'^flowlens_notify_pending\{target="hook"\} [1-9]', text, re.M)


def test_an_analyzer_restart_loses_and_repeats_no_notification(tmp_path):
    with WebhookReceiver() as hook:
        notify = {**FAST_NOTIFY, "state_path": str(tmp_path / "notifier.json"), "targets": targets(hook),
                  "rules": [{"analyzer": ["scan"], "targets": ["hook"]}]}
        with ServiceStack(tmp_path, ["store", "collector", "analyzer", "notifier"], notify=notify,
                          analysis={**FAST, "resolve_after": "3s", "window": "10s"}) as stack:
            send_udp(stack.netflow_port, payloads("softflowd_v9_scan.pcap"))
            wait_until(lambda: ("scan:127.0.0.1", "raised") in hook.notifications(), 60)
            # the analyzer restarts while the scan advisories are open: the new one adopts and resolves them
            client = stack.client()
            try:
                assert stack.procs["analyzer"].stop() == 0
                open_at_stop = [a["key"] for a in client.advisories(analyzer="scan")]  # open ones only
            finally:
                client.close()
            stack.procs["analyzer"] = ServiceProcess("analyzer", stack.config_path).start()
            want = {("scan:127.0.0.1", "raised"), ("scan:127.0.0.1", "resolved"),
                    ("scan:127.0.0.1 port 22", "raised"), ("scan:127.0.0.1 port 22", "resolved")}
            wait_until(lambda: want <= set(hook.notifications()), 60)
    assert "scan:127.0.0.1" in open_at_stop  # its resolution came from the restarted analyzer
    seen = collections.Counter(n for n in hook.notifications() if n[1] != "escalated")
    assert set(seen) == want and set(seen.values()) == {1}, seen
