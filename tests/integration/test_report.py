"""The daily report against real processes: a store and collector fed two days a week apart as IPFIX
over loopback (support.reportdata), the web's /report page, `flowlens query` as a user runs it, and
the notifier emailing the report to aiosmtpd once, and not again after a restart, and counting a
refusing SMTP server's failure with the day still owed in its state file."""
from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest
from lxml import etree

from support.notify import flowlens
from support.receivers import SmtpReceiver
from support.reportdata import load
from support.services import ServiceProcess, ServiceStack, free_port, wait_until, write_config

NS = {"h": "http://www.w3.org/1999/xhtml", "svg": "http://www.w3.org/2000/svg"}
STORE = {"sqlite_retention": "10d", "rollup_hourly_retention": "30d"}


@pytest.fixture(scope="module")
def smtp():
    with SmtpReceiver() as s:
        yield s


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, smtp):
    tmp = tmp_path_factory.mktemp("report")
    notify = {"state_path": str(tmp / "notifier.json"), "poll_interval": "0.2s",
              "targets": [{"name": "mail", "type": "email", "host": "127.0.0.1", "port": smtp.port,
                           "from": "flowlens@example.net", "to": ["noc@example.net"]}],
              "rules": [{"severity": "CRITICAL", "analyzer": ["nothing-here"], "targets": ["mail"]}]}
    report = {"email_to": ["boss@example.net"], "send_at": "00:00"}  # due at once: yesterday's report
    with ServiceStack(tmp, ["store", "collector"], storage=STORE, notify=notify, report=report,
                      collector={"stats_interval": "1s", "template_path": ""},
                      web={"public_url": "https://flowlens.example.net"}) as stack:
        client = stack.client()
        try:
            expected = load(stack.cfg, client)
        finally:
            client.close()
        web = ServiceProcess("web", stack.config_path).start()
        try:
            yield stack, expected
        finally:
            assert web.stop() == 0, web.log()[-3000:]


@pytest.fixture(scope="module")
def http(loaded):
    stack, _ = loaded
    with httpx.Client(base_url="http://" + stack.cfg["web"]["listen"], timeout=60) as c:
        yield c


def page(resp, status=200):
    assert resp.status_code == status, resp.text[:3000]
    assert resp.headers["content-type"].startswith("application/xhtml+xml")
    return etree.fromstring(resp.content)


def text_of(root, xpath) -> list[str]:
    return [" ".join("".join(e.itertext()).split()) for e in root.xpath(xpath, namespaces=NS)]


def cli_json(stack, *args) -> list[dict]:
    rc, out, err = flowlens(stack.config_path, "query", *args, "--format", "json")
    assert rc == 0, err
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def report_counters(client, notifier: ServiceProcess) -> dict:
    """The daily report's counters in the health event of this notifier process (one row per run)."""
    rows = [c for c in client.exporters()["collectors"]
            if c.get("kind") == "notifier" and str(c.get("collector", "")).endswith(f":{notifier.proc.pid}")]
    return rows[0]["counters"]["targets"].get("mail:report", {}) if rows else {}


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def cli_totals(stack, since: int, until: int) -> dict:
    rows = cli_json(stack, "series", "--step", "3600", "--scaled", "--since", iso(since), "--until", iso(until))
    return {k: sum(int(r[k]) for r in rows) for k in ("bytes", "packets", "flows")}


def test_page_totals_and_change_equal_flowlens_query_and_the_flows_sent(loaded, http):
    stack, want = loaded
    root = page(http.get("/report", params={"day": want["day"].isoformat()}))
    shown = {k: int(root.xpath(f"//h:tr[@id='total-{k}']/h:td[1]/@data-exact", namespaces=NS)[0].replace(",", ""))
             for k in ("bytes", "packets", "flows")}
    day_cli = cli_totals(stack, want["since"], want["until"])
    week_cli = cli_totals(stack, want["since"] - 7 * 86_400_000, want["until"] - 7 * 86_400_000)
    assert shown == day_cli == want["totals"]
    assert week_cli == want["previous"]
    raw = cli_json(stack, "series", "--step", "3600", "--since", iso(want["since"]), "--until", iso(want["until"]))
    assert sum(int(r["bytes"]) for r in raw) < shown["bytes"]  # scaled by the 1-in-10 records, not as exported
    for k in ("bytes", "packets", "flows"):
        pct = (day_cli[k] - week_cli[k]) * 100 / week_cli[k]
        assert text_of(root, f"//h:tr[@id='total-{k}']/h:td[3]") == [f"{pct:+.1f} %"], k
    # the top sources as `flowlens query top` gives them, and as the flows sent say
    top = cli_json(stack, "top", "--by", "src", "--scaled", "--limit", "10",
                   "--since", iso(want["since"]), "--until", iso(want["until"]))
    assert [(r["key"], int(r["bytes"])) for r in top] == want["top_src"]
    rows = root.xpath("//h:section[@id='top-src']//h:tbody/h:tr", namespaces=NS)
    assert [text_of(r, "h:td[1]")[0] for r in rows] == [k for k, _b in want["top_src"]]
    assert text_of(root, "//h:section[@id='top-port']//h:tbody/h:tr/h:td[1]")[0].startswith(("443", "53", "22"))
    # 21 hourly bars (hours 0-20), the week before as a line
    assert len(root.xpath("//svg:rect", namespaces=NS)) == 24
    assert root.xpath("//svg:polyline", namespaces=NS)


def test_page_counts_the_days_advisories_and_the_exporter_that_stopped(loaded, http):
    _stack, want = loaded
    root = page(http.get("/report", params={"day": want["day"].isoformat()}))
    assert text_of(root, "//h:section[@id='advisories-raised']/h:h2") == ["Advisories raised: 2"]
    assert text_of(root, "//h:section[@id='advisories-resolved']/h:h2") == ["Advisories resolved: 1"]
    raised = text_of(root, "//h:section[@id='advisories-raised']//h:tbody/h:tr/h:td[2]")
    assert sorted(raised) == ["Port scan from 10.0.0.8", "Port scan from 10.0.0.9"]
    assert text_of(root, "//h:section[@id='advisories-resolved']//h:tbody/h:tr/h:td[2]") == ["DNS errors from 10.0.0.7"]
    # flows stop at 21:00: the exporter's last hour with flows ends then
    assert text_of(root, "//h:ul[@id='exporters-stopped']/h:li") == ["127.0.0.1: no flows after this hour (21:00)"]


def test_default_day_is_yesterday_and_bad_days_are_400_with_the_reason(loaded, http):
    _stack, want = loaded
    root = page(http.get("/report"))
    assert text_of(root, "//h:h1")[0].endswith(want["day"].isoformat())
    for day, reason in (("2026-13-01", "is not a date like"), ("yesterday", "is not a date like"),
                        ((want["day"] + dt.timedelta(days=2)).isoformat(), "has not begun yet"),
                        ((want["day"] - dt.timedelta(days=60)).isoformat(), "older than the history kept")):
        root = page(http.get("/report", params={"day": day}), 400)
        assert reason in text_of(root, "//h:p[@id='report-error']")[0], day


def test_notifier_emails_the_report_once_even_across_a_restart(loaded, smtp, http):
    stack, want = loaded
    day = want["day"].isoformat()
    client = stack.client()
    notifier = ServiceProcess("notifier", stack.config_path).start()
    try:
        wait_until(lambda: [m for m in smtp.messages if m.get("X-FlowLens-Report") == day], 60)
        counters = wait_until(lambda: (t := report_counters(client, notifier)) and t["sent"] == 1 and t, 15)
        metrics = http.get("/metrics").text
        assert 'flowlens_notify_messages_sent_total{target="mail:report"} 1' in metrics
        assert 'flowlens_notify_failed_total{target="mail:report"} 0' in metrics
        assert notifier.stop() == 0, notifier.log()[-3000:]
        notifier = ServiceProcess("notifier", stack.config_path).start()
        # the restarted notifier has looked at the schedule (checks) and knows the day was sent
        again = wait_until(lambda: (t := report_counters(client, notifier)) and t["checks"] >= 5
                           and t["last_day"] == day and t, 30)
        assert notifier.stop() == 0, notifier.log()[-3000:]
    finally:
        notifier.stop()
        client.close()
    reports = [m for m in smtp.messages if m.get("X-FlowLens-Report")]
    assert len(reports) == 1
    assert counters["failed"] == 0 and again["sent"] == 0
    msg = reports[0]
    assert msg["To"] == "boss@example.net" and msg["Subject"].startswith(f"FlowLens daily report {day}: ")
    body = msg.get_payload(decode=True).decode()
    pct = (want["totals"]["bytes"] - want["previous"]["bytes"]) * 100 / want["previous"]["bytes"]
    assert f"{pct:+.1f} %" in body and want["top_src"][0][0] in body
    assert f"https://flowlens.example.net/report?day={day}" in body
    assert "Port scan from 10.0.0.9" in body and "127.0.0.1: no flows after this hour" in body


def test_a_refusing_smtp_server_is_counted_and_retried_not_lost(loaded, tmp_path):
    stack, want = loaded
    cfg = {**stack.cfg, "notify": {**stack.cfg["notify"], "state_path": str(tmp_path / "notifier.json"),
                                   "targets": [{**stack.cfg["notify"]["targets"][0], "port": free_port()}]}}
    path = write_config(tmp_path / "refused.yaml", cfg)
    client = stack.client()
    notifier = ServiceProcess("notifier", path).start()
    try:
        counters = wait_until(lambda: (t := report_counters(client, notifier)) and t["failed"] >= 1 and t, 30)
    finally:
        assert notifier.stop() == 0, notifier.log()[-3000:]
        client.close()
    assert counters["sent"] == 0 and counters["pending"] == 1 and counters["failures_in_a_row"] == 1
    assert "Connection refused" in counters["last_error"] and counters["last_day"] is None
    # the next try waits a minute: the state file says when, and which day is still owed
    state = json.loads((tmp_path / "notifier.json").read_text())["report"]
    assert state["trying_day"] == want["day"].isoformat() and state["last_day"] is None
