"""End to end with real processes: one store and two collectors on different UDP ports (sharing the
bus and query endpoints), real NetFlow v5 exports from two exporters (softflowd and pmacct, sent
from 127.0.0.2 and 127.0.0.3), checked through StoreClient and the `flowlens query` command
against the captures' tshark ground truth."""
from __future__ import annotations

import copy
import csv
import io
import ipaddress
import json
import socket
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from flowmodel.output import reply_rows
from flowmodel.pcap import read_datagrams
from flowmodel.schema import FLOW_COLUMNS
from support.e2e import all_flows, running, store_client, wait_for_flows
from support.services import free_port, send_udp, stack_config, wait_until, write_config

DATA = Path(__file__).resolve().parents[1] / "data"
# capture -> the loopback address its datagrams are sent from (the exporter the store should record)
SOURCES = {"softflowd_v5_dns": "127.0.0.2", "pmacct_v5_http": "127.0.0.3"}
# A capture whose flows carry real, distinct addresses (every flow above is 127.0.0.1 -> 127.0.0.1),
# sent to collector A from 127.0.0.4; its flows are from 2020, outside the window of the two above.
REAL = ("pynetflow_v5_softflowd", "127.0.0.4")
HOUR_MS = 3_600_000
KEY = ("exporter", "src_addr", "dst_addr", "src_port", "dst_port", "protocol", "bytes", "packets", "tcp_flags", "tos",
       "input_if", "output_if", "time_start", "time_end")


def expected_flows(name: str, exporter: str) -> list[dict]:
    """The ground truth rows of a capture, with absolute times from each datagram's v5 header."""
    headers = {}
    for d in read_datagrams(str(DATA / f"{name}.pcap")):
        _v, _n, uptime, secs, nsecs = struct.unpack("!HHIII", d.payload[:16])
        headers[d.frame] = (uptime, secs * 1000 + nsecs // 1_000_000)

    def absolute(frame, uptime_value):
        uptime, export_ms = headers[frame]
        delta = (uptime - int(uptime_value)) & 0xFFFFFFFF
        return export_ms - (delta - (1 << 32) if delta >= 1 << 31 else delta)

    rows = []
    for r in csv.DictReader(open(DATA / f"{name}.flows.csv")):
        if r["kind"] != "flow":
            continue
        frame = int(r["frame"])
        rows.append({"exporter": exporter, "src_addr": r["src_addr"], "dst_addr": r["dst_addr"],
                     "src_port": int(r["src_port"]), "dst_port": int(r["dst_port"]), "protocol": int(r["proto"]),
                     "bytes": int(r["octets"]), "packets": int(r["packets"]), "tcp_flags": int(r["tcp_flags"], 16),
                     "tos": int(r["tos"], 16), "input_if": int(r["in_if"]), "output_if": int(r["out_if"]),
                     "time_start": absolute(frame, r["start_uptime_ms"]), "time_end": absolute(frame, r["end_uptime_ms"])})
    return rows


def as_key(row: dict) -> tuple:
    return tuple(row[k] for k in KEY)


@pytest.fixture(scope="module")
def expected():
    return {name: expected_flows(name, src) for name, src in SOURCES.items()}


@pytest.fixture(scope="module")
def window(expected):
    times = [r["time_start"] for rows in expected.values() for r in rows] + [r["time_end"] for rows in expected.values() for r in rows]
    return {"since": min(times) - HOUR_MS, "until": max(times) + HOUR_MS}


@pytest.fixture(scope="module")
def real_flows():
    return expected_flows(*REAL)


@pytest.fixture(scope="module")
def real_window(real_flows):
    times = [r["time_start"] for r in real_flows] + [r["time_end"] for r in real_flows]
    return {"since": min(times) - HOUR_MS, "until": max(times) + HOUR_MS}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, expected, real_flows):
    """store + collector A + collector B, both fed; yields (client, cfg, collectors' ports)."""
    tmp = tmp_path_factory.mktemp("e2e")
    cfg = stack_config(tmp, store={"sqlite_retention": "3650d", "rollup_retention": "3650d"},
                       collector={"instance_id": "collector-a"})
    cfg_b = copy.deepcopy(cfg)
    cfg_b["collector"].update(netflow_port=free_port(socket.SOCK_DGRAM), ipfix_port=free_port(socket.SOCK_DGRAM),
                              sflow_port=free_port(socket.SOCK_DGRAM),
                              instance_id="collector-b", template_path=str(tmp / "templates-b.json"))
    path_a, path_b = write_config(tmp / "a.yaml", cfg), write_config(tmp / "b.yaml", cfg_b)
    with running(("store", path_a), ("collector", path_a), ("collector", path_b)) as procs, \
            store_client(cfg) as client:
        ports = {"softflowd_v5_dns": cfg["collector"]["netflow_port"], "pmacct_v5_http": cfg_b["collector"]["netflow_port"]}
        for name, src in SOURCES.items():
            payloads = [d.payload for d in read_datagrams(str(DATA / f"{name}.pcap"))]
            send_udp(ports[name], payloads, source=(src, 0))
        send_udp(ports["softflowd_v5_dns"], [d.payload for d in read_datagrams(str(DATA / f"{REAL[0]}.pcap"))],
                 source=(REAL[1], 0))
        total = sum(len(rows) for rows in expected.values()) + len(real_flows)
        wait_for_flows(client, total, timeout_s=20, since=0, until=4_000_000_000_000)
        yield client, cfg, procs


def test_every_flow_arrived_with_the_right_fields(stack, expected, window):
    client, _cfg, _procs = stack
    got = all_flows(client, **window)
    want = [r for rows in expected.values() for r in rows]
    assert len(got) == len(want) == 471
    assert Counter(as_key(r) for r in got) == Counter(as_key(r) for r in want)
    assert {r["flow_version"] for r in got} == {5}
    assert {r["sampling_rate"] for r in got} == {1}
    assert all(r["time_end"] >= r["time_start"] for r in got)


def test_exporter_cidr_filter_is_a_range(stack, expected, window):
    client, _cfg, _procs = stack
    assert len(all_flows(client, exporter="127.0.0.2/32", **window)) == len(expected["softflowd_v5_dns"])
    assert len(all_flows(client, exporter="127.0.0.3", **window)) == len(expected["pmacct_v5_http"])
    assert len(all_flows(client, exporter="127.0.0.2/31", **window)) == 471
    assert len(all_flows(client, exporter="127.0.0.4/30", **window)) == 0


def test_address_cidr_filters(stack, window):
    client, _cfg, _procs = stack
    assert len(all_flows(client, src="127.0.0.0/8", **window)) == 471
    assert len(all_flows(client, addr="127.0.0.0/31", **window)) == 471
    assert len(all_flows(client, dst="127.0.0.2/31", **window)) == 0
    assert len(all_flows(client, src="10.0.0.0/8", **window)) == 0
    # addresses are stored IPv4-mapped (::ffff:a.b.c.d), which ::/0 covers: every flow
    assert len(all_flows(client, src="::/0", **window)) == 471
    assert len(all_flows(client, src="::ffff:127.0.0.0/104", **window)) == 471
    assert len(all_flows(client, src="2001:db8::/32", **window)) == 0


def in_net(address: str, cidr: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network(cidr)


@pytest.mark.parametrize("field,cidr", [("src", "172.17.0.2/32"), ("src", "172.17.0.0/31"), ("dst", "172.17.0.0/31"),
                                        ("dst", "224.0.0.0/4"), ("addr", "172.17.0.2/32"), ("addr", "224.0.0.0/24"),
                                        ("src", "172.16.0.0/12")])
def test_cidr_filters_split_real_addresses(stack, real_flows, real_window, field, cidr):
    """On a capture whose flows have distinct addresses (172.17.0.1, 172.17.0.2, 224.0.0.251), a
    CIDR filter returns exactly the flows inside it, and never all or none of them."""
    client, _cfg, _procs = stack
    def match(r):
        if field == "addr":
            return in_net(r["src_addr"], cidr) or in_net(r["dst_addr"], cidr)
        return in_net(r[f"{field}_addr"], cidr)
    want = [r for r in real_flows if match(r)]
    got = all_flows(client, **{field: cidr}, **real_window)
    assert Counter(map(as_key, got)) == Counter(map(as_key, want))
    if cidr != "172.16.0.0/12":
        assert 0 < len(want) < len(real_flows), "the CIDR must split the capture's flows"
    else:
        assert len(want) == len(real_flows) == 3  # every flow has a 172.17.0.x source


def test_port_and_protocol_filters(stack, expected, window):
    client, _cfg, _procs = stack
    rows = [r for rs in expected.values() for r in rs]
    assert len(all_flows(client, dst_port=5300, **window)) == sum(r["dst_port"] == 5300 for r in rows) == 199
    assert len(all_flows(client, src_port=8000, **window)) == sum(r["src_port"] == 8000 for r in rows)
    either = sum(r["src_port"] == 8000 or r["dst_port"] == 8000 for r in rows)
    assert len(all_flows(client, port=8000, **window)) == either == 62
    assert len(all_flows(client, protocol="udp", **window)) == sum(r["protocol"] == 17 for r in rows)
    got = all_flows(client, protocol=6, dst_port=8000, **window)
    assert got and all(r["protocol"] == 6 and r["dst_port"] == 8000 for r in got)


def test_cursor_pages_do_not_overlap_and_cover_everything(stack, window):
    client, _cfg, _procs = stack
    first = client.flows(limit=100, **window)
    assert len(first) == 100 and first.next_cursor
    second = client.flows(limit=100, cursor=first.next_cursor, **window)
    assert len(second) == 100
    a, b = first.rows(), second.rows()
    assert Counter(map(as_key, a + b)) <= Counter(map(as_key, all_flows(client, **window)))
    # newest (by flow end) first, across the page boundary too
    ends = [r["time_end"] for r in a + b]
    assert ends == sorted(ends, reverse=True)
    # walking every page with a small page size gives every flow exactly once
    walked = all_flows(client, page_size=37, **window)
    assert len(walked) == 471
    assert Counter(map(as_key, walked)) == Counter(map(as_key, all_flows(client, **window)))


def test_top_agrees_with_the_input(stack, expected, window):
    client, _cfg, _procs = stack
    rows = reply_rows("top", client.top(by="exporter", metric="bytes", limit=10, **window))
    by_exporter = {str(r["key"]): r["bytes"] for r in rows}
    want = {SOURCES[name]: sum(r["bytes"] for r in rs) for name, rs in expected.items()}
    assert by_exporter == want
    rows = reply_rows("top", client.top(by="dst_port", metric="packets", limit=3, **window))
    sums = Counter()
    for r in (r for rs in expected.values() for r in rs):
        sums[r["dst_port"]] += r["packets"]
    assert [int(r["key"]) for r in rows] == [k for k, _ in sums.most_common(3)]
    assert [r["packets"] for r in rows] == [v for _, v in sums.most_common(3)]


def test_series_agrees_with_the_input(stack, expected, window):
    client, _cfg, _procs = stack
    reply = client.series(step=60, **window)
    points = reply["points"]
    rows = [r for rs in expected.values() for r in rs]
    assert sum(p[1] for p in points) == sum(r["bytes"] for r in rows)
    assert sum(p[2] for p in points) == sum(r["packets"] for r in rows)
    assert sum(p[3] for p in points) == len(rows)
    assert all(p[0] % 60_000 == 0 for p in points)
    only_dns = client.series(step=60, exporter="127.0.0.2", **window)["points"]
    assert sum(p[1] for p in only_dns) == sum(r["bytes"] for r in expected["softflowd_v5_dns"])
    # every flow lies inside the window: spread over their lifetimes the bytes still add up (to
    # rounding, at most one byte a step), and these unsampled exporters scale by 1
    spread = client.series(step=60, spread=True, scaled=True, **window)
    assert spread["spread"] is True and spread["scaled"] is True
    assert abs(sum(p[1] for p in spread["points"]) - sum(r["bytes"] for r in rows)) <= len(spread["points"])
    assert sum(p[3] for p in spread["points"]) == len(rows)
    assert client.top(by="exporter", scaled=True, **window)["totals"]["bytes"] == sum(r["bytes"] for r in rows)


def test_exporters_lists_each_with_its_counts(stack, expected, real_flows):
    client, _cfg, _procs = stack
    want = {src: len(expected[name]) for name, src in SOURCES.items()}
    want[REAL[1]] = len(real_flows)
    collector_of = {"127.0.0.2": "collector-a", "127.0.0.3": "collector-b", REAL[1]: "collector-a"}

    def reported():
        rows = client.exporters()["exporters"]
        if len(rows) != 3 or any(r.get("collector") is None for r in rows):
            return None  # a collector's first stats event has not arrived yet
        return rows
    rows = wait_until(reported, timeout_s=20, interval_s=0.2)
    assert {r["exporter"]: r["store_flows"] for r in rows} == want
    assert {r["exporter"]: r["flows"] for r in rows} == want
    assert {r["exporter"]: r["collector"] for r in rows} == collector_of
    assert {r["exporter"]: r["packets"] for r in rows} == {"127.0.0.2": 15, "127.0.0.3": 3, REAL[1]: 1}
    assert all(r["version"] == 5 and r["sequence_lost"] == 0 for r in rows)


def flowlens(cfg, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flowmodel.cli", "query", *args, "--endpoint", cfg["query"]["endpoint"]],
                          capture_output=True, text=True, timeout=60)


def test_cli_json_lines(stack, expected, window):
    _client, cfg, _procs = stack
    r = flowlens(cfg, "flows", "--exporter", "127.0.0.3", "--since", str(window["since"]), "--until", str(window["until"]),
                 "--limit", "1000", "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == len(expected["pmacct_v5_http"])
    assert set(rows[0]) == set(FLOW_COLUMNS)
    assert Counter(map(as_key, rows)) == Counter(map(as_key, expected["pmacct_v5_http"]))


def test_cli_follows_the_cursor_past_one_page(stack, window):
    _client, cfg, _procs = stack
    r = flowlens(cfg, "flows", "--since", str(window["since"]), "--until", str(window["until"]), "--limit", "450",
                 "--format", "csv")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == 450
    assert list(rows[0]) == list(FLOW_COLUMNS)
    assert {row["exporter"] for row in rows} == {"127.0.0.2", "127.0.0.3"}


def test_cli_table_and_top(stack, window):
    _client, cfg, _procs = stack
    r = flowlens(cfg, "flows", "--port", "8000", "--since", str(window["since"]), "--limit", "5")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["time_start", "time_end", "exporter"] and len(lines) == 6
    assert all("TCP" in line and "127.0.0.3" in line for line in lines[1:])
    r = flowlens(cfg, "top", "--by", "exporter", "--since", str(window["since"]), "--until", str(window["until"]),
                 "--format", "json")
    assert r.returncode == 0, r.stderr
    assert {json.loads(line)["key"] for line in r.stdout.splitlines()} == {"127.0.0.2", "127.0.0.3"}
    r = flowlens(cfg, "series", "--step", "60", "--spread", "--scaled", "--since", str(window["since"]),
                 "--until", str(window["until"]), "--format", "json")
    assert r.returncode == 0, r.stderr
    points = [json.loads(line) for line in r.stdout.splitlines()]
    plain = _client.series(step=60, **window)["points"]
    assert sum(p["flows"] for p in points) == sum(p[3] for p in plain) > 0
    assert abs(sum(p["bytes"] for p in points) - sum(p[1] for p in plain)) <= len(points)


def test_cli_store_error_exits_2(stack):
    _client, cfg, _procs = stack
    r = flowlens(cfg, "top", "--by", "colour", "--since", "1h")
    assert r.returncode == 2
    assert r.stderr.startswith("flowlens query: ") and "Traceback" not in r.stderr


@pytest.mark.parametrize("limit", ["0", "-5", "ten"])
def test_cli_rejects_a_limit_below_one(stack, limit):
    _client, cfg, _procs = stack
    r = flowlens(cfg, "flows", "--limit", limit)
    assert r.returncode == 2 and r.stdout == ""
    assert "argument --limit: wants" in r.stderr


def test_cli_status_table_is_key_value_sections(stack):
    _client, cfg, _procs = stack
    r = flowlens(cfg, "status")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "store" and max(map(len, lines)) < 250
    assert any(line.split() == ["flows_in", "474"] for line in lines)
    assert "  ring" in lines and "  sqlite" in lines and "  write_queue" in lines
    partitions = lines.index("    partitions")
    assert lines[partitions + 1].split() == ["name", "start_ms", "end_ms", "rows", "sealed"]


def test_cli_exporters_table_has_every_rows_columns_and_the_collectors(stack):
    client, cfg, _procs = stack
    wait_until(lambda: len(client.exporters()["collectors"]) == 2, timeout_s=20, interval_s=0.2)
    r = flowlens(cfg, "exporters")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    header = lines[0].split()
    assert header[:7] == ["exporter", "observation_domain", "version", "collector", "packets", "flows", "store_flows"]
    assert sorted(line.split()[0] for line in lines[1:4]) == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert sum(line.startswith("collector collector-") for line in lines) == 2
    datagrams = [int(line.split()[1]) for line in lines if line.strip().startswith("datagrams ")]
    assert sorted(datagrams) == [3, 16]  # collector B: pmacct's 3; collector A: softflowd's 15 + pynetflow's 1


def test_cli_rollups_take_a_step_of_whole_hours(stack, window):
    """README: rollups take `step`, whole minutes, whole hours read the hourly table; the CLI sent
    --step 3600 as 3600.0, which the store refuses as not a whole number."""
    client, cfg, _procs = stack
    r = flowlens(cfg, "rollups", "--kind", "exporter", "--step", "3600", "--since", str(window["since"]),
                 "--until", str(window["until"]), "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    direct = client.request("rollups", kind="exporter", step=3600, **window)["rows"]
    assert len(rows) == len(next(iter(direct.values()), []))
