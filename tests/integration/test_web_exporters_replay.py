"""The exporter pages on real exports: a Cisco IOS-XR IPFIX capture replayed (`flowlens replay`)
into a collector, with the store and the web as processes. /exporters shows the collector's own
counters for the exporter and its configured name; its page names the interfaces as the capture's
options data does (tshark's IfName) and charts them, and Explore by input interface over the
capture's time agrees with `flowlens query top`."""
from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from lxml import etree

from flowmodel.cli import main as cli_main
from flowmodel.replay import main as replay_main
from flowmodel.timefmt import iso
from support.services import ServiceProcess, ServiceStack, wait_until, write_config

DATA = Path(__file__).resolve().parents[1] / "data"
CAPTURE = DATA / "pmacct-ta_ipfix_cisco-srv6-500.pcap"
EXPORTER = "127.0.0.1"  # replay sends the capture's one exporter from 127.0.0.1
# tshark -r CAPTURE -d udp.port==9992,cflow -V: IfName (IE 82) per ingress interface
TSHARK_NAMES = {42: "TenGigE0_0_0_0", 69: "TenGigE0_0_0_0.516", 70: "TenGigE0_0_0_0.523", 71: "TenGigE0_0_0_0.524"}
NS = {"h": "http://www.w3.org/1999/xhtml", "svg": "http://www.w3.org/2000/svg"}


def text(e) -> str:
    return " ".join("".join(e.itertext()).split())


def page(resp):
    assert resp.status_code == 200, resp.text[:3000]
    return etree.fromstring(resp.content)


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    stack = ServiceStack(tmp_path_factory.mktemp("xr"), ["store", "collector"],
                         store={"sqlite_retention": "3650d", "rollup_retention": "3650d"})
    stack.cfg["exporters"] = [{"address": EXPORTER, "name": "xr-lab", "site": "lab"}]
    write_config(stack.config_path, stack.cfg)
    stack.start()
    web = ServiceProcess("web", stack.config_path).start()
    client = stack.client()
    try:
        assert replay_main([str(CAPTURE), "--to", f"127.0.0.1:{stack.ipfix_port}", "--speed", "max",
                            "--no-progress"]) == 0

        def settled():
            names = {i["ifindex"] for i in client.request("names")["interfaces"] if i["source"] == "options"}
            ring = client.status()["ring"]
            health = [e for e in client.exporters()["exporters"] if e.get("exporter") == EXPORTER and e.get("collector")]
            done = set(TSHARK_NAMES) <= names and health and ring["fill"] == health[0]["flows"] > 0
            return (ring, health[0]) if done else None
        ring, health = wait_until(settled, timeout_s=30, interval_s=0.2)
        # the capture's own time (2023), on whole minutes around its flows
        window = {"from": iso(ring["oldest_time"] // 60_000 * 60_000 - 60_000, millis=False),
                  "to": iso((ring["newest_time"] // 60_000 + 2) * 60_000, millis=False)}
        yield stack, health, window, "http://" + stack.cfg["web"]["listen"]
    finally:
        client.close()
        assert web.stop() == 0, web.log()
        stack.stop()


def test_exporters_list_has_the_collectors_counters(replayed):
    _stack, health, _window, base = replayed
    root = page(httpx.get(base + "/exporters", timeout=30))
    rows = {text(tr.xpath("h:td[1]", namespaces=NS)[0]): [text(td) for td in tr.xpath("h:td", namespaces=NS)]
            for tr in root.xpath("//h:table[@class='exporters']/h:tbody/h:tr", namespaces=NS)}
    cells = rows[EXPORTER]
    assert cells[1:3] == ["xr-lab", "lab"] and cells[4] == "10"  # name, site, IPFIX
    # domains, export packets, flows, decode errors, sequence lost, templates: the collector's own
    assert cells[6:12] == [f"{n:,}" for n in (1, health["packets"], health["flows"], sum(health["decode_errors"].values()),
                                                health["sequence_lost"], health["templates"])]
    assert health["packets"] == 40 and health["templates"] > 0


def test_exporter_page_names_interfaces_from_options_data(replayed):
    _stack, _health, window, base = replayed
    root = page(httpx.get(f"{base}/exporters/{EXPORTER}", params=window, timeout=30))
    ifrows = {int(text(tr.xpath("h:td[1]", namespaces=NS)[0])): text(tr.xpath("h:td[2]", namespaces=NS)[0])
              for tr in root.xpath("//h:table[contains(@class, 'interfaces')]/h:tbody/h:tr", namespaces=NS)}
    for ifindex, name in TSHARK_NAMES.items():
        assert ifrows[ifindex] == name
    legend = [text(li) for li in root.xpath("//h:figure[@class='stack'][1]//h:ul[@class='legend']/h:li", namespaces=NS)]
    assert legend and all(label.endswith(")") and "(ifIndex " in label for label in legend)
    assert any(label.startswith("TenGigE0_0_0_0") for label in legend)


def test_explore_by_input_interface_agrees_with_query_top(replayed, capsys):
    stack, _health, window, base = replayed
    root = page(httpx.get(base + "/explore", params={"by": "in_if", "exporter": EXPORTER, "top": "50", **window},
                          timeout=30))
    table = {}
    for tr in root.xpath("//h:table[contains(@class, 'explore')]/h:tbody/h:tr[not(@class)]", namespaces=NS):
        key = text(tr.xpath("h:td[@class='key']", namespaces=NS)[0])
        table[key] = int(tr.xpath("h:td[@class='num'][1]/@title", namespaces=NS)[0].replace(",", ""))
    capsys.readouterr()
    assert cli_main(["query", "top", "--by", "in_if", "--exporter", EXPORTER, "--scaled", "--limit", "50",
                     "--since", window["from"], "--until", window["to"], "--format", "json",
                     "--config", str(stack.config_path)]) == 0
    top = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert top and sorted(table.values(), reverse=True) == sorted((int(r["bytes"]) for r in top), reverse=True)
    # every ifIndex the capture names is shown by its name
    assert any(int(r["filter"]["input_if"]) in TSHARK_NAMES for r in top)
    for r in top:
        ifindex = int(r["filter"]["input_if"])
        if ifindex in TSHARK_NAMES:
            assert f"xr-lab ({EXPORTER}) {TSHARK_NAMES[ifindex]} (ifIndex {ifindex})" in table
