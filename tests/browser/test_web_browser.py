"""Playwright (Python) driving Debian's chromium against the real store and web processes: each
page renders as XHTML without a parse error, the filter form narrows the flow table, Next and
Previous work, and an advisory's link shows its flows. Screenshots go to tests/artifacts/."""
from __future__ import annotations

import pytest

from browser.webstack import HOSTILE, SCAN_SOURCE, LiveStack, WebStack
from support.browser import opened_page, screenshot, well_formed


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    ws = WebStack(tmp_path_factory.mktemp("browserstack"), flows=300).start()
    yield ws
    ws.stop()


def load(page, path: str, heading: str, shot: str | None = None, status: int = 200):
    resp = page.goto(path)
    assert resp is not None and resp.status == status
    assert resp.headers["content-type"].startswith("application/xhtml+xml")
    well_formed(page)
    assert page.locator("h1").first.inner_text() == heading
    if shot:
        screenshot(page, shot)
    return resp


def value(page, selector: str) -> str:
    # Playwright's input_value() checks nodeName == 'INPUT', which is lowercase in an XHTML document
    return page.locator(selector).evaluate("e => e.value")


def flow_rows(page):
    return page.locator("table.flows tbody tr:has(td.addr)")


def test_dashboard(page):
    load(page, "/", "Dashboard", "dashboard.png")
    assert page.locator("svg polyline.line").count() == 2
    assert page.locator("table.top").nth(0).locator("td.key", has_text=SCAN_SOURCE).count() == 1
    box = page.locator("span.bar").first.bounding_box()
    assert box and box["width"] > 10  # the CSS bar is drawn
    page.locator("ul.counts a", has_text="CRITICAL").click()
    assert page.locator("h1").inner_text() == "Advisories"
    assert page.locator("strong.title").count() == 1


def test_advisories_and_link_to_flows(page):
    load(page, "/advisories", "Advisories", "advisories.png")
    assert page.locator("strong.title").first.inner_text() == "Port scan " + HOSTILE
    page.locator("a.flows-link").first.click()
    page.wait_for_load_state()
    well_formed(page)
    assert page.locator("h1").inner_text() == "Flow explorer"
    assert value(page, "form.filters input[name=src]") == SCAN_SOURCE
    rows = flow_rows(page)
    assert rows.count() == 20
    for i in range(rows.count()):
        assert rows.nth(i).locator("td.addr").first.inner_text().startswith(SCAN_SOURCE + ":")
    screenshot(page, "advisory-flows.png")


def test_filter_form_narrows_and_pages(page):
    load(page, "/flows", "Flow explorer", "flows.png")
    assert flow_rows(page).count() == 20
    page.fill("form.filters input[name=protocol]", "udp")
    page.fill("form.filters input[name=port]", "53")
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state()
    rows = flow_rows(page)
    assert 0 < rows.count() <= 20
    for i in range(rows.count()):
        assert rows.nth(i).locator("td").nth(4).inner_text() == "UDP"
    screenshot(page, "flows-filtered.png")
    first_page = [rows.nth(i).locator("td").nth(2).inner_text() + rows.nth(i).locator("td").first.get_attribute("title")
                  for i in range(rows.count())]
    page.click("a.next")
    page.wait_for_load_state()
    assert value(page, "form.filters input[name=protocol]") == "udp"
    second = flow_rows(page)
    assert second.count() > 0
    second_page = [second.nth(i).locator("td").nth(2).inner_text() + second.nth(i).locator("td").first.get_attribute("title")
                   for i in range(second.count())]
    assert not set(first_page) & set(second_page)
    page.click("a.prev")
    page.wait_for_load_state()
    back = flow_rows(page)
    assert [back.nth(i).locator("td").nth(2).inner_text() + back.nth(i).locator("td").first.get_attribute("title")
            for i in range(back.count())] == first_page


def test_bad_input_and_about(page):
    load(page, "/flows?src=10.0.0.300", "Flow explorer", "flows-error.png", status=400)
    assert "is not an IPv4/IPv6 address" in page.locator("p.error").inner_text()
    load(page, "/about", "About this FlowLens", "about.png")
    assert page.locator("table.procs tbody tr").count() >= 2


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    ls = LiveStack(tmp_path_factory.mktemp("browserlive"))
    try:
        yield ls.start()
    finally:
        ls.stop()


def test_real_analyzer_advisory_links_to_its_flows(browser, live):
    """The advisory the real analyzer raised from a real capture, clicked in the browser."""
    with opened_page(browser, live.base_url) as page:
        load(page, "/advisories?severity=WARNING", "Advisories", "advisories-live.png")
        item = page.locator("li.advisory", has_text="Telnet traffic (port 23)")
        assert item.count() == 1
        assert item.locator("p.meta").inner_text().count("protocol_mix") == 1
        item.locator("a.flows-link").click()
        page.wait_for_load_state()
        well_formed(page)
        assert page.locator("h1").inner_text() == "Flow explorer"
        assert value(page, "form.filters input[name=addr]") == "127.0.0.1" and value(page, "form.filters input[name=port]") == "23"
        rows = flow_rows(page)
        assert rows.count() == 20  # a full page: the window holds more than the advisory's 10 telnet flows
        for i in range(rows.count()):
            ends = rows.nth(i).locator("td.addr")
            assert "127.0.0.1:23" in (ends.nth(0).inner_text(), ends.nth(1).inner_text())
        screenshot(page, "advisory-live-flows.png")
