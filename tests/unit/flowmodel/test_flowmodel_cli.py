"""The flowlens command: argument parsing, output formats, cursor following, exit codes."""
import csv
import io
import json
import subprocess
import sys

import pytest

from flowmodel import cli
from flowmodel.output import render, reply_rows


def test_query_arguments_parse():
    args = cli.build_parser().parse_args(["query", "top", "--by", "dst", "--metric", "packets", "--src", "10.0.0.0/8",
                                          "--dst-port", "53", "--since", "1h", "--limit", "5", "--format", "json"])
    assert (args.op, args.by, args.metric, args.src, args.dst_port, args.since, args.limit, args.format) == \
        ("top", "dst", "packets", "10.0.0.0/8", "53", "1h", 5, "json")


def test_unknown_op_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(["query", "drop_tables"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_bad_filter_exits_2_before_any_request(capsys):
    assert cli.main(["query", "flows", "--src", "10.0.0.1/8", "--endpoint", "tcp://127.0.0.1:1"]) == 2
    assert "has host bits set" in capsys.readouterr().err
    assert cli.main(["query", "flows", "--since", "last tuesday", "--endpoint", "tcp://127.0.0.1:1"]) == 2


def test_unreachable_store_exits_3(capsys, monkeypatch):
    monkeypatch.setenv("FLOWLENS_QUERY__TIMEOUT", "0.2")
    monkeypatch.setenv("FLOWLENS_QUERY__RETRIES", "0")
    assert cli.main(["query", "status", "--endpoint", "tcp://127.0.0.1:9"]) == 3
    assert "did not answer" in capsys.readouterr().err


def test_config_check(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text("web:\n  page_size: 20\n")
    assert cli.main(["config", "check", str(good)]) == 0
    assert "page_size: 20" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("web:\n  page_sise: 20\n")
    assert cli.main(["config", "check", str(bad)]) == 2
    assert "'web.page_sise': unknown key; did you mean 'web.page_size'" in capsys.readouterr().err


def test_service_subcommand_execs_the_module(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("store:\n  ring_capacity: lots\n")
    # exec of python -m flowlens_store: whatever the store does with a bad config, it is the store's
    # own process (its name in the error, not flowlens's argparse usage).
    r = subprocess.run([sys.executable, "-m", "flowmodel.cli", "store", "--config", str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "usage: flowlens" not in r.stderr


class FakePages:
    """Stands in for StoreClient.flows: pages of 3 rows with cursors (only the paging logic is under test)."""

    def __init__(self, total):
        self.total, self.calls = total, []

    def flows(self, limit, cursor=None, **filters):
        self.calls.append((limit, cursor, filters))
        start = int(cursor or 0)
        n = min(3, limit, self.total - start)

        class Page:
            next_cursor = str(start + n) if start + n < self.total else None
            def __len__(self): return n
            def rows(self): return [{"i": start + k} for k in range(n)]
        return Page()


def test_flow_rows_follow_the_cursor():
    fake = FakePages(total=10)
    rows = cli.flow_rows(fake, 7, {"port": "53"})
    assert [r["i"] for r in rows] == list(range(7))
    assert [c[1] for c in fake.calls] == [None, "3", "6"] and fake.calls[-1][0] == 1
    assert all(c[2] == {"port": "53"} for c in fake.calls)
    assert len(cli.flow_rows(FakePages(total=4), 100, {})) == 4


ROWS = [{"time_start": 1795496423000, "src_addr": "10.0.0.1", "src_port": 5353, "protocol": 17, "bytes": 1200,
         "tcp_flags": 0x12},
        {"time_start": 1795496424500, "src_addr": "2001:db8::1", "src_port": 443, "protocol": 6, "bytes": 7,
         "tcp_flags": 0}]


def test_render_json_lines():
    lines = render(ROWS, "json").splitlines()
    assert [json.loads(l) for l in lines] == ROWS


def test_render_csv_has_header_and_all_columns():
    rows = list(csv.DictReader(io.StringIO(render(ROWS, "csv"))))
    assert rows[1]["src_addr"] == "2001:db8::1" and rows[0]["bytes"] == "1200"


def test_render_table_is_aligned_and_human():
    text = render(ROWS, "table", ["time_start", "src_addr", "src_port", "protocol", "bytes", "tcp_flags", "absent"])
    lines = text.splitlines()
    assert lines[0].split() == ["time_start", "src_addr", "src_port", "protocol", "bytes", "tcp_flags"]
    assert "2026-11-24 05:00:23.000" in lines[1] and "UDP" in lines[1] and ".A..S." in lines[1]
    assert "TCP" in lines[2]
    # numbers right-aligned: the bytes column ends at the same place on each line
    ends = [l.index("1200") + 4 for l in lines[1:2]] + [lines[2].index(" 7 ") + 2]
    assert ends[0] == ends[1]
    assert render([], "table") == "(no rows)\n"
    with pytest.raises(ValueError):
        render(ROWS, "xml")


def test_reply_rows_shapes():
    assert reply_rows("series", {"points": [[1000, 10, 2, 1]]}) == [{"time": 1000, "bytes": 10, "packets": 2, "flows": 1}]
    assert reply_rows("top", {"rows": [["10.0.0.1", 5, 1, 1]]})[0]["key"] == "10.0.0.1"
    assert reply_rows("top", {"rows": [{"key": "a", "bytes": 1}]}) == [{"key": "a", "bytes": 1}]
    assert reply_rows("status", {"ok": True, "version": "0.1.0"}) == [{"version": "0.1.0"}]
    assert reply_rows("exporters", {"exporters": [{"exporter": "127.0.0.1"}]}) == [{"exporter": "127.0.0.1"}]


def test_table_shows_epoch_ms_columns_as_times():
    text = render([{"exporter": "127.0.0.3", "store_last_seen": 1795504006826, "flows": 62}], "table")
    assert "2026-11-24 07:06:46.826" in text and "62" in text


def _header(text: str) -> list[str]:
    return next(csv.reader(io.StringIO(text)), [])


def test_csv_of_an_empty_answer_still_has_its_header():
    """`--format csv` prints a header line, then the rows: with no rows the header is the one a
    non-empty answer of the same op has, so `> flows.csv` is never a blank line."""
    from flowmodel.schema import COLUMN_NAMES

    flow = {name: 0 for name in COLUMN_NAMES}
    assert _header(cli.render_flows([], "csv")) == _header(cli.render_flows([flow], "csv")) == list(COLUMN_NAMES)
    top = {"ok": True, "rows": [{"key": "10.0.0.1", "filter": {"src": "10.0.0.1"}, "bytes": 5, "packets": 1, "flows": 1}]}
    assert _header(cli.render_reply("top", {"ok": True, "rows": []}, "csv")) == _header(cli.render_reply("top", top, "csv"))
    assert _header(cli.render_reply("series", {"ok": True, "points": []}, "csv")) == ["time", "bytes", "packets", "flows"]
    assert _header(cli.render_reply("explore", {"ok": True, "metric": "packets", "times": [], "series": []}, "csv")) == \
        ["time", "key", "packets"]
    assert cli.render_flows([], "table") == "(no rows)\n" and cli.render_flows([], "json") == ""


def test_rollups_and_overview_tables_show_their_times_in_utc():
    """README: --format table prints times in UTC; rollups' minute and overview's since were raw ms."""
    rollups = cli.render_reply("rollups", {"ok": True, "rows": {"minute": [1683632820000], "key": ["127.0.0.1"],
                                                                "bytes": [403]}}, "table")
    assert "2023-05-09 11:47:00.000" in rollups and "1683632820000" not in rollups
    overview = cli.render_reply("overview", {"ok": True, "since": 1683632820000, "clamped": False}, "table")
    assert "2023-05-09 11:47:00.000" in overview
    assert "1683632820000" in cli.render_reply("rollups", {"ok": True, "rows": {"minute": [1683632820000]}}, "json")


def test_overview_table_prints_its_series_and_tops_as_those_ops_do():
    """The overview's parts were printed as raw JSON lists inside one row per top."""
    series = {"ok": True, "step_ms": 10_000, "points": [[1683632820000, 403, 3, 1]]}
    top = {"ok": True, "by": "src", "rows": [{"key": "192.0.2.1", "filter": {"src": "192.0.2.1"},
                                             "bytes": 403, "packets": 3, "flows": 1}]}
    text = cli.render_reply("overview", {"ok": True, "since": 1683632820000, "clamped": False, "series": series,
                                         "top": {"src": top, "protocol": {"ok": True, "rows": []}}}, "table")
    assert text.index("series") < text.index("top src") < text.index("top protocol")
    assert cli.render_reply("series", series, "table") in text
    assert cli.render_reply("top", top, "table") in text
    assert "[1683632820000" not in text and '"key"' not in text
    assert text.endswith("top protocol\n(no rows)\n")


def test_top_level_help_says_what_each_command_does():
    text = " ".join(cli.build_parser().format_help().split())
    assert "(see flowlens" not in text
    for words in ("send the NetFlow/IPFIX/sFlow datagrams", "run the analyzers over a stored time range",
                  "acknowledge an open advisory", "silence add|list|remove"):
        assert words in text, words
