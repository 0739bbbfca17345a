"""`flowlens query names`: one JSON/CSV row per interface beside its exporter's names; a table of
exporters and one of interfaces."""
import json

from flowmodel.cli import render_reply

REPLY = {"ok": True,
         "exporters": [{"exporter": "192.0.2.1", "name": "edge-1", "site": "paris", "dns": "edge-1.example.net"},
                       {"exporter": "192.0.2.2", "name": "", "site": "", "dns": ""}],
         "interfaces": [{"exporter": "192.0.2.1", "ifindex": 42, "name": "TenGigE0_0_0_0",
                         "description": "TenGigE0/0/0/0", "speed_bps": 10_000_000_000, "source": "options"}]}


def test_json_rows_join_interfaces_to_exporters():
    rows = [json.loads(line) for line in render_reply("names", REPLY, "json").splitlines()]
    assert rows == [
        {"exporter": "192.0.2.1", "exporter_name": "edge-1", "site": "paris", "dns": "edge-1.example.net",
         "ifindex": 42, "name": "TenGigE0_0_0_0", "description": "TenGigE0/0/0/0", "speed_bps": 10_000_000_000,
         "source": "options"},
        {"exporter": "192.0.2.2", "exporter_name": "", "site": "", "dns": "", "ifindex": "", "name": "",
         "description": "", "speed_bps": "", "source": ""}]


def test_csv_header_and_table():
    csv_text = render_reply("names", REPLY, "csv")
    assert csv_text.splitlines()[0] == "exporter,exporter_name,site,dns,ifindex,name,description,speed_bps,source"
    table = render_reply("names", REPLY, "table")
    assert "edge-1.example.net" in table and "TenGigE0/0/0/0" in table
    assert table.index("exporters") < table.index("interfaces")
