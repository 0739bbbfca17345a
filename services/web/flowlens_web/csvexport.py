"""CSV downloads of the pages' tables (pure: rows in, text out; the app streams the chunks).

Flow lists carry the columns `flowlens query flows --format csv` writes (every schema column, its
name as header, times in ms since epoch, addresses as text), so a download and the CLI's answer for
the same filter compare line for line. Top lists carry the fields `flowlens query top` writes
(key, bytes, packets, flows and what the store adds). A whole flow list is read page by page through the store's keyset cursor and cut at
a row limit; the file's name gives the limit and a cut file ends with a '#' line saying so.
"""
from __future__ import annotations

import csv
import io
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Mapping

from flowmodel.output import TOP_COLUMNS, render, reply_rows

PAGE_ROWS = 2000  # rows asked of the store per page while streaming (about 1 MB of CSV)
CSV_MEDIA = "text/csv; charset=utf-8"

# fetch(cursor, want) -> (rows as dicts, next cursor or None)
FetchPage = Callable[[str | None, int], Awaitable[tuple[list[Mapping[str, Any]], str | None]]]


class FetchFailed(Exception):
    """A later page of a streamed list could not be read (the store went away, or was busy): the
    response has begun, so the file ends with a line saying so instead of a status code."""


def flow_csv_columns() -> tuple[str, ...]:
    """Every schema column, in wire order. flowmodel.schema stands on numpy (~13 MiB of RSS), which
    the web loads only once it decodes a flows reply (flowmodel.client), so not at import."""
    from flowmodel.schema import COLUMN_NAMES

    return COLUMN_NAMES


def stopped_line(rows: int, reason: str) -> str:
    return f"# stopped after {rows:,} rows: {reason}; download again for the whole list\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def lines(rows: Iterable[Mapping[str, Any]], columns: Iterable[str], header: bool = False) -> str:
    columns = tuple(columns)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if header:
        w.writerow(columns)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in columns])
    return buf.getvalue()


def top_csv(reply: Mapping[str, Any]) -> str:
    """A top reply as `flowlens query top --format csv` writes it (the reply's row fields, a filter
    map as JSON); its header alone when no row matched, as the CLI's."""
    return render(reply_rows("top", dict(reply)), "csv", columns=TOP_COLUMNS)


def cut_line(max_rows: int) -> str:
    return (f"# cut at {max_rows:,} rows (web.csv_max_rows): more flows match; narrow the filters or the "
            "time range for the rest\n")


def filename(kind: str, range_query: Mapping[str, str], max_rows: int | None = None) -> str:
    """'flowlens-flows-24h-max100000.csv', 'flowlens-top-src-2026-11-24T1430Z-2026-11-24T1630Z.csv'."""
    span = range_query.get("range") or f"{range_query.get('from', '')}-{range_query.get('to', '')}"
    name = f"flowlens-{kind}-{span}".replace(":", "")
    if max_rows is not None:
        name += f"-max{max_rows}"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) + ".csv"


async def flow_chunks(fetch: FetchPage, max_rows: int, first: tuple[list, str | None] | None = None,
                      page_rows: int = PAGE_ROWS) -> AsyncIterator[str]:
    """The CSV of a whole flow list: the header, then a chunk per store page following the cursor,
    at most ``max_rows`` rows, and the cut line when more rows matched. ``first``: the first page,
    already fetched (the app asks for it before answering, so a refused filter is a 400, not a
    broken download)."""
    yield lines((), flow_csv_columns(), header=True)
    sent = 0
    page = first if first is not None else await fetch(None, min(page_rows, max_rows))
    while True:
        rows, cursor = page
        rows = list(rows)[:max_rows - sent]
        if rows:
            yield lines(rows, flow_csv_columns())
            sent += len(rows)
        if not cursor or not rows:
            return
        if sent >= max_rows:
            yield cut_line(max_rows)
            return
        try:
            page = await fetch(cursor, min(page_rows, max_rows - sent))
        except FetchFailed as e:
            yield stopped_line(sent, str(e))
            return
