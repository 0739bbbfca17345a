"""The Explore page, its CSV, and the exporter and interface pages (routes; the work is in
explore.py, exporterviews.py and stackchart.py).

Each page reads the store's ``explore`` op on the history lane (one turn per page, even when it
asks twice; Explore's Sankey of two dimensions asks ``top`` by their pair in the same turn) and the
``names`` op on the light lane; a store without ``names`` shows addresses and
ifIndexes. A bad parameter is a 400 naming it; a store without ``explore`` makes Explore a 502
saying so, and the exporter pages show their health without charts.
"""
from __future__ import annotations

import logging
from typing import Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response

from flowmodel.client import StoreError

from . import explore as ex
from . import exporterviews as ev
from . import sankeyview as sv
from .asgi import App
from .namebook import NameBook
from .storefeatures import StoreFeatures
from .storegate import HEAVY, LIGHT
from .timerange import RangeError, TimeRange

log = logging.getLogger(__name__)

GET = ["GET", "HEAD"]
ROUTES = ("/explore", "/explore.csv", "/exporters")  # their own series in /metrics' latency histogram
EXPORTER_TOP = 20       # interfaces charted per direction on an exporter's page (the rest are Other)
INTERFACE_TOP = 10      # talkers charted per direction on an interface's page
SAMPLING_EXPORTERS = 50  # exporters whose sampling the list shows (the most packets in the last hour)
FORM_FIELDS = ("by", "metric", "top", "sankey_from", "sankey_to", *ex.FILTERS)  # what the form shows again
UNSUPPORTED = "this store does not answer the explore op yet (it is older than this web); upgrade the store service"


class ExploreUnsupported(Exception):
    """The store answered that it has no explore op (an older store)."""


def add_explore_routes(app: App, lanes, page: Callable[..., Response], now_ms: Callable[[], int],
                       features: StoreFeatures | None = None) -> None:
    store = lanes.gate
    features = features or StoreFeatures()

    async def names(request: Request) -> NameBook:
        """The store's names, kept a minute by ``features`` (shared with the flow pages; the reply may
        hold names.max_rows interfaces; names change rarely: SNMP polls hourly). A store without the
        op gives an empty book: addresses and ifIndexes."""
        known = features.fresh_names()
        if known is not None:
            return known
        return await lanes.run(request, LIGHT, lambda: store.call(features.names, lane=LIGHT))

    async def explore_replies(request: Request, *arg_sets: dict, sankey: dict | None = None) -> list:
        """The explore replies of ``arg_sets``, then, with ``sankey`` (top arguments of a pair of
        dimensions), (its reply or None, the store's reason or ""): one turn on the history lane."""
        def ask():
            replies = [store.call(lambda c: c.request("explore", **args), lane=HEAVY) for args in arg_sets]
            if sankey is None:
                return replies
            try:  # the chart and the table stand without it
                return [*replies, (store.call(lambda c: c.request("top", **sankey), lane=HEAVY), "")]
            except StoreError as e:
                return [*replies, (None, str(e))]
        try:
            return await lanes.run(request, HEAVY, ask)
        except StoreError as e:
            if str(e).startswith("unknown op"):
                raise ExploreUnsupported(str(e)) from None
            raise

    async def sampling(request: Request, address: str, trange: TimeRange) -> str:
        """'1 in 100' from the exporter's newest flow in the range (its health carries no rate)."""
        try:
            rows = (await lanes.query(request, "flows", limit=1, exporter=address, since=trange.since_ms,
                                      until=trange.until_ms)).rows()
        except StoreError as e:  # the page goes on without it
            log.debug("no sampling rate", extra={"fields": {"error": str(e)}})
            return ""
        if not rows:
            return ""
        return ev.sampling_text(int(rows[0].get("sampling_rate") or 0)) or "unknown rate"


    # ------------------------------------------------------------------ /explore

    def explore_ctx(form: dict, trange: TimeRange, sankey_asked: bool = True, **extra) -> dict:
        keep = {k: v for k, v in form.items() if v}
        return {"title": "Explore", "nav": "explore", "form": {**{k: "" for k in FORM_FIELDS}, **form},
                "sankey_picked": sv.picker_choice(form, sankey_asked), "sankey_note": sv.PICKER_NOTE,
                "dimensions": ex.DIMENSIONS, "metrics": ex.METRICS, "sankey_dimensions": ex.SANKEY_DIMENSIONS, "range_bar": trange.bar("/explore", keep),
                "range_hidden": trange.query(), "error": None, "view": None, "top": form.get("top", ""),
                "csv_href": None, **extra}

    async def explore_page(request: Request, as_csv: bool) -> Response:
        params = request.query_params
        now = now_ms()
        asked = "sankey_from" in params or "sankey_to" in params  # else the picker suggests a rollup pair
        try:
            q = ex.parse_query(params, now)
        except ex.FormError as e:
            if as_csv:
                return Response(f"cannot explore: {e}\n", 400, media_type="text/plain; charset=utf-8")
            try:
                trange = TimeRange.from_query(params, now)
            except RangeError:
                trange = TimeRange.last("1h", now)
            form = {k: (params.get(k) or "")[:200] for k in FORM_FIELDS}
            return page("explore.xhtml", 400, **explore_ctx(form, trange, asked, error=str(e)))
        ctx = explore_ctx(q.form, q.range, asked)
        sankey_args = sv.store_args(q) if q.sankey and not as_csv else None
        try:
            reply, *sankey = await explore_replies(request, q.store_args(), sankey=sankey_args)
        except ExploreUnsupported:
            return page("explore.xhtml", 502, **{**ctx, "error": UNSUPPORTED})
        except StoreError as e:
            if as_csv:
                return Response(f"the store refused this view: {e}\n", 400, media_type="text/plain; charset=utf-8")
            return page("explore.xhtml", 400, **{**ctx, "error": f"the store refused this view: {e}"})
        view = ex.explore_view(q, reply, await names(request))
        if as_csv:
            name = f"flowlens-explore-{q.by}-{q.metric}-{q.range.query().get('range') or 'custom'}.csv"
            return Response(ex.explore_csv(view, q), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})
        if sankey:
            (sankey_reply, refused), = sankey
            view["sankey"] = sv.pair_sankey(q, sankey_reply, await names(request)) if sankey_reply else None
            view["sankey_caption"], view["sankey_error"] = sv.caption(q), refused
        return page("explore.xhtml", **{**ctx, "view": view, "csv_href": ex.url("/explore.csv", q.params())})

    @app.api_route("/explore", methods=GET)
    async def explore(request: Request):
        fmt_param = request.query_params.get("format") or "html"
        if fmt_param not in ("html", "csv"):
            return page("explore.xhtml", 400, **explore_ctx({}, TimeRange.last("1h", now_ms()),
                                                             error=f"format {fmt_param[:20]!r} is not html or csv"))
        return await explore_page(request, fmt_param == "csv")

    @app.api_route("/explore.csv", methods=GET)
    async def explore_csv(request: Request):
        return await explore_page(request, True)

    # ------------------------------------------------------------------ exporters

    def page_range(request: Request) -> TimeRange:
        return TimeRange.from_query(request.query_params, now_ms())

    async def sampling_last_hour(request: Request, now: int) -> dict[str, str]:
        """Each exporter's sampling over the last hour (the collectors' counters carry no rate)."""
        window = {"by": "exporter", "metric": "packets", "limit": SAMPLING_EXPORTERS, "since": now - 3_600_000,
                  "until": now}
        try:
            scaled, unscaled = await lanes.run(request, HEAVY, lambda: (
                store.top(scaled=True, **window), store.top(scaled=False, **window)))
        except StoreError as e:
            log.debug("no sampling rates", extra={"fields": {"error": str(e)}})
            return {}
        return ev.sampling_by_exporter(scaled, unscaled)

    @app.api_route("/exporters", methods=GET)
    async def exporters(request: Request):
        now = now_ms()
        reply = await lanes.query(request, "exporters")
        known = await names(request)
        sampling = await sampling_last_hour(request, now)
        return page("exporters.xhtml", title="Exporters", nav="exporters", named=bool(known.exporters),
                    rows=ev.exporter_rows(reply, known, now, sampling))

    def bad_path(e: Exception) -> Response:
        return page("error.xhtml", 400, title="Bad address", nav="exporters", heading="Bad address", message=str(e))

    @app.api_route("/exporters/{address}", methods=GET)
    async def exporter(request: Request):
        now = now_ms()
        try:
            address = ev.exporter_address(request.path_params["address"])
            trange = page_range(request)
        except (ev.PathError, RangeError) as e:
            return bad_path(e)
        base = {"exporter": address}
        q_in = ex.ExploreQuery({"by": "in_if", "metric": "bps", "top": str(EXPORTER_TOP), **base}, base, "in_if", "bps",
                               EXPORTER_TOP, trange)
        q_out = ex.ExploreQuery({**q_in.form, "by": "out_if"}, base, "out_if", "bps", EXPORTER_TOP, trange)
        health = ev.health_rows(await lanes.query(request, "exporters"), now, only=address)
        known = await names(request)
        try:
            r_in, r_out = await explore_replies(request, q_in.store_args(), q_out.store_args())
        except ExploreUnsupported:
            return page("exporter.xhtml", **ev.exporter_context(address, known, health, trange, error=UNSUPPORTED))

        def if_href(key: str) -> Callable[[Mapping], str | None]:
            def href(flt: Mapping) -> str | None:
                return (ex.url(f"/exporters/{address}/if/{int(flt[key])}", trange.query())
                        if flt.get(key) is not None else None)
            return href
        in_view = ex.explore_view(q_in, r_in, known, href_of=if_href("input_if"), with_exporter=False)
        out_view = ex.explore_view(q_out, r_out, known, href_of=if_href("output_if"), with_exporter=False)
        return page("exporter.xhtml", **ev.exporter_context(address, known, health, trange, in_view, out_view,
                                                            await sampling(request, address, trange)))

    @app.api_route("/exporters/{address}/if/{ifindex}", methods=GET)
    async def interface(request: Request):
        try:
            address = ev.exporter_address(request.path_params["address"])
            ifindex = ev.ifindex_of(request.path_params["ifindex"])
            trange = page_range(request)
        except (ev.PathError, RangeError) as e:
            return bad_path(e)
        known = await names(request)
        speed = known.speed_bps(address, ifindex)
        in_flt = {"exporter": address, "input_if": ifindex}
        out_flt = {"exporter": address, "output_if": ifindex}
        q_in = ex.ExploreQuery({"by": "src", "metric": "bps", "top": str(INTERFACE_TOP), **in_flt}, in_flt, "src",
                               "bps", INTERFACE_TOP, trange)
        q_out = ex.ExploreQuery({"by": "dst", "metric": "bps", "top": str(INTERFACE_TOP), **out_flt}, out_flt, "dst",
                                "bps", INTERFACE_TOP, trange)
        links = {"explore_in": ex.url("/explore", q_in.params()), "explore_out": ex.url("/explore", q_out.params())}
        try:
            r_in, r_out = await explore_replies(request, q_in.store_args(), q_out.store_args())
        except ExploreUnsupported:
            return page("interface.xhtml", **ev.interface_context(address, ifindex, known, trange, **links,
                                                                  error=UNSUPPORTED))
        counters = await if_counters(request, address, ifindex, trange)
        speed = speed or int((counters or {}).get("speed_bps") or 0)  # the agent's ifSpeed where names gave none
        return page("interface.xhtml", **ev.interface_context(
            address, ifindex, known, trange, **links, in_view=ex.explore_view(q_in, r_in, known, total_speed_bps=speed),
            out_view=ex.explore_view(q_out, r_out, known, total_speed_bps=speed),
            counters=ev.switch_counters(counters, trange)))

    async def if_counters(request: Request, address: str, ifindex: int, trange: TimeRange) -> Mapping | None:
        """The interface's own sFlow counters (the store's ifcounters op); None from a store without it."""
        args = {"exporter": address, "ifindex": ifindex, "since": trange.since_ms, "until": trange.until_ms}
        try:
            return await lanes.run(request, LIGHT, lambda: store.call(lambda c: c.request("ifcounters", **args),
                                                                      lane=LIGHT))
        except StoreError as e:
            if str(e).startswith("unknown op"):
                return None
            raise
