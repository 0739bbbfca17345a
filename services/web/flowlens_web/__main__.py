"""`python -m flowlens_web --config PATH`: serve the web UI with uvicorn until SIGTERM (uvicorn owns the
signals and the loop, so only the config step is flowmodel.lifecycle's). Plain HTTP or, with
web.tls_cert and web.tls_key, HTTPS; every connection through the guard (guard.py)."""
from __future__ import annotations

import logging
import ssl
import sys

import uvicorn

from flowmodel.accounts import AccountsError
from flowmodel.config import ConfigError
from flowmodel.curve import client_keys
from flowmodel.lifecycle import EXIT_BAD_CONFIG, load_config
from flowmodel.logs import fields, log_config, setup_logging
from flowmodel.memory import release_startup_memory

from .app import SECRET_KEYS, create_app
from .guard import ConnectionGuard, LogRateLimit, guarded_protocol, raise_open_files
from .storegate import StoreGate

log = logging.getLogger("flowlens_web")

MAX_REQUEST_HEAD_BYTES = 16 * 1024  # h11: a longer request line + headers is refused with 400


def split_listen(listen: str) -> tuple[str, int]:
    """'0.0.0.0:8080' -> ('0.0.0.0', 8080); '[::]:8080' -> ('::', 8080)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"key 'web.listen': {listen!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


def check_tls(cert: str, key: str) -> bool:
    """True when HTTPS is configured and its files load; ConfigError with the reason otherwise."""
    if not cert and not key:
        return False
    if not (cert and key):
        raise ConfigError("web.tls_cert and web.tls_key go together: set both for HTTPS, or neither")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"web.tls_cert {cert} / web.tls_key {key} do not load: {e}") from None
    return True


class Redacted:
    """The config as log_config reads it, with secret values shown as (set)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.source = cfg.source
        self.deprecations = getattr(cfg, "deprecations", ())

    def items(self):
        return [(k, "(set)" if k in SECRET_KEYS and v else v) for k, v in self.cfg.items()]


class Server(uvicorn.Server):
    """uvicorn's server, logging `ready` once the socket is bound and serving."""

    async def startup(self, sockets=None) -> None:
        import asyncio
        asyncio.get_running_loop().set_exception_handler(loop_error)
        await super().startup(sockets)
        if self.started:
            release_startup_memory()  # after uvicorn loaded its protocol modules and bound
            scheme = "https" if self.config.is_ssl else "http"
            log.info("ready", extra=fields(listen=f"{self.config.host}:{self.config.port}", scheme=scheme))

    def handle_exit(self, sig, frame) -> None:
        # uvicorn re-raises the signal after its graceful shutdown (so the process dies by it);
        # a SIGTERM is our orderly stop, so shut down and exit 0 instead.
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


def loop_error(loop, context: dict) -> None:
    """The event loop's errors (accept failures, a transport's trouble) under one message, so the
    log filter bounds them like any other kind."""
    exc = context.get("exception")
    log.error("event loop error", exc_info=exc if isinstance(exc, BaseException) else None,
              extra=fields(detail=str(context.get("message", ""))[:200]))


def main(argv: list[str] | None = None) -> int:
    cfg, code = load_config("flowlens-web", "FlowLens web UI", argv)
    if cfg is None:
        return code
    try:
        host, port = split_listen(cfg["web.listen"])
        tls = check_tls(cfg["web.tls_cert"], cfg["web.tls_key"])
        keys = client_keys(cfg)  # CURVE to the store's query socket when security.* names keys
    except ConfigError as e:
        print(f"flowlens-web: {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    setup_logging("web", cfg["log.level"], cfg["log.format"])
    limit = LogRateLimit(cfg["web.log_lines_per_minute"])
    for handler in logging.getLogger().handlers:
        handler.addFilter(limit)
    log_config(log, Redacted(cfg), ("web", "query"))
    max_connections, nofile = raise_open_files(cfg["web.max_connections"])
    if max_connections < cfg["web.max_connections"]:
        log.warning("fewer connections than web.max_connections: the open-file limit is lower",
                    extra=fields(max_connections=max_connections, open_file_limit=nofile))
    store = StoreGate(cfg["query.endpoint"], cfg["query.timeout"], connections=cfg["web.store_connections"], keys=keys)
    try:
        app = create_app(cfg, store)
    except AccountsError as e:
        store.close()
        print(f"flowlens-web: {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    if app.state.banner:
        log.warning("web listens beyond loopback without accounts: anyone who reaches it sees every page",
                    extra=fields(listen=cfg["web.listen"], fix="set web.users_file (flowlens users add NAME)"))
    guard = ConnectionGuard(max_connections, cfg["web.header_timeout"], cfg["web.body_timeout"])
    app.state.guard = guard
    server = Server(uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, lifespan="off", server_header=False,
        timeout_graceful_shutdown=5, http=guarded_protocol(guard), h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
        timeout_keep_alive=cfg["web.keep_alive_timeout"],
        # connections are bounded by the guard (it makes room first); this bounds requests in progress
        limit_concurrency=max_connections + 1,
        ssl_certfile=cfg["web.tls_cert"] if tls else None, ssl_keyfile=cfg["web.tls_key"] if tls else None))
    try:
        server.run()  # handles SIGTERM/SIGINT: stops accepting, finishes requests, returns
    finally:
        app.state.lanes.close()
        store.close()
        log.info("stopped", extra=fields(**guard.stats(), log_lines_suppressed=limit.suppressed))
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
