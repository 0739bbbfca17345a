"""flowlens query in table format: --limit bounds, status as sections, exporters' columns from every row."""
import pytest

from flowmodel import cli

STATUS = {"ok": True, "version": "0.1.0", "started_at": 1_795_522_747_363, "flows_in": 409,
          "ring": {"capacity": 600000, "fill": 409, "oldest_time": 1_795_494_047_459, "evicted_max_time_end": None},
          "sqlite": {"path": "/tmp/x.db", "partitions": [{"name": "flows_1", "start_ms": 1_795_492_800_000, "rows": 0}],
                     "out_of_range_by_exporter": {}},
          "bus": {"gaps_total": 0, "sources": {"collector@vm:1": {"received": 2, "gaps": 0}}},
          "services": [{"service": "store", "process": {"pid": 7, "rss_bytes": 42}}]}


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "ten"])
def test_limit_must_be_a_whole_number_of_at_least_one(value, capsys):
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(["query", "flows", "--limit", value])
    assert e.value.code == 2
    assert "argument --limit: wants" in capsys.readouterr().err


def test_status_table_is_sections():
    text = cli.render_reply("status", STATUS, "table")
    lines = text.splitlines()
    assert lines[0] == "store"
    assert "  flows_in    409" in lines and "  started_at  2026-11-24 12:19:07.363" in lines
    assert "  ring" in lines and "    oldest_time           2026-11-24 04:20:47.459" in lines
    assert "    evicted_max_time_end  -" in lines
    i = lines.index("    partitions")
    assert lines[i + 1].split() == ["name", "start_ms", "rows"] and "2026-11-24 04:00:00.000" in lines[i + 2]
    i = lines.index("    sources")
    assert lines[i + 1].split() == ["name", "received", "gaps"] and lines[i + 2].split() == ["collector@vm:1", "2", "0"]
    i = lines.index("  services")
    assert lines[i + 1].split() == ["service", "process.pid", "process.rss_bytes"]
    assert "{" not in text  # no JSON cells
    assert cli.render_reply("status", STATUS, "json").startswith('{"version":"0.1.0"')


def test_exporters_columns_come_from_every_row():
    reply = {"ok": True,
             "exporters": [{"exporter": "10.0.0.1", "observation_domain": None, "collector": None, "store_flows": 5},
                           {"exporter": "10.0.0.2", "observation_domain": 0, "collector": "c1", "packets": 3,
                            "flows": 90, "store_flows": 90, "templates": 2}],
             "collectors": [{"collector": "c1", "kind": "collector", "counters": {"datagrams": 3, "flows": 90}}]}
    lines = cli.render_reply("exporters", reply, "table").splitlines()
    assert lines[0].split() == ["exporter", "observation_domain", "collector", "packets", "flows", "store_flows",
                                "templates"]
    assert lines[2].split() == ["10.0.0.2", "0", "c1", "3", "90", "90", "2"]
    assert "collector c1" in lines and "    datagrams  3" in lines
