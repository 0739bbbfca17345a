"""The daily report page in Debian's chromium (Playwright, no JavaScript on the page) against real
store, collector and web processes fed two days a week apart: the day is picked with the page's
form, the totals and change are shown, a top source's link opens its flows of that day, and a
screenshot of the page goes to tests/artifacts/report.png."""
from __future__ import annotations

import datetime as dt

from support.browser import opened_page, screenshot
from support.reportdata import load
from support.services import ServiceProcess, ServiceStack


def test_report_page_in_the_browser(browser, tmp_path):
    with ServiceStack(tmp_path, ["store", "collector"], storage={"sqlite_retention": "10d"},
                      collector={"stats_interval": "1s", "template_path": ""}) as stack:
        client = stack.client()
        try:
            want = load(stack.cfg, client)
        finally:
            client.close()
        web = ServiceProcess("web", stack.config_path).start()
        try:
            with opened_page(browser, "http://" + stack.cfg["web"]["listen"], viewport={"width": 1280, "height": 900}) as page:
                page.goto("/")
                page.locator("nav a", has_text="Report").click()
                page.wait_for_url("**/report")
                day = want["day"].isoformat()
                assert page.locator("h1").inner_text().endswith(day)
                # another day with the form, then back with the "next day" link
                page.locator("input[name=day]").fill((want["day"] - dt.timedelta(days=1)).isoformat())
                page.locator("form.report-day button").click()
                page.wait_for_url(f"**/report?day={(want['day'] - dt.timedelta(days=1)).isoformat()}")
                assert page.locator("#total-bytes td").first.inner_text() == "0 B"
                page.locator("#next-day").click()
                page.wait_for_url(f"**/report?day={day}")
                exact = page.locator("#total-bytes td").first.get_attribute("data-exact")
                assert int(exact.replace(",", "")) == want["totals"]["bytes"]
                pct = (want["totals"]["bytes"] - want["previous"]["bytes"]) * 100 / want["previous"]["bytes"]
                assert page.locator("#total-bytes td.change").inner_text() == f"{pct:+.1f} %"
                screenshot(page, "report.png")
                # the biggest source's link: its flows of that day
                top = want["top_src"][0][0]
                page.locator("#top-src a", has_text=top).first.click()
                page.wait_for_url("**/flows?**")
                rows = page.locator("table.flows tbody tr")
                assert rows.count() > 0 and top in rows.first.inner_text()
        finally:
            assert web.stop() == 0, web.log()[-3000:]
