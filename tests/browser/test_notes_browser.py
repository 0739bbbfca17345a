"""Acknowledging and silencing from the browser (Playwright, Debian's chromium, no JavaScript on the
page): against real store, web and notifier processes and a webhook receiver on loopback, a silence
added with the form stops the next notification of what it matches (an unmatched advisory is still
notified), an acknowledgement stops the advisory's escalation being notified, and the silence is
still listed after the store and the web restart."""
from __future__ import annotations

from support.browser import opened_page, screenshot
from support.receivers import WebhookReceiver
from support.services import ServiceProcess, ServiceStack, wait_until
from support.notify import FAST_NOTIFY, Injector, advisory, notifier_counters, targets


def test_silence_and_acknowledgement_from_the_browser(browser, tmp_path):
    with WebhookReceiver() as hook:
        notify = {**FAST_NOTIFY, "state_path": str(tmp_path / "notifier.json"), "targets": targets(hook)}
        with ServiceStack(tmp_path, ["store", "web", "notifier"], notify=notify) as stack, \
                opened_page(browser, "http://" + stack.cfg["web"]["listen"]) as page:
            client, inject = stack.client(), Injector(stack.cfg)
            try:
                inject.send([advisory(1, severity="WARNING")])
                wait_until(lambda: hook.notifications() == [("scan:10.9.0.1", "raised")], 20)
                # acknowledge scan:10.9.0.1 with its form
                page.goto("/advisories")
                item = page.locator("li.advisory", has_text="Port scan from 10.9.0.1")
                item.locator("input[name=comment]").fill("pentest booked")
                item.locator("button", has_text="Acknowledge").click()
                page.wait_for_url("**/advisories")
                assert "Acknowledged by" in page.locator("li.advisory", has_text="10.9.0.1").inner_text()
                # silence 10.9.0.2 with the form
                form = page.locator("form.silence")
                form.locator("input[name=address]").fill("10.9.0.2")
                form.locator("input[name=duration]").fill("1h")
                form.locator("input[name=comment]").fill("10.9.0.2 is our Nessus scanner")
                form.locator("button", has_text="Add silence").click()
                page.wait_for_url("**/advisories#silences")
                row = page.locator("table.silences tbody tr")
                assert row.count() == 1 and "address 10.9.0.2" in row.inner_text() and "Nessus" in row.inner_text()
                screenshot(page, "advisories-silence.png")
                inject.send([advisory(1, "updated", "CRITICAL"), advisory(2), advisory(3)])
                wait_until(lambda: ("scan:10.9.0.3", "raised") in hook.notifications(), 20)  # not matched: told
                counters = wait_until(lambda: (c := notifier_counters(client)) and c.get("silenced") == 1
                                      and c.get("acknowledged") == 1 and c, 15)
                # the store and the web restart: the silence is an event the store keeps
                for name in ("web", "store"):
                    assert stack.procs[name].stop() == 0
                for name in ("store", "web"):
                    stack.procs[name] = ServiceProcess(name, stack.config_path).start()
                page.goto("/advisories")
                assert "address 10.9.0.2" in page.locator("table.silences").inner_text()
            finally:
                inject.close()
                client.close()
    seen = hook.notifications()
    assert [n for n in seen if n[0] != "scan:10.9.0.3"] == [("scan:10.9.0.1", "raised")], seen
    assert counters["targets"]["hook"]["failed"] == 0
