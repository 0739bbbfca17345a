"""Names end to end: a real Cisco IOS-XR capture replayed (`flowlens replay`) into a collector and
a store running as processes; the store's names op names the interfaces as tshark shows them
(source options), adds the exporters: config (name, site, static interfaces, source config) below
them, resolves the exporter's reverse DNS name on its own thread (127.0.0.1 is localhost in
/etc/hosts), and still knows the options names after the store restarts with no collector left,
as `flowlens query names` shows."""
from __future__ import annotations

import json
from pathlib import Path

from flowmodel.cli import main as cli_main
from flowmodel.replay import main as replay_main
from support.services import ServiceProcess, ServiceStack, wait_until, write_config

DATA = Path(__file__).resolve().parents[1] / "data"
CAPTURE = DATA / "pmacct-ta_ipfix_cisco-srv6-500.pcap"
# tshark -r CAPTURE -d udp.port==9992,cflow -V: IfName (IE 82), IfDescr (IE 83) per InputInt
TSHARK = {42: ("TenGigE0_0_0_0", "TenGigE0/0/0/0"), 69: ("TenGigE0_0_0_0.516", "TenGigE0/0/0/0.516"),
          70: ("TenGigE0_0_0_0.523", "TenGigE0/0/0/0.523"), 71: ("TenGigE0_0_0_0.524", "TenGigE0/0/0/0.524")}
EXPORTER = "127.0.0.1"  # replay sends the capture's one exporter (198.51.100.54) from 127.0.0.1


def names_of(client) -> dict:
    reply = client.request("names")
    assert reply["ok"], reply
    return reply


def test_replayed_options_names_config_and_restart(tmp_path, capsys):
    stack = ServiceStack(tmp_path, ["store", "collector"], names={"reverse_dns": True},
                         store={"sqlite_retention": "3650d", "rollup_retention": "3650d"})
    stack.cfg["exporters"] = [{"address": EXPORTER, "name": "xr-lab", "site": "lab",
                               "interfaces": {42: {"name": "loses-to-options", "speed": "10G"},
                                              999: {"name": "static-999", "description": "from config"}}}]
    write_config(stack.config_path, stack.cfg)
    with stack:
        client = stack.client()
        try:
            # config names are there before any flow
            before = {i["ifindex"]: i for i in names_of(client)["interfaces"]}
            assert before[42]["name"] == "loses-to-options" and before[42]["source"] == "config"
            assert replay_main([str(CAPTURE), "--to", f"127.0.0.1:{stack.ipfix_port}", "--speed", "max",
                                "--no-progress"]) == 0
            assert f"{EXPORTER}" in capsys.readouterr().out

            def options_named():
                rows = {i["ifindex"]: i for i in names_of(client)["interfaces"] if i["exporter"] == EXPORTER}
                return rows if all(rows.get(k, {}).get("source") == "options" for k in TSHARK) else None
            rows = wait_until(options_named, timeout_s=20, interval_s=0.2)
            for ifindex, (name, description) in TSHARK.items():
                assert (rows[ifindex]["name"], rows[ifindex]["description"]) == (name, description)
            assert rows[42]["speed_bps"] == 10 * 10**9  # options carry no speed: the config's stays
            assert (rows[999]["name"], rows[999]["source"], rows[999]["description"]) == \
                ("static-999", "config", "from config")
            exporter = wait_until(lambda: next((e for e in names_of(client)["exporters"]
                                                if e["exporter"] == EXPORTER and e["dns"]), None), timeout_s=15)
            assert exporter == {"exporter": EXPORTER, "name": "xr-lab", "site": "lab", "dns": "localhost"}
            names_status = client.request("status")["names"]
            assert names_status["rows"] == len(TSHARK) and names_status["config_interfaces"] == 2
            assert names_status["events"] >= 1 and names_status["refused"] == names_status["evicted"] == 0
            assert names_status["reverse_dns"]["lookups"] >= 1
        finally:
            client.close()
        assert stack.procs["collector"].stop() == 0  # no collector left to publish the names again
        assert stack.procs["store"].stop() == 0
        store = stack.procs["store"] = ServiceProcess("store", stack.config_path).start()
        client = stack.client()
        try:
            rows = {i["ifindex"]: i for i in names_of(client)["interfaces"] if i["exporter"] == EXPORTER}
            assert {k: (rows[k]["name"], rows[k]["description"], rows[k]["source"]) for k in TSHARK} == \
                {k: (n, d, "options") for k, (n, d) in TSHARK.items()}
        finally:
            client.close()
        capsys.readouterr()
        assert cli_main(["query", "names", "--config", str(stack.config_path), "--format", "json"]) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert {(r["ifindex"], r["name"], r["exporter_name"]) for r in lines if r["exporter"] == EXPORTER} == \
            {(k, n, "xr-lab") for k, (n, _d) in TSHARK.items()} | {(999, "static-999", "xr-lab")}
        assert store.stop() == 0
