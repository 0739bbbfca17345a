"""The web application: routes (asgi.App, Starlette) that query the store through a StoreGate and render XHTML.

``create_app(cfg, store)`` is inert until served; every page reads the store per request (no
cache), so what the page shows is what the store holds now. While the store is known to be down
the pages answer 503 at once (the gate remembers it); /healthz and /metrics run on threads and a
socket of their own, so they answer within a second or two whatever the pages are doing. The pages
reach the store through StoreLanes (lanes.py): the dashboard never queues behind history reads, a
client past its share of history queries gets 429, and a browser that goes away ends its wait.
With ``web.users_file`` set, every page but /healthz and /login needs a session (auth.py).
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Callable

import anyio
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from flowmodel.client import StoreError, StoreUnavailable
from flowmodel.config import SETTINGS, Config
from flowmodel.events import SEVERITIES, process_stats, service_config

from . import __version__
from .asgi import App
from . import formatters as fmt
from . import advisory_metrics, auth, flowroutes, metrics, notepages, timing, views
from .explorepages import ROUTES as EXPLORE_ROUTES, add_explore_routes
from .lanes import ClientGone, StoreLanes, TooBusy
from .loginpages import add_login_routes
from .reportpages import add_report_routes
from .render import XHTML, Renderer
from .storefeatures import StoreFeatures
from .storegate import LIGHT, StoreBusy, StoreGate
from .timerange import RangeError, TimeRange

log = logging.getLogger(__name__)

ROUTES = ("/", "/flows", "/advisories", "/about", "/metrics", "/healthz", "/login", "/logout", "/advisories/ack",
          "/silences", "/silences/remove", *flowroutes.ROUTES, *EXPLORE_ROUTES, "/report")
access_log = logging.getLogger("flowlens_web.access")
SECRET_KEYS = frozenset({"web.metrics_token"})  # shown as (set) on About and in the log, never as a value
ADVISORY_STATES = ("active", "raised", "updated", "resolved", "all")
ADVISORY_PAGE_LIMIT = 1000
ADVISORY_INFO_MAX = 200  # flowlens_advisory_info series on /metrics at most (the rest counted)
GET = ["GET", "HEAD"]


class TimingMiddleware:
    """Pure ASGI middleware: observes each HTTP request's latency into the histogram, and turns an
    unexpected exception into the 500 page here (logged once; Starlette's outer error middleware
    would log it a second time through the server)."""

    def __init__(self, app, histogram: metrics.LatencyHistogram, error_page: Callable[[], Response],
                 access: bool = False):
        self.app = app
        self.histogram = histogram
        self.error_page = error_page
        self.access = access  # one line per request (the web's log filter bounds lines per minute)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = {"code": 500, "started": False}
        record = timing.RequestTimings()
        timing.current.set(record)  # this request's task only: each ASGI call runs in its own context

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
                message = {**message, "headers": [*message.get("headers", ()),
                                                  (b"server-timing", record.header(time.perf_counter() - t0))]}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            log.error("page failed", exc_info=exc, extra={"fields": {"path": scope.get("path", "")}})
            if status["started"]:
                raise
            status["code"] = 500
            await self.error_page()(scope, receive, send)
        finally:
            path = scope.get("path", "")
            route = path if path in ROUTES else ("/static" if path.startswith("/static/") else "other")
            elapsed = time.perf_counter() - t0
            self.histogram.observe(route, status["code"], elapsed)
            if self.access:
                client = scope.get("client") or ("-", 0)
                access_log.info("request", extra={"fields": {
                    "method": scope.get("method"), "path": path[:200], "status": status["code"],
                    "ms": round(elapsed * 1000, 1), "client": client[0]}})


def xhtml(body: str, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=XHTML, headers={"Cache-Control": "no-store"})


def create_app(cfg: Config, store: StoreGate, clock: Callable[[], float] = time.time) -> App:
    renderer = Renderer()
    histogram = metrics.LatencyHistogram()
    started_ms = int(clock() * 1000)
    # /healthz and /metrics get threads of their own: pages waiting on the store never delay them
    quick_threads = anyio.CapacityLimiter(4)
    lanes = StoreLanes(store, cfg["web.heavy_queries_per_client"], retry_after_s=max(1, round(store.timeout_s)))
    features = StoreFeatures()  # the store's names and what it can do, kept a minute for every page
    users = auth.AccountsFile(cfg["web.users_file"]) if cfg["web.users_file"] else None
    sessions = auth.Sessions.from_config(cfg["web.session_secret_file"], cfg["web.session_lifetime"])
    limiter = auth.LoginLimiter(cfg["web.login_max_failures"])
    listen_host = cfg["web.listen"].rpartition(":")[0].strip("[]") or "0.0.0.0"
    banner = None if users is not None or auth.is_loopback(listen_host) else (
        f"this web listens on {cfg['web.listen']}, beyond this machine, and anyone who reaches it sees every "
        "page. Set web.users_file (flowlens users add NAME) to require a sign-in, or listen on 127.0.0.1 "
        "behind a reverse proxy.")

    app = App()
    app.mount("/static", StaticFiles(directory=str(Path(__file__).with_name("static"))), name="static")

    def now_ms() -> int:
        return int(clock() * 1000)

    def page(name: str, status: int = 200, **ctx) -> Response:
        ctx.setdefault("refresh", 0)
        ctx.setdefault("version", __version__)
        ctx.setdefault("account", auth.current.get())
        ctx.setdefault("banner", banner)
        return xhtml(renderer.page(name, **ctx), status)

    def error_page(status: int, heading: str, message: str, nav: str = "") -> Response:
        return page("error.xhtml", status, title=heading, nav=nav, heading=heading, message=message)

    def server_error() -> Response:
        return error_page(500, "Something went wrong", "The page could not be built; the web service's log "
                          "has the details. Reloading may help if the store was busy.")

    @app.exception_handler(StoreUnavailable)
    async def store_unavailable(request: Request, exc: StoreUnavailable):
        if isinstance(exc, StoreBusy):
            resp = error_page(503, "The store is busy",
                              f"FlowLens is waiting on its store for other pages: {exc}. Try again in a moment.")
        else:
            # the gate logs the moment the store stops answering; one line per page would flood the log
            resp = error_page(503, "The store is not answering",
                              f"FlowLens could not get an answer from its store: {exc}. "
                              "The pages will work again as soon as the store is back; check that the store "
                              "service is running (flowlens up starts it) and that query.endpoint points at it.")
        resp.headers["Retry-After"] = str(max(1, round(store.recheck_s)))
        return resp

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError):
        return error_page(502, "The store refused the request", f"The store answered: {exc}")

    @app.exception_handler(TooBusy)
    async def too_busy(request: Request, exc: TooBusy):
        resp = error_page(429, "Too many history queries at once",
                          f"{exc}. This page will work once one of them has finished; try again in a moment.")
        resp.headers["Retry-After"] = str(exc.retry_after_s)
        return resp

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, exc: ClientGone):
        return Response(status_code=499)  # nobody reads it: counted under code 499 on /metrics

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            return error_page(404, "Page not found", f"There is no page at {request.url.path}. "
                              "The pages are the dashboard, flows, advisories and about.")
        return error_page(exc.status_code, "Request not served", str(exc.detail))

    @app.api_route("/advisories", methods=GET)
    async def advisories(request: Request):
        params = request.query_params
        now = now_ms()
        severity = (params.get("severity") or "").strip().upper()
        state = (params.get("state") or "active").strip().lower()
        include_resolved = params.get("resolved") in ("1", "on", "yes", "true") or state in ("resolved", "all")
        form = {"severity": severity, "state": state, "resolved": include_resolved}
        # a time range only when the URL names one: by default every advisory the state selects
        ranged = any(params.get(k) for k in ("range", "from", "to"))
        try:
            tr = TimeRange.from_query(params, now, default="24h")
        except RangeError as e:
            return error_page(400, "Bad time range", f"{e}.", nav="advisories")
        bar = tr.bar("/advisories", keep={"severity": severity, "state": state if state != "active" else "",
                                          "resolved": "1" if include_resolved else ""})
        if not ranged:
            bar = {**bar, "label": "any time", "presets": [{**p, "here": False} for p in bar["presets"]]}
        ctx = {"title": "Advisories", "nav": "advisories", "severities": SEVERITIES, "states": ADVISORY_STATES,
               "form": form, "rows": [], "error": None, "shown": None, "range_bar": bar,
               "range_query": tr.query() if ranged else {}}
        if severity and severity not in SEVERITIES:
            return page("advisories.xhtml", 400, **{**ctx, "error": f"severity {severity!r} is not one of {', '.join(SEVERITIES)}"})
        if state not in ADVISORY_STATES:
            return page("advisories.xhtml", 400, **{**ctx, "error": f"state {state!r} is not one of {', '.join(ADVISORY_STATES)}"})
        args = {"include_resolved": include_resolved, "limit": ADVISORY_PAGE_LIMIT}
        if ranged:  # advisories that were open at some time in the range
            args.update(since=tr.since_ms, until=tr.until_ms)
        if severity:
            args["severity"] = severity
        if state in ("raised", "updated", "resolved"):
            args["state"] = state
        reply = await lanes.query(request, "advisories", **args)
        items = list(reply.get("advisories") or [])
        if state == "active" and not include_resolved:
            items = [a for a in items if a.get("state") != "resolved"]
        shown = views.shown_of(len(items), reply.get("total"), ADVISORY_PAGE_LIMIT)
        try:  # acknowledgements and silences (notepages.py); a store without the op shows none
            notes = await lanes.query(request, "notes")
        except StoreError:
            notes = []
        acks = {n["id"]: n for n in notes if n.get("kind") == "ack"}
        return page("advisories.xhtml", **{**ctx, "rows": views.advisory_rows(items, now, acks), "shown": shown,
                                           "silences": views.silence_rows([n for n in notes if n.get("kind") == "silence"], now),
                                           "may_operate": notepages.may_operate(users, listen_host)})

    @app.api_route("/about", methods=GET)
    async def about(request: Request):
        now = now_ms()
        # the last 5 minutes come from the ring: the light lane
        status, series = await lanes.run(request, LIGHT, lambda: (
            store.status(), store.series(step=60, since=now - 5 * 60_000, until=now, lane=LIGHT)))
        procs = [views.process_row(name, p, now) for name, p in views.service_processes(status)]
        procs.append(views.process_row(f"web@{os.getpid()}", process_stats(started_ms), now))
        pts = series.get("points") or []
        flows_5m = sum(int(p[3]) for p in pts if len(p) > 3)
        return page("about.xhtml", title="About", nav="about", processes=procs,
                    config_groups=config_groups(cfg, status, f"web@{os.getpid()}"),
                    store_status=views.scalar_items(status),
                    flow_rate=fmt.human_rate(flows_5m / 300, "flows/s"), flow_rate_exact=f"{flows_5m} flows in 5 min",
                    web_uptime=fmt.human_duration((now - started_ms) / 1000),
                    store_version=str(status.get("version", "-")), web_version=__version__,
                    store_uptime=store_uptime(status, now), store_endpoint=store.endpoint)

    def metrics_text() -> str:
        try:
            exporters = store.exporters(quick=True)
            status = store.status(quick=True)
        except (StoreUnavailable, StoreError):
            exporters = status = None
        try:  # open advisories for Alertmanager (advisory_metrics.py)
            advisories = store.call(lambda c: c.advisories(limit=ADVISORY_PAGE_LIMIT), quick=True) if status else None
        except (StoreUnavailable, StoreError):
            advisories = None
        return metrics.render(histogram, exporters, status, cfg["web.metrics_max_exporters"], web_counters()) + \
            "".join(line + "\n" for line in advisory_metrics.lines(advisories, exporters, ADVISORY_INFO_MAX))

    def web_counters() -> dict:
        guard = getattr(app.state, "guard", None)  # set by __main__ when served by uvicorn
        counts = guard.stats() if guard is not None else {}
        out = {
            "flowlens_web_login_failures_total": ("counter", "sign-ins refused for a wrong name or password", limiter.failed),
            "flowlens_web_login_limited_total": ("counter", "sign-ins refused with 429: the address failed web.login_max_failures times in 5 min", limiter.refused),
            "flowlens_web_history_refused_total": ("counter", "history queries refused with 429: the client had web.heavy_queries_per_client running or waiting", lanes.refused),
            "flowlens_web_waits_cancelled_total": ("counter", "page waits on the store ended because the browser went away", lanes.cancelled),
            "flowlens_web_history_shed_total": ("counter", "history queries refused with 429: the turns ahead of them would take longer than query.timeout", lanes.shed),
        }
        for key, kind, help_ in (("open", "gauge", "HTTP connections open"),
                                 ("header_timeouts", "counter", "connections closed without a whole request head within web.header_timeout"),
                                 ("body_timeouts", "counter", "connections closed without the request body within web.body_timeout"),
                                 ("evicted", "counter", "connections waiting for a request closed to make room past web.max_connections"),
                                 ("refused", "counter", "connections refused with 503 past web.max_connections (every other one was being answered)")):
            if key in counts:
                name = "flowlens_web_connections_open" if key == "open" else f"flowlens_web_connections_{key}_total"
                out[name] = (kind, help_, counts[key])
        return out

    @app.api_route("/metrics", methods=GET)
    async def prometheus():
        text = await anyio.to_thread.run_sync(metrics_text, limiter=quick_threads)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    def health() -> tuple[bool, str]:
        try:
            return store.ping(quick=True), "store answers"
        except (StoreUnavailable, StoreError) as e:
            return False, str(e)

    @app.api_route("/healthz", methods=GET)
    async def healthz():
        ok, reason = await anyio.to_thread.run_sync(health, limiter=quick_threads)
        body = json.dumps({"ok": ok, "store": store.endpoint, "detail": reason})
        return Response(body, status_code=200 if ok else 503, media_type="application/json")

    add_login_routes(app, page, users, sessions, limiter)
    notepages.add_note_routes(app, cfg, users, listen_host, lanes, error_page, now_ms)
    flowroutes.add_flow_routes(app, cfg, store, lanes, page, error_page, now_ms, features)
    add_explore_routes(app, lanes, page, now_ms, features)
    add_report_routes(app, cfg, lanes, page, now_ms)
    app.add_middleware(auth.AuthMiddleware, users=users, sessions=sessions, metrics_token=cfg["web.metrics_token"])
    app.add_middleware(TimingMiddleware, histogram=histogram, error_page=server_error, access=cfg["web.access_log"])
    app.state.histogram = histogram
    app.state.lanes = lanes
    app.state.logins = limiter
    app.state.banner = banner
    return app


def store_uptime(status: dict, now_ms: int) -> str:
    for k in ("uptime_s", "uptime"):
        v = status.get(k)
        if isinstance(v, (int, float)):
            return fmt.human_duration(v)
    v = status.get("started_at")
    if isinstance(v, (int, float)):
        return fmt.human_duration((now_ms - v) / 1000)
    return "-"


CONFIG_GROUPS = (
    ("Listening", lambda k: k in ("collector.bind_address", "collector.netflow_port", "collector.ipfix_port",
                                  "collector.sflow_port",
                                  "collector.buffer_size", "collector.socket_buffer", "web.listen", "query.endpoint", "bus.publish_endpoint",
                                  "bus.subscribe_endpoint", "storage.query_bind", "storage.bus_xsub_bind", "storage.bus_xpub_bind")),
    ("Retention", lambda k: k.startswith("storage.") and any(w in k for w in ("retention", "ring", "prune", "partition", "sqlite_path"))),
    ("Thresholds", lambda k: k.startswith("analysis.")),
    ("Web", lambda k: k.startswith("web.")),
)


def config_groups(cfg: Config, status: dict | None = None, web_source: str = "web") -> list[dict]:
    """The configuration each key really runs with: the value the service that uses it reported (its
    health event or the store's status; under compose each container has its own overrides), else
    the web's own file, said so. A key two running instances disagree on shows both."""
    reported: dict[str, dict[str, object]] = {}
    services = (status or {}).get("services") if isinstance(status, dict) else None
    for svc in services if isinstance(services, list) else []:
        conf = svc.get("config") if isinstance(svc, dict) else None
        if isinstance(conf, dict):
            for key, value in conf.items():
                reported.setdefault(str(key), {})[str(svc.get("source") or svc.get("service") or "?")] = value
    for key, value in service_config(cfg, "web").items():
        reported.setdefault(key, {})[web_source] = value
    groups = []
    for name, pick in CONFIG_GROUPS:
        rows = []
        for key in SETTINGS:
            if not pick(key):
                continue
            by_source = {src: v for src, v in reported.get(key, {}).items() if not key.startswith("log.")}
            if not by_source:
                rows.append({"key": key, "value": config_value(key, cfg[key]), "doc": SETTINGS[key].doc,
                             "source": "the web's config (no running service reported it)"})
                continue
            values: dict[str, list[str]] = {}
            for src, v in sorted(by_source.items()):
                values.setdefault(config_value(key, v), []).append(src)
            rows.append({"key": key, "value": " | ".join(values), "doc": SETTINGS[key].doc,
                         "source": " | ".join(", ".join(srcs) for srcs in values.values())})
        groups.append({"name": name, "rows": rows})
    return groups


def config_value(key: str, value) -> str:
    setting = SETTINGS[key]
    if key in SECRET_KEYS:
        return "(set)" if value else "(empty)"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if getattr(setting.parse, "__name__", "") in ("_duration", "_pos_duration", "parse_duration"):
        return fmt.human_duration(value)
    if getattr(setting.parse, "__name__", "") == "parse_size":
        return fmt.human_bytes(value)
    return str(value)
