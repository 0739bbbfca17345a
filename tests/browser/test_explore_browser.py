"""Playwright driving Debian's chromium through Explore and the exporter pages against the real
store and web: the stacked chart is drawn, the form changes the dimension, a legend link narrows the
view, a row's flows link opens the flow explorer, the CSV downloads, and the exporter and interface
pages show their charts. Screenshots go to tests/artifacts/."""
from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
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


def test_any_two_dimensions_draw_a_sankey_matching_the_store(page, stack):
    """The form's Sankey pair (input to output interface here): its bands are the store's top pairs
    as `flowlens query top --by in_if,out_if` gives them, each as thick as its bytes."""
    since = (stack.now_ms - 3_600_000) // 60_000 * 60_000
    until = (stack.now_ms // 60_000 + 2) * 60_000
    iso = lambda ms: np.datetime_as_string(np.datetime64(ms, "ms"), unit="m") + "Z"  # noqa: E731
    load(page, f"/explore?by=src&top=10&from={iso(since)}&to={iso(until)}", "Explore")
    assert page.locator("figure.sankey").count() == 0  # none unless asked
    page.select_option("select[name=sankey_from]", "in_if")
    page.select_option("select[name=sankey_to]", "out_if")
    page.locator("fieldset.explore button[type=submit]").click()
    page.wait_for_url("**sankey_to=out_if**")
    checked(page, "Explore", "explore-sankey-in-out.png")
    sankey = page.locator("figure.sankey")
    assert "Input interface to output interface" in sankey.locator("figcaption").inner_text()
    out = subprocess.run([sys.executable, "-m", "flowmodel.cli", "query", "top", "--by", "in_if,out_if", "--metric",
                          "bytes", "--scaled", "--limit", "10", "--since", iso(since), "--until", iso(until),
                          "--format", "json", "--config", str(stack.stack.config_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    pairs = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert len(pairs) >= 5, "the edge's 4 interface pairs (1 and 3 out of 5, 2 and 4 out of 6) and the others'"
    titles = [sankey.locator("path.link").nth(i).locator("title").text_content()
              for i in range(sankey.locator("path.link").count())]
    drawn = [int(re.search(r"\(([\d,]+) bytes\)$", t).group(1).replace(",", "")) for t in titles]
    assert drawn == [int(p["bytes"]) for p in pairs], "one band per pair, the store's bytes, biggest first"
    edge = [t for t in titles if t.startswith("edge-2")]
    assert len(edge) == 4 and any("Gi0/1" in t.split(" \u2192 ")[0] for t in edge), "interfaces by name"
    # each band as thick as its bytes: the path's right end runs from y1 down to y1 + thickness
    ends = [re.search(r" ([\d.]+),([\d.]+) L[\d.]+,([\d.]+) ", sankey.locator("path.link").nth(i).get_attribute("d"))
            for i in range(len(drawn))]
    thickness = [float(e.group(3)) - float(e.group(2)) for e in ends]
    assert thickness[0] > 20 and sankey.locator("path.link").first.bounding_box()["width"] > 300
    for t, v in zip(thickness, drawn):
        assert t == pytest.approx(thickness[0] * v / drawn[0], abs=0.3)
    # a band narrows the view to its pair, the Sankey kept
    sankey.locator("a:has(path.link)").first.click()
    page.wait_for_url(lambda url: {"input_if", "output_if", "sankey_from"} <= set(parse_qs(urlparse(url).query)))
    checked(page, "Explore")
    assert page.locator("figure.sankey path.link").count() == 1
    # a bad pair is a 400 naming the argument
    resp = page.goto("/explore?sankey_from=in_if&sankey_to=in_if&range=1h")
    assert resp is not None and resp.status == 400
    assert "sankey_to 'in_if' is the same as sankey_from" in page.locator("p.error").inner_text()
