"""The interface page's switch counters in chromium: the capture of if-counters samples
(tests/data/built_sflow_if-counters.pcap) through collector, store and web processes, the page
well-formed XHTML with the section and its charts, and a screenshot
(tests/artifacts/interface-counters.png)."""
from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from flowmodel.pcap import read_datagrams
from support.browser import screenshot, well_formed
from support.e2e import running, store_client
from support.services import free_port, send_udp, stack_config, wait_until, write_config

DATA = Path(__file__).resolve().parents[1] / "data"
AGENT = "192.0.2.10"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ifcounters-browser")
    cfg = stack_config(tmp, collector={"sflow_port": free_port(socket.SOCK_DGRAM)})
    path = write_config(tmp / "flowlens.yaml", cfg)
    with running(("store", path), ("collector", path), ("web", path)), store_client(cfg) as client:
        client.ping()
        send_udp(cfg["collector"]["sflow_port"],
                 [d.payload for d in read_datagrams(str(DATA / "built_sflow_if-counters.pcap"))])
        wait_until(lambda: sum(client.request("ifcounters", exporter=AGENT, ifindex=4, since="1h",
                                              step=3600)["resets"]) == 1, timeout_s=20, interval_s=0.2)
        yield SimpleNamespace(base_url="http://" + cfg["web"]["listen"])


def test_interface_page_shows_switch_counters(page):
    page.goto(f"/exporters/{AGENT}/if/3")
    well_formed(page)
    section = page.locator("section.switch-counters")
    assert section.count() == 1
    assert section.locator("figure.chart").count() == 2
    assert "900,000" in section.locator("table.counters").inner_text()
    screenshot(page, "interface-counters.png")
