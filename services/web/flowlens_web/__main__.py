"""`python -m flowlens_web --config PATH`: serve the web UI with uvicorn until SIGTERM (uvicorn owns the
signals and the loop, so only the config step is flowmodel.lifecycle's)."""
from __future__ import annotations

import logging
import sys

import uvicorn

from flowmodel.config import ConfigError
from flowmodel.lifecycle import EXIT_BAD_CONFIG, load_config
from flowmodel.logs import fields, log_config, setup_logging
from flowmodel.memory import release_startup_memory

from .app import create_app
from .storegate import StoreGate

log = logging.getLogger("flowlens_web")


def split_listen(listen: str) -> tuple[str, int]:
    """'0.0.0.0:8080' -> ('0.0.0.0', 8080); '[::]:8080' -> ('::', 8080)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"key 'web.listen': {listen!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


class Server(uvicorn.Server):
    """uvicorn's server, logging `ready` once the socket is bound and serving."""

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started:
            release_startup_memory()  # after uvicorn loaded its protocol modules and bound
            log.info("ready", extra=fields(listen=f"{self.config.host}:{self.config.port}"))

    def handle_exit(self, sig, frame) -> None:
        # uvicorn re-raises the signal after its graceful shutdown (so the process dies by it);
        # a SIGTERM is our orderly stop, so shut down and exit 0 instead.
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


def main(argv: list[str] | None = None) -> int:
    cfg, code = load_config("flowlens-web", "FlowLens web UI", argv)
    if cfg is None:
        return code
    try:
        host, port = split_listen(cfg["web.listen"])
    except ConfigError as e:
        print(f"flowlens-web: {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    setup_logging("web", cfg["log.level"], cfg["log.format"])
    log_config(log, cfg, ("web", "query"))
    store = StoreGate(cfg["query.endpoint"], cfg["query.timeout"], connections=cfg["web.store_connections"])
    app = create_app(cfg, store)
    server = Server(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                                   lifespan="off", server_header=False, timeout_graceful_shutdown=5))
    try:
        server.run()  # handles SIGTERM/SIGINT: stops accepting, finishes requests, returns
    finally:
        store.close()
        log.info("stopped")
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
