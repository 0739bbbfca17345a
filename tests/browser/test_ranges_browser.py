"""Playwright + Debian's chromium against real store and web processes: the range bar's links and
custom form move the dashboard and the flow explorer, and the CSV downloads (Playwright's download
API) hold what `flowlens query flows` answers, cut at web.csv_max_rows and saying so.
Screenshots go to tests/artifacts/."""
from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from browser.webstack import WebStack, synthetic_flows
from support.browser import screenshot, well_formed

CSV_MAX_ROWS = 100

@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    ws = WebStack(tmp_path_factory.mktemp("rangebrowser"), flows=300, web={"csv_max_rows": CSV_MAX_ROWS}).start()
    yield ws
    ws.stop()


def label(page) -> str:
    return page.locator("#range-label").inner_text()


def cli_rows(stack, *args) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "flowmodel.cli", "query", "flows", *args, "--limit", "1000",
                          "--format", "csv", "--endpoint", stack.cfg["query"]["endpoint"]],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return list(csv.DictReader(io.StringIO(out.stdout)))


def test_range_links_on_the_dashboard(page):
    page.goto("/")
    well_formed(page)
    assert label(page) == "last 10 min"
    page.locator("nav.range a", has_text="1 h").first.click()
    assert label(page) == "last 1 h" and "range=1h" in page.url
    assert page.locator("svg polyline.line").count() == 2  # the synthetic flows are in the last 5 minutes
    screenshot(page, "dashboard-range-1h.png")
    page.locator("nav.range a.earlier").click()
    well_formed(page)
    assert label(page).endswith("UTC") and "from=" in page.url
    peaks = page.locator("figure.chart span.peak")
    assert [peaks.nth(i).inner_text() for i in range(2)] == ["peak 0 bps", "peak 0 pps"]  # the hour before: no flows
    page.locator("nav.range a.later").click()
    assert label(page) == "last 1 h"  # back to the live hour
    page.locator("nav.range a.zoom-out").click()
    assert label(page) == "last 6 h"
    page.locator("nav.range a", has_text="7 d").click()
    well_formed(page)
    assert label(page) == "last 7 d" and page.locator("table.top").nth(0).locator("td.key").count() > 0
    # the flows are in the hour still filling: charted as its rate so far, not left out
    assert page.locator("figure.chart span.peak").first.inner_text() != "peak 0 bps"
    screenshot(page, "dashboard-range-7d.png")


def test_custom_range_form(page, stack):
    page.goto("/flows?protocol=udp")
    page.locator("form.custom-range input[name='from']").fill("2h")
    page.locator("form.custom-range input[name='to']").fill("now")
    page.locator("form.custom-range button").click()
    well_formed(page)
    assert "protocol=udp" in page.url and "from=2h" in page.url  # the filter is kept
    assert page.locator("table.flows tbody tr:has(td.addr)").count() == 20
    page.locator("form.custom-range input[name='from']").fill("yesterday")
    page.locator("form.custom-range button").click()
    assert "from 'yesterday' is not a time" in page.locator("p.error").inner_text()


def test_csv_downloads(page, stack):
    page.goto("/flows?protocol=udp")
    well_formed(page)
    screenshot(page, "flows-range-csv.png")
    with page.expect_download() as info:
        page.locator("a#csv-all").click()
    download = info.value
    assert download.suggested_filename == f"flowlens-flows-1h-max{CSV_MAX_ROWS}.csv"
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
    udp = int((synthetic_flows(stack.now_ms, stack.n_flows)["protocol"] == 17).sum())
    assert len(rows) == udp < CSV_MAX_ROWS
    assert rows == cli_rows(stack, "--protocol", "udp", "--since", "1h")  # row for row
    # every flow: more than the limit, and the file says where it stopped
    page.goto("/flows")
    with page.expect_download() as info:
        page.locator("a#csv-all").click()
    text = Path(info.value.path()).read_text()
    assert text.splitlines()[-1].startswith(f"# cut at {CSV_MAX_ROWS} rows")
    assert len(text.splitlines()) == CSV_MAX_ROWS + 2  # header, rows, the cut line
    # a top list from the dashboard
    page.goto("/?range=1h")
    with page.expect_download() as info:
        page.locator("a.csv").first.click()
    top = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text())))
    assert info.value.suggested_filename == "flowlens-top-src-1h.csv"
    assert top and top[0]["key"] == page.locator("table.top").nth(0).locator("td.key").first.inner_text()
