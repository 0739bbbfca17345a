"""Playwright driving Debian's chromium through Explore and the exporter pages against the real
store and web: the stacked chart is drawn, the form changes the dimension, a legend link narrows the
view, a row's flows link opens the flow explorer, the CSV downloads, and the exporter and interface
pages show their charts. Screenshots go to tests/artifacts/."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from browser.explorestack import EDGE, explore_stack
from support.browser import screenshot, well_formed


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    ws = explore_stack(tmp_path_factory.mktemp("explorebrowser"))
    yield ws
    ws.stop()


def load(page, path: str, heading: str, shot: str | None = None):
    resp = page.goto(path)
    assert resp is not None and resp.status == 200, page.content()[:2000]
    checked(page, heading, shot)


def checked(page, heading: str, shot: str | None = None):
    well_formed(page)
    assert heading in page.locator("h1").first.inner_text()
    if shot:
        screenshot(page, shot)


def test_explore_chart_form_drilldown_and_csv(page):
    load(page, "/explore?by=src&range=1h", "Explore", "explore.png")
    bands = page.locator("svg path.band")
    assert bands.count() == 11  # the top 10 sources and Other
    box = bands.first.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 1  # drawn, not collapsed
    assert page.locator("table.explore tbody tr:not(.other):not(.total) td.key").count() == 10
    # the form: destination port, packets per second
    page.select_option("select[name=by]", "dst_port")
    page.select_option("select[name=metric]", "pps")
    page.locator("fieldset.explore button[type=submit]").click()
    page.wait_for_url("**by=dst_port**")
    checked(page, "Explore", "explore-dst-port.png")
    assert "Packets per second" in page.locator("section.explore h2").inner_text()
    first = page.locator("table.explore tbody tr:not(.other):not(.total) td.key").first.inner_text()
    # the legend's link narrows the view to that port
    page.locator("ul.legend a", has_text=first).first.click()
    page.wait_for_url(lambda url: "dst_port" in parse_qs(urlparse(url).query))
    checked(page, "Explore")
    assert page.locator("table.explore tbody tr:not(.other):not(.total) td.key").all_inner_texts() == [first]
    # the CSV download is the table
    with page.expect_download() as info:
        page.locator("a.csv").click()
    download = info.value
    assert download.suggested_filename.startswith("flowlens-explore-dst_port-pps")
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
    assert [r["key"] for r in rows] == [first]
    # the row's flows link opens the flow explorer
    page.locator("table.explore a.flows").first.click()
    page.wait_for_url("**/flows?**")
    checked(page, "Flow explorer", "explore-to-flows.png")
    assert page.locator("table.flows tbody tr:has(td.addr)").count() > 0


def test_exporters_exporter_and_interface(page):
    load(page, "/exporters", "Exporters", "exporters.png")
    page.locator("table.exporters a", has_text=EDGE).click()
    page.wait_for_url(f"**/exporters/{EDGE}")
    checked(page, "edge-2", "exporter.png")
    assert page.locator("figure.stack").count() == 2
    assert page.locator("figure.stack").first.locator("path.band").count() == 4  # input interfaces 1-4
    page.locator("table.interfaces a", has_text="Gi0/1").click()
    page.wait_for_url(f"**/exporters/{EDGE}/if/1?**")
    checked(page, "Gi0/1", "interface.png")
    assert page.locator("figure.stack").first.locator("path.band").count() == 7  # 7 sources arrive on it


def test_pair_view_draws_a_sankey(page):
    load(page, "/explore?by=pair&top=10&range=1h", "Explore", "explore-pair-sankey.png")
    sankey = page.locator("figure.sankey")
    assert sankey.locator("path.link").count() == 10  # one band per pair in the table
    box = sankey.locator("path.link").first.bounding_box()
    assert box and box["width"] > 300  # spans from the sources' column to the destinations'
    source = sankey.locator("text.nlabel").first.text_content()  # an SVG node: no innerText
    sankey.locator("a:has(rect.node)", has_text=source).first.click()
    page.wait_for_url(lambda url: parse_qs(urlparse(url).query).get("src") == [source])
    checked(page, "Explore")
    assert page.locator("select[name=by] option[selected]").get_attribute("value") == "dst"
