"""End to end with real processes: sFlow if-counters samples (tests/data/built_sflow_if-counters.pcap)
sent over UDP to a collector, their deltas carried on the bus to the store, summed per minute in
SQLite and read back with the ``ifcounters`` op against tshark's reading of the same capture
(built_sflow_if-counters.counters.tsv): octets, packets, errors and discards as the agent counted
them, a 32-bit wrap added, a reset counted and never negative traffic; and the web's interface
page (the web as a process) shows them.

No capture from a real agent carries if-counters records (pmacct's sfprobe sends a counter sample
without records; Akvorado's and goflow2's captures have flow samples only), so the capture is
built field by field from the sFlow v5 structures (tests/data/make_sflow_if_counters.py)."""
from __future__ import annotations

import csv
import json
import re
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from flowmodel.cli import main as cli_main
from flowmodel.client import StoreError
from flowmodel.pcap import read_datagrams
from support.e2e import running, store_client
from support.services import free_port, send_udp, stack_config, wait_until, write_config

DATA = Path(__file__).resolve().parents[1] / "data"
AGENT = "192.0.2.10"
HOUR_MS = 3_600_000


def tshark_polls() -> dict[int, list[dict]]:
    """ifindex -> its polls in order, each tshark field name (after ``sflow_245.``) -> int."""
    out: dict[int, list[dict]] = {}
    with open(DATA / "built_sflow_if-counters.counters.tsv") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            values = {k.split(".")[-1]: v.split(",") for k, v in row.items()}
            for i, ifindex in enumerate(values["ifindex"]):
                out.setdefault(int(ifindex), []).append(
                    {k: int(v[i] if len(v) > 1 else v[0]) for k, v in values.items()})
    return out


def expected(ifindex: int) -> dict:
    """What the agent's counters say the interface carried: differences between polls, a 32-bit
    packet counter that went down wrapped, an interval whose octets went down (cleared) is a reset."""
    want = dict.fromkeys(("in_octets", "out_octets", "in_packets", "in_errors", "out_discards", "resets"), 0)
    polls = tshark_polls()[ifindex]
    for a, b in zip(polls, polls[1:]):
        if b["ifinoct"] < a["ifinoct"] or b["ifoutoct"] < a["ifoutoct"] or b["sysuptime"] < a["sysuptime"]:
            want["resets"] += 1
            continue
        want["in_octets"] += b["ifinoct"] - a["ifinoct"]
        want["out_octets"] += b["ifoutoct"] - a["ifoutoct"]
        want["in_packets"] += sum((b[k] - a[k]) % 2**32 for k in ("ifinpkt", "ifinmcast", "ifinbcast"))
        want["in_errors"] += (b["ifinerr"] - a["ifinerr"]) % 2**32
        want["out_discards"] += (b["ifoutdisc"] - a["ifoutdisc"]) % 2**32
    return want


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ifcounters")
    cfg = stack_config(tmp, collector={"sflow_port": free_port(socket.SOCK_DGRAM)})
    path = write_config(tmp / "flowlens.yaml", cfg)
    now = int(time.time() * 1000)
    window = {"since": now - HOUR_MS, "until": now + HOUR_MS}
    with running(("store", path), ("collector", path), ("web", path)), store_client(cfg) as client:
        client.ping()
        payloads = [d.payload for d in read_datagrams(str(DATA / "built_sflow_if-counters.pcap"))]
        send_udp(cfg["collector"]["sflow_port"], payloads, source=("127.0.0.7", 0))
        yield client, window, "http://" + cfg["web"]["listen"], path


def counters(client, window, ifindex: int) -> dict:
    """The op's reply once every interval of the capture arrived (the collector publishes each second)."""
    want = expected(ifindex)

    def arrived():
        r = client.request("ifcounters", exporter=AGENT, ifindex=ifindex, step=3600, **window)
        return r if sum(r["in_octets"]) >= want["in_octets"] and sum(r["resets"]) >= want["resets"] else None
    return wait_until(arrived, timeout_s=20, interval_s=0.2)


def got(r: dict) -> dict:
    step_s = r["step_ms"] / 1000
    return {"in_octets": sum(r["in_octets"]), "out_octets": sum(r["out_octets"]),
            "in_packets": round(sum(r["in_pps"]) * step_s), "in_errors": sum(r["in_errors"]),
            "out_discards": sum(r["out_discards"]), "resets": sum(r["resets"])}


def test_octets_packets_and_errors_are_tsharks_deltas(stack):
    client, window, _web, _path = stack
    r = counters(client, window, 3)
    assert got(r) == expected(3)
    assert expected(3)["in_octets"] == 900_000 and expected(3)["in_errors"] == 3  # the truth is not empty
    assert r["speed_bps"] == 10**10 and r["step_ms"] == HOUR_MS
    assert [round(b * HOUR_MS / 1000 / 8) for b in r["in_bps"]] == r["in_octets"]


def test_a_reset_is_counted_not_negative_and_a_wrap_is_added(stack):
    client, window, _web, _path = stack
    r = counters(client, window, 4)
    assert got(r) == expected(4)
    assert expected(4)["resets"] == 1
    assert expected(4)["in_packets"] == 150 + 10  # 2^32 - 100 -> 50 wrapped; the reset interval adds none
    assert expected(4)["in_octets"] == 1000 + 1000
    assert min(r["in_bps"]) >= 0 and min(r["out_bps"]) >= 0


def test_bad_arguments_name_themselves(stack):
    client, window, _web, _path = stack
    with pytest.raises(StoreError, match="ifindex"):
        client.request("ifcounters", exporter=AGENT, **window)
    with pytest.raises(StoreError, match="exporter"):
        client.request("ifcounters", exporter="nope", ifindex=3, **window)
    with pytest.raises(StoreError, match="whole minutes"):
        client.request("ifcounters", exporter=AGENT, ifindex=3, step=90, **window)
    empty = client.request("ifcounters", exporter=AGENT, ifindex=99, step=3600, **window)
    assert empty["ok"] and sum(empty["in_octets"]) == 0 and empty["speed_bps"] == 0


def page(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200
        return r.read().decode()


def test_interface_page_shows_the_switch_counters(stack):
    client, window, web, _path = stack
    counters(client, window, 4)
    html = wait_until(lambda: (lambda h: h if "switch-counters" in h else None)(
        page(f"{web}/exporters/{AGENT}/if/4")), timeout_s=20, interval_s=0.5)
    table = html[html.index('class="counters"'):]
    assert re.search(r"Octets</th><td>2,?000</td><td>20</td>", table), table[:600]
    assert "ifSpeed 10 Gbps" in html or "ifSpeed 10.0 Gbps" in html
    assert "Counter resets in the window: 1" in html
    assert "Switch counters, bits per second in" in html
    # no names gave a speed: the flow tables' utilisation is of the agent's ifSpeed
    assert html.count('title="of 10 Gbps') == 2 and "10 Gbps (the agent" in html


def test_interface_without_counters_shows_none(stack):
    _client, _window, web, _path = stack
    html = page(f"{web}/exporters/{AGENT}/if/77")
    assert "switch-counters" not in html and "ifIndex 77" in html
    assert 'title="of ' not in html and "unknown (no utilisation)" in html


def test_cli_prints_one_row_per_step(stack, capsys):
    client, window, _web, path = stack
    counters(client, window, 3)
    capsys.readouterr()
    assert cli_main(["query", "ifcounters", "--exporter", AGENT, "--ifindex", "3", "--since", "1h", "--step", "60",
                     "--config", str(path), "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) >= 60 and {r["speed_bps"] for r in rows} == {10**10}
    assert round(sum(r["in_bps"] for r in rows) * 60 / 8) == expected(3)["in_octets"]
    assert cli_main(["query", "ifcounters", "--exporter", AGENT, "--since", "1h", "--config", str(path)]) != 0
    assert "ifindex" in capsys.readouterr().err
