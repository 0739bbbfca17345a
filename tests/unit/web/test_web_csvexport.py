"""CSV downloads (pure part): the flow columns are the CLI's, a long list is cut and says so."""
import asyncio
import csv
import io

from flowlens_web import csvexport
from flowmodel import cli
from flowmodel.output import render
from flowmodel.schema import FLOW_COLUMNS


def row(i):
    r = {name: 0 for name in FLOW_COLUMNS}
    r.update(time_end=1_764_000_000_000 + i, src_addr="10.0.0.1", dst_addr="2001:db8::1", exporter="192.0.2.1",
             next_hop="::", bytes=100 + i, protocol=6)
    return r


def collect(chunks) -> str:
    async def run():
        return "".join([c async for c in chunks])
    return asyncio.run(run())


def pages_of(rows, seen):
    async def fetch(cursor, want):
        seen.append((cursor, want))
        start = int(cursor or 0)
        page = rows[start:start + want]
        nxt = str(start + want) if start + want < len(rows) else None
        return page, nxt
    return fetch


def test_flow_csv_equals_the_cli_csv():
    rows = [row(i) for i in range(5)]
    text = collect(csvexport.flow_chunks(pages_of(rows, []), 100, page_rows=2))
    assert text == render(rows, "csv")  # `flowlens query flows --format csv` writes the same bytes


def test_flow_csv_follows_the_cursor_and_is_cut_at_the_limit():
    rows = [row(i) for i in range(7)]
    seen = []
    text = collect(csvexport.flow_chunks(pages_of(rows, seen), 5, page_rows=2))
    lines = text.splitlines()
    assert lines[-1].startswith("# cut at 5 rows (web.csv_max_rows)")
    data = list(csv.DictReader(io.StringIO("\n".join(lines[:-1]))))
    assert [int(r["bytes"]) for r in data] == [100, 101, 102, 103, 104]
    assert seen == [(None, 2), ("2", 2), ("4", 1)]  # the last page asks only for what fits
    exact = collect(csvexport.flow_chunks(pages_of(rows[:5], []), 5, page_rows=2))
    assert "# cut" not in exact  # exactly the limit and nothing more: not cut


def test_file_names_say_range_and_limit():
    assert csvexport.filename("flows", {"range": "24h"}, 100000) == "flowlens-flows-24h-max100000.csv"
    assert csvexport.filename("top-src", {"from": "2025-11-24T14:30Z", "to": "2025-11-24T16:30Z"}) == \
        "flowlens-top-src-2025-11-24T1430Z-2025-11-24T1630Z.csv"


def test_top_csv_is_the_cli_csv_or_a_header():
    reply = {"rows": [{"key": "10.0.0.1", "filter": {"src": "10.0.0.1"}, "bytes": 5, "packets": 1, "flows": 1}]}
    text = csvexport.top_csv(reply)
    assert text.splitlines()[0] == "key,filter,bytes,packets,flows"
    assert text.splitlines()[1] == '10.0.0.1,"{""src"":""10.0.0.1""}",5,1,1'
    assert csvexport.top_csv({"rows": []}) == cli.render_reply("top", {"rows": []}, "csv") == \
        "key,filter,bytes,packets,flows\n"


def test_a_stream_whose_store_goes_away_says_where_it_stopped():
    rows = [row(i) for i in range(6)]
    fetch = pages_of(rows, [])

    async def failing(cursor, want):
        if cursor is not None:
            raise csvexport.FetchFailed("the store at tcp://127.0.0.1:5555 did not answer within 5 s")
        return await fetch(cursor, want)
    lines = collect(csvexport.flow_chunks(failing, 100, page_rows=2)).splitlines()
    assert len(lines) == 1 + 2 + 1  # header, the first page, the line saying why it stopped
    assert lines[-1] == ("# stopped after 2 rows: the store at tcp://127.0.0.1:5555 did not answer within 5 s; "
                         "download again for the whole list")
