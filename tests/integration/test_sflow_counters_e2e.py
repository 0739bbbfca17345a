"""End to end with real processes: sFlow if-counters samples sent over UDP to a collector, their
deltas carried on the bus to the store, summed per minute in SQLite and read back with the
``ifcounters`` op -- octets as the agent counted them, a 32-bit wrap added, a reset counted and
never negative traffic; and the web's interface page (the web as a process) shows them.

No capture in tests/data carries if-counters records (pmacct's sfprobe sends one counter sample
with no records; Akvorado's and goflow2's captures have flow samples only), so the datagrams are
built field by field from the sFlow v5 structures (tests/unit/collector/sflow_builders.py)."""
from __future__ import annotations

import re
import socket
import urllib.request
import sys
import time
from pathlib import Path

import pytest

from flowmodel.client import StoreError

from support.e2e import running, store_client
from support.services import free_port, send_udp, stack_config, wait_until, write_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "collector"))
from sflow_builders import counter_sample, datagram, if_counters  # noqa: E402

AGENT = "192.0.2.10"
HOUR_MS = 3_600_000
# (uptime ms, {ifindex: (in_octets, out_octets, extra words)}) per datagram, in order
SAMPLES = [
    (10_000, {3: (1_000_000, 500_000, {"in_ucast_pkts": 1000, "in_errors": 1}),
              4: (2**40, 10, {"in_ucast_pkts": 2**32 - 100})}),
    (30_000, {3: (1_600_000, 700_000, {"in_ucast_pkts": 1500, "in_errors": 4, "out_discards": 2}),
              4: (2**40 + 1000, 20, {"in_ucast_pkts": 50})}),      # 32-bit packets wrapped: +150
    (50_000, {3: (1_900_000, 800_000, {"in_ucast_pkts": 1800, "in_errors": 4, "out_discards": 2}),
              4: (500, 30, {"in_ucast_pkts": 5})}),                # octets went down: a reset
    (70_000, {4: (1500, 40, {"in_ucast_pkts": 15})}),
]


def datagrams() -> list[bytes]:
    out, seq = [], 0
    for n, (uptime, interfaces) in enumerate(SAMPLES, 1):
        samples = []
        for ifindex, (in_o, out_o, words) in interfaces.items():
            seq += 1
            samples.append(counter_sample([if_counters(ifindex, in_o, out_o, speed=10**10, **words)],
                                          sequence=n, source_id=ifindex))
        out.append(datagram(samples, agent=AGENT, sequence=n, uptime_ms=uptime))
    return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ifcounters")
    cfg = stack_config(tmp, collector={"sflow_port": free_port(socket.SOCK_DGRAM)})
    path = write_config(tmp / "flowlens.yaml", cfg)
    now = int(time.time() * 1000)
    window = {"since": now - HOUR_MS, "until": now + HOUR_MS}
    with running(("store", path), ("collector", path), ("web", path)), store_client(cfg) as client:
        client.ping()
        send_udp(cfg["collector"]["sflow_port"], datagrams(), source=("127.0.0.7", 0))
        yield client, window, "http://" + cfg["web"]["listen"]


def counters(client, window, ifindex: int, want_resets: int = 0, want_in: int = 1) -> dict:
    def arrived():
        r = client.request("ifcounters", exporter=AGENT, ifindex=ifindex, step=3600, **window)
        return r if sum(r["in_octets"]) >= want_in and sum(r["resets"]) >= want_resets else None
    return wait_until(arrived, timeout_s=20, interval_s=0.2)


def test_octets_packets_and_errors_are_the_agents_deltas(stack):
    client, window, _web = stack
    r = counters(client, window, 3, want_in=900_000)
    assert (sum(r["in_octets"]), sum(r["out_octets"])) == (900_000, 300_000)
    assert (sum(r["in_errors"]), sum(r["out_discards"]), sum(r["resets"])) == (3, 2, 0)
    assert r["speed_bps"] == 10**10 and r["step_ms"] == HOUR_MS
    step_s = r["step_ms"] / 1000
    assert [round(b * step_s / 8) for b in r["in_bps"]] == r["in_octets"]
    assert round(sum(r["in_pps"]) * step_s) == 800


def test_a_reset_is_counted_not_negative_and_a_wrap_is_added(stack):
    client, window, _web = stack
    r = counters(client, window, 4, want_resets=1, want_in=2000)
    assert sum(r["resets"]) == 1
    assert sum(r["in_octets"]) == 1000 + 1000  # before the reset and after it; the reset interval adds none
    assert round(sum(r["in_pps"]) * r["step_ms"] / 1000) == 150 + 10
    assert min(r["in_bps"]) >= 0 and min(r["out_bps"]) >= 0


def test_bad_arguments_name_themselves(stack):
    client, window, _web = stack
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
    client, window, web = stack
    counters(client, window, 4, want_resets=1, want_in=2000)
    html = wait_until(lambda: (lambda h: h if "switch-counters" in h else None)(
        page(f"{web}/exporters/{AGENT}/if/4")), timeout_s=20, interval_s=0.5)
    table = html[html.index('class="counters"'):]
    assert re.search(r"Octets</th><td>2,?000</td><td>20</td>", table), table[:600]
    assert "ifSpeed 10 Gbps" in html or "ifSpeed 10.0 Gbps" in html
    assert "Counter resets in the window: 1" in html
    assert "Switch counters, bits per second in" in html


def test_interface_without_counters_shows_none(stack):
    _client, _window, web = stack
    html = page(f"{web}/exporters/{AGENT}/if/77")
    assert "switch-counters" not in html and "ifIndex 77" in html
