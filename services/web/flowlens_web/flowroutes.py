"""The dashboard, the flow explorer and their CSV downloads: routes over a time range (timerange.py).

The dashboard reads a live range the ring holds (storage.ring_buffer_duration, 10 minutes by
default) with one overview of the ring (the light lane, as before ranges existed); a longer or past range with a series at a step giving about 300
points and three top lists, which the store answers from its rollups (the heavy lane). The flow
explorer pages through the store's keyset cursor; its CSV follows the same cursor to the end of the
filtered list, streamed, cut at web.csv_max_rows.
"""
from __future__ import annotations

import logging
from typing import Callable

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from flowmodel.client import StoreError, StoreUnavailable
from flowmodel.events import SEVERITIES
from flowmodel.protocol import TOP_BY

from . import csvexport, flowtable, views
from .lanes import StoreLanes, TooBusy
from .storefeatures import StoreFeatures
from .storegate import HEAVY, LIGHT, StoreGate
from .timerange import RangeError, TimeRange

log = logging.getLogger(__name__)

ROUTES = ("/flows.csv", "/top.csv")
DASHBOARD_TOP = ("src", "dst", "protocol")
TOP_CSV_MAX = 1000  # rows a top list's CSV holds at most (its ?limit=, default 100)
GET = ["GET", "HEAD"]


def active_advisory_counts(store: StoreGate) -> dict[str, int]:
    """Active advisories per severity: the store counts every match, whatever the page limit."""
    counts = store.advisories(include_resolved=False, limit=1).get("counts") or {}
    return {s: int(counts.get(s) or 0) for s in SEVERITIES}


def add_flow_routes(app, cfg, store: StoreGate, lanes: StoreLanes, page: Callable, error_page: Callable,
                    now_ms: Callable[[], int], features: StoreFeatures | None = None) -> None:
    page_size = int(cfg["web.page_size"])
    refresh = int(cfg["web.refresh"])
    csv_max_rows = int(cfg["web.csv_max_rows"])
    ring_ms = int(cfg["storage.ring_buffer_duration"] * 1000)
    features = features or StoreFeatures()

    def bad_range(e: Exception, nav: str) -> Response:
        return error_page(400, "Bad time range", f"{e}.", nav=nav)

    @app.api_route("/", methods=GET)
    async def dashboard(request: Request):
        try:
            tr = TimeRange.from_query(request.query_params, now_ms(), default=views.DASHBOARD_RANGE)
        except RangeError as e:
            return bad_range(e, "dashboard")
        since, until = tr.since_ms, tr.until_ms
        if views.uses_overview(tr, ring_ms):
            def ask():
                # throughput as the wire saw it: each flow's bytes spread over its lifetime (not a spike where an
                # active timeout exported it) and sampled exporters' counters times their 1-in-N rate
                # (one overview request: the store reads the window once for the chart and the three top lists)
                ov = store.overview(step=views.DASHBOARD_STEP_S, limit=10, since=since, until=until)
                return ov, active_advisory_counts(store), store.exporters()
            ov, counts, exporters = await lanes.run(request, LIGHT, ask)  # one turn on the light lane
            ctx = views.dashboard(tr, ov["series"], *(ov["top"][by] for by in DASHBOARD_TOP), counts, exporters,
                                  refresh, since_ms=ov.get("since"), clamped=bool(ov.get("clamped")))
            return page("dashboard.xhtml", **ctx)
        step = tr.step_s()
        counts, exporters = await lanes.run(request, LIGHT, lambda: (active_advisory_counts(store), store.exporters()))

        def history(c):
            # unspread: the store sums its rollups (a spread series would read every raw flow of the range)
            series = c.series(step=step, scaled=True, since=since, until=until)
            tops = [c.top(by=by, limit=10, scaled=True, since=since, until=until) for by in DASHBOARD_TOP]
            return series, tops

        def history_page() -> Response:
            series, tops = store.call(history, lane=HEAVY)
            return page("dashboard.xhtml", **views.dashboard(tr, series, *tops, counts, exporters, refresh, step_s=step,
                                                             spread=False))
        return await lanes.run(request, HEAVY, history_page)  # built on the history lane: see flows()

    @app.api_route("/flows", methods=GET)
    async def flows(request: Request):
        params = request.query_params
        now = now_ms()
        ctx = {"title": "Flows", "nav": "flows", "error": None, "rows": [], "range_bar": None, "range_query": {},
               "next_query": None, "prev_query": None, "page_size": page_size, "searched": False}
        try:
            form, args, tr = flowtable.flow_query(params, now)
        except flowtable.FormError as e:
            form = {k: (params.get(k) or "")[:500] for k in (*flowtable.FILTER_FIELDS, "order")}
            return page("flows.xhtml", 400, form=form, **{**ctx, "error": str(e)})
        ctx.update(range_bar=tr.bar("/flows", keep=flowtable.form_query(form, tr)), range_query=tr.query())
        cursor = params.get("cursor") or None
        direction = params.get("dir") or "next"
        if direction not in ("next", "prev"):
            return page("flows.xhtml", 400, form=form, **{**ctx, "error": f"direction {direction!r} is not next or prev"})

        def ask(c):
            result = c.flows(limit=page_size, cursor=cursor, direction=direction, **args)
            return result, features.names(c), features.sorts_flows(c, now)

        def flows_page() -> Response:
            result, names, sorts = store.call(ask, lane=HEAVY)
            rows = flowtable.flow_rows(result.rows(), now, names)
            show_prev = bool(result.prev_cursor) and bool(cursor)
            here = {"cursor": cursor, "dir": direction} if cursor else {}
            sort_links = [{"text": text, "here": key == form["order"],
                           "query": flowtable.form_query({**form, "order": key}, tr)}
                          for key, text in (("time", "newest"), ("bytes", "bytes"), ("packets", "packets"))] if sorts else []
            return page("flows.xhtml", form=form, **{
                **ctx, "rows": rows, "searched": True, "order_text": flowtable.ORDERS[form["order"]],
                "sort_links": sort_links, "csv_max_rows": csv_max_rows,
                "page_csv_query": flowtable.form_query(form, tr, scope="page", **here),
                "all_csv_query": flowtable.form_query(form, tr),
                "next_query": flowtable.form_query(form, tr, cursor=result.next_cursor, dir="next") if result.next_cursor else None,
                "prev_query": flowtable.form_query(form, tr, cursor=result.prev_cursor, dir="prev") if show_prev else None,
                "first_query": flowtable.form_query(form, tr) if cursor else None})
        try:
            # the page is built on the history lane's thread, inside its turn: history's store reads and
            # its rendering (5 ms a 50-row page) then never run at once, so history takes at most one
            # core of two and the dashboard's ring answer keeps the other; the event loop stays free
            return await lanes.run(request, HEAVY, flows_page)
        except StoreError as e:
            return page("flows.xhtml", 400, form=form, **{**ctx, "error": f"the store refused this filter: {e}"})

    @app.api_route("/flows.csv", methods=GET)
    async def flows_csv(request: Request):
        """scope=page: the page the explorer shows (cursor, dir); else every match up to csv_max_rows."""
        params = request.query_params
        try:
            form, args, tr = flowtable.flow_query(params, now_ms())
        except flowtable.FormError as e:
            return error_page(400, "Cannot download these flows", f"{e}.", nav="flows")
        scope = params.get("scope") or "all"
        direction = params.get("dir") or "next"
        if scope not in ("page", "all") or direction not in ("next", "prev"):
            return error_page(400, "Cannot download these flows",
                              f"scope {scope[:20]!r} must be page or all, dir {direction[:20]!r} next or prev.", nav="flows")
        cursor = params.get("cursor") or None
        client = request.client.host if request.client else "?"

        def fetch_sync(cur, want, dir_="next"):
            page_ = store.flows(lane=HEAVY, limit=want, cursor=cur, direction=dir_, **args)
            return page_.rows(), page_.next_cursor
        try:
            if scope == "page":
                rows, _ = await lanes.run(request, HEAVY, lambda: fetch_sync(cursor, page_size, direction))
                body = csvexport.lines(rows, csvexport.flow_csv_columns(), header=True)
                return csv_response(body, csvexport.filename("flows-page", tr.query()))
            first = await lanes.run(request, HEAVY, lambda: fetch_sync(None, min(csvexport.PAGE_ROWS, csv_max_rows)))
        except StoreError as e:
            return error_page(400, "Cannot download these flows", f"The store refused this filter: {e}.", nav="flows")

        async def fetch(cur, want):
            # each page takes a turn on the history lane like a page view (the browser's share counts it)
            try:
                return await lanes.turn(client, HEAVY, lambda: fetch_sync(cur, want))
            except (StoreError, StoreUnavailable, TooBusy) as e:
                log.warning("flows csv stopped", extra={"fields": {"client": client, "error": str(e)}})
                raise csvexport.FetchFailed(str(e)) from e
        chunks = csvexport.flow_chunks(fetch, csv_max_rows, first=first)
        return csv_response(chunks, csvexport.filename("flows", tr.query(), csv_max_rows))

    @app.api_route("/top.csv", methods=GET)
    async def top_csv(request: Request):
        params = request.query_params
        by = params.get("by") or ""
        metric = params.get("metric") or "bytes"
        try:
            tr = TimeRange.from_query(params, now_ms(), default=views.DASHBOARD_RANGE)
            if by not in TOP_BY:
                raise RangeError(f"by {by[:40]!r} is not one of {', '.join(TOP_BY)}")
            if metric not in ("bytes", "packets", "flows"):
                raise RangeError(f"metric {metric[:40]!r} is not bytes, packets or flows")
            limit = int(params.get("limit") or 100)
            if not 1 <= limit <= TOP_CSV_MAX:
                raise ValueError
        except RangeError as e:
            return error_page(400, "Cannot download this list", f"{e}.", nav="dashboard")
        except ValueError:
            return error_page(400, "Cannot download this list",
                              f"limit {params.get('limit', '')[:20]!r} is not a number from 1 to {TOP_CSV_MAX}.", nav="dashboard")
        reply = await lanes.query(request, "top", by=by, metric=metric, limit=limit, scaled=True,
                                  since=tr.since_ms, until=tr.until_ms)
        return csv_response(csvexport.top_csv(reply), csvexport.filename(f"top-{by}", tr.query()))


def csv_response(body, name: str) -> Response:
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}
    if isinstance(body, str):
        return Response(body, media_type=csvexport.CSV_MEDIA, headers=headers)
    return StreamingResponse(body, media_type=csvexport.CSV_MEDIA, headers=headers)
