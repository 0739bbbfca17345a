"""End to end with real processes: sFlow v5 exports from pmacct, Akvorado's and goflow2's test
captures sent over UDP to a collector's sFlow port (and one capture to its NetFlow port: the
decoder tells the protocols apart by content), stored, and read back through StoreClient flow by
flow against the captures' tshark ground truth (tests/data/*.sflow.jsonl)."""
from __future__ import annotations

import json
import socket
import time
from collections import Counter
from pathlib import Path

import pytest

from flowmodel import addr
from flowmodel.pcap import read_datagrams
from support.e2e import all_flows, running, store_client, wait_for_flows
from support.services import free_port, send_udp, stack_config, write_config

DATA = Path(__file__).resolve().parents[1] / "data"
# capture -> (port key, source address of its datagrams)
CAPTURES = {"pmacct_sflow_dual": ("sflow_port", "127.0.0.2"), "pmacct_sflow-sampled_http": ("sflow_port", "127.0.0.3"),
            "akvorado_sflow_1140": ("sflow_port", "127.0.0.4"),
            "akvorado_sflow_sflow-expanded-sample": ("sflow_port", "127.0.0.4"),
            "akvorado_sflow_icmpv6": ("sflow_port", "127.0.0.5"),
            "goflow2_sflow_expanded": ("netflow_port", "127.0.0.6")}
KEY = ("exporter", "observation_domain", "src_addr", "dst_addr", "src_port", "dst_port", "protocol", "bytes",
       "sampling_rate", "input_if", "output_if", "tcp_flags", "tos", "vlan", "src_as", "dst_as", "next_hop")
HOUR_MS = 3_600_000


def truth(name: str) -> list[tuple]:
    rows = [json.loads(line) for line in (DATA / f"{name}.sflow.jsonl").read_text().splitlines()]
    out = []
    for r in rows:
        row = {k: r.get(k, 0) for k in KEY}
        for k in ("src_addr", "dst_addr", "next_hop", "exporter"):
            row[k] = addr.to_text(addr.to_bytes(r.get(k) or "::"))
        out.append(tuple(row[k] for k in KEY))
    return out


def as_key(row: dict) -> tuple:
    return tuple(addr.to_text(addr.to_bytes(row[k] or "::")) if k in ("src_addr", "dst_addr", "next_hop", "exporter")
                 else int(row[k]) for k in KEY)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sflow")
    cfg = stack_config(tmp, collector={"sflow_port": free_port(socket.SOCK_DGRAM)})
    path = write_config(tmp / "flowlens.yaml", cfg)
    started_ms = int(time.time() * 1000)
    window = {"since": started_ms - HOUR_MS, "until": started_ms + HOUR_MS}
    with running(("store", path), ("collector", path)), store_client(cfg) as client:
        for name, (port, src) in CAPTURES.items():
            send_udp(cfg["collector"][port], [d.payload for d in read_datagrams(str(DATA / f"{name}.pcap"))],
                     source=(src, 0))
        wait_for_flows(client, sum(len(truth(name)) for name in CAPTURES), **window)
        yield client, window


def test_every_sflow_sample_arrived_as_its_truth(stack):
    client, window = stack
    got = all_flows(client, **window)
    want = [k for name in CAPTURES for k in truth(name)]
    assert len(got) == len(want) > 400
    assert Counter(map(as_key, got)) == Counter(want)
    assert {r["flow_version"] for r in got} == {105}
    assert {r["packets"] for r in got} == {1}
    assert all(window["since"] < r["time_start"] == r["time_end"] < window["until"] for r in got)


def test_agent_is_the_exporter(stack):
    """pmacct's datagrams came from 127.0.0.2 and .3, but its agent address (127.0.0.1, sub-agent
    7) is the exporter (Akvorado's ICMPv6 capture has agent 127.0.0.1 too, sub-agent 1402);
    Akvorado's other agents are 172.16.0.3 and 49.49.49.49."""
    client, window = stack
    pmacct = len(truth("pmacct_sflow_dual")) + len(truth("pmacct_sflow-sampled_http"))
    assert len(all_flows(client, exporter="127.0.0.1/32", **window)) == pmacct + 1
    assert len(all_flows(client, exporter="127.0.0.2/31", **window)) == 0
    assert len(all_flows(client, exporter="49.49.49.49", **window)) == 1
    sampled = all_flows(client, exporter="127.0.0.1", protocol=6, **window)
    assert {r["sampling_rate"] for r in sampled} == {1, 4}
