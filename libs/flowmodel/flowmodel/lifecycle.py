"""How a service's parts start and stop, written once for the four services.

``Components`` starts its parts in the order they were added and stops the started ones in reverse,
once each: a stop after a failed start stops only what did start, and a second stop does nothing.
A part that fails to stop is logged with its traceback and the others still stop (a service that
cannot close a socket must still commit its rows). ``service_main`` is the shell every service's
``__main__`` shares: config -> logging -> inert construction -> start -> ready -> run -> orderly stop,
with the exit codes ``flowlens up`` and the tests rely on (2: bad config, 1: cannot start, 0: stopped).
The model is Akvorado's ``cmd/akvorado/components.go``.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from .logs import fields

log = logging.getLogger(__name__)

EXIT_STOPPED, EXIT_CANNOT_START, EXIT_BAD_CONFIG = 0, 1, 2


class StartError(RuntimeError):
    """A part failed to start; ``part`` names it and the message says why."""

    def __init__(self, part: str, cause: BaseException):
        super().__init__(f"{part}: {cause}")
        self.part = part


@dataclass
class _Part:
    name: str
    start: Callable[[], Any] | None
    stop: Callable[[], Any] | None


@dataclass
class Components:
    """Named parts with a start and a stop (either may be None), started in order, stopped in reverse."""

    owner: str = ""
    _parts: list[_Part] = field(default_factory=list)
    _started: list[_Part] = field(default_factory=list)
    stop_errors: int = 0   # parts whose stop raised (logged)

    def add(self, name: str, start: Callable[[], Any] | None = None, stop: Callable[[], Any] | None = None) -> None:
        if any(p.name == name for p in self._parts):
            raise ValueError(f"{self.owner or 'components'}: a part named {name!r} is already added")
        self._parts.append(_Part(name, start, stop))

    @property
    def started(self) -> list[str]:
        return [p.name for p in self._started]

    def start(self) -> None:
        """Start every part not yet started, in order; on a failure stop what started and raise StartError."""
        for part in self._parts:
            if part in self._started:
                continue
            try:
                if part.start is not None:
                    part.start()
            except Exception as e:
                log.error("part failed to start", extra=fields(owner=self.owner, part=part.name, error=str(e)))
                self.stop()
                raise StartError(part.name, e) from e
            self._started.append(part)

    def stop(self) -> None:
        """Stop the started parts in reverse order, each once; safe to call again."""
        while self._started:
            part = self._started.pop()
            if part.stop is None:
                continue
            try:
                part.stop()
            except Exception:
                self.stop_errors += 1
                log.exception("part failed to stop", extra=fields(owner=self.owner, part=part.name))


class Service(Protocol):
    def start(self) -> Any: ...
    def run(self) -> Any: ...
    def request_stop(self) -> Any: ...
    def stop(self) -> Any: ...


def load_config(prog: str, description: str, argv: list[str] | None):
    """``--config PATH`` (else $FLOWLENS_CONFIG, else the defaults) -> (cfg, None), or (None, exit code)
    after printing the reason on stderr."""
    from .config import ConfigError, config_from_env_or_path

    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", help="YAML config file (default: $FLOWLENS_CONFIG, else built-in defaults)")
    args = parser.parse_args(argv)
    try:
        return config_from_env_or_path(args.config), None
    except ConfigError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return None, EXIT_BAD_CONFIG


def service_main(argv: list[str] | None, *, prog: str, kind: str, description: str, sections: tuple[str, ...],
                 build: Callable[[Any], Service], ready: Callable[[Any], dict] = lambda _s: {},
                 after_start: Callable[[Any, Any], None] | None = None, cannot_start: str = "cannot start",
                 report_config: bool = False) -> int:
    """The shared entry point: ``build(cfg)`` makes the (inert) service; ``after_start(service, cfg)``
    runs once it is started (seeding, memory tuning); ``ready(service)`` gives the ready line's fields;
    ``cannot_start`` begins the stderr line of a failed start (``flowlens up`` shows it);
    ``report_config``: the built service's ``config_report()`` (its keys with the secrets left out) is
    logged as a config line of its own, for services whose sections hold passwords or communities.
    SIGTERM and SIGINT ask the service to stop; its run returns and it stops in order."""
    from .config import ConfigError
    from .logs import log_config, setup_logging
    from .memory import release_startup_memory

    cfg, code = load_config(prog, description, argv)
    if cfg is None:
        return code
    setup_logging(kind, cfg["log.level"], cfg["log.format"])
    svc_log = logging.getLogger(f"flowlens_{kind}")
    log_config(svc_log, cfg, sections)
    service = build(cfg)
    if report_config:
        svc_log.info("config", extra=fields(source=cfg.source, **service.config_report()))
    try:
        service.start()
    except ConfigError as e:  # found at start (a database file the config names): exit 2, the key named
        svc_log.error("bad config", extra=fields(error=str(e)))
        print(f"{prog}: {e}", file=sys.stderr)
        service.stop()
        return EXIT_BAD_CONFIG
    except Exception as e:  # a taken port, an unusable SQLite file: say which and exit 1
        svc_log.error("start failed", extra=fields(error=str(e)))
        print(f"{prog}: {cannot_start}: {e}", file=sys.stderr)
        service.stop()
        return EXIT_CANNOT_START

    def on_signal(signum, _frame):
        svc_log.info("stopping", extra=fields(signal=signal.Signals(signum).name))
        service.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        if after_start is not None:
            after_start(service, cfg)
        release_startup_memory()
        svc_log.info("ready", extra=fields(**ready(service)))
        service.run()
    finally:
        service.stop()
    return EXIT_STOPPED
