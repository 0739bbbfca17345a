"""Structured, leveled logging: one line per event, key=value (default) or JSON.

    log = logging.getLogger(__name__)
    log.info("listening", extra={"fields": {"port": 2055, "rcvbuf": 8388608}})
"""
from __future__ import annotations

import json
import logging
import sys
import time


def _fmt_value(v) -> str:
    s = str(v)
    if s == "" or any(c in s for c in ' "=\n'):
        return json.dumps(s)
    return s


class KeyValueFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        parts = [f"ts={ts}", f"level={record.levelname.lower()}", f"service={self.service}",
                 f"logger={record.name}", f"msg={_fmt_value(record.getMessage())}"]
        for k, v in (getattr(record, "fields", None) or {}).items():
            parts.append(f"{k}={_fmt_value(v)}")
        if record.exc_info:
            parts.append(f"exc={json.dumps(self.formatException(record.exc_info))}")
        return " ".join(parts)


class JsonFormatter(KeyValueFormatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": record.created, "level": record.levelname.lower(), "service": self.service,
               "logger": record.name, "msg": record.getMessage()}
        out.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(service: str, level: str = "info", fmt: str = "kv") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else KeyValueFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def fields(**kv) -> dict:
    """``log.info("msg", extra=fields(port=2055))``"""
    return {"fields": kv}


class RateLimitedLog:
    """At most one line per key per interval; counts what it suppressed. Keys often carry an
    exporter's address, so at most ``max_keys`` are tracked: quiet ones are forgotten first, and a
    flood of new keys shares one (``OVERFLOW_KEY``) rather than growing the table."""

    OVERFLOW_KEY = "(more keys)"

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0, max_keys: int = 1024):
        self.logger = logger
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, msg: str, **kv) -> None:
        now = time.monotonic()
        if key not in self._last and len(self._last) >= self.max_keys:
            key = self._make_room(now, key)
        if now - self._last.get(key, -1e9) < self.interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            kv["suppressed"] = suppressed
        self.logger.warning(msg, extra=fields(**kv))

    def _make_room(self, now: float, key: str) -> str:
        """Forget keys past their interval with nothing suppressed; if none, ``key`` shares OVERFLOW_KEY."""
        quiet = [k for k, t in self._last.items() if now - t >= self.interval_s and not self._suppressed.get(k)]
        for k in quiet:
            del self._last[k]
        return key if len(self._last) < self.max_keys else self.OVERFLOW_KEY


def log_config(log: logging.Logger, cfg, sections: tuple[str, ...]) -> None:
    """The start-up config line of a service (its sections' keys) and one warning per deprecated name
    the file or environment used, so an old ``store:`` section is seen in every service's log."""
    prefixes = tuple(s + "." for s in sections)
    log.info("config", extra=fields(source=cfg.source, **{k: v for k, v in cfg.items() if k.startswith(prefixes)}))
    for note in getattr(cfg, "deprecations", ()):
        log.warning("deprecated config name", extra=fields(detail=note))
