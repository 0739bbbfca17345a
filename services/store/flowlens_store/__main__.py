"""`python -m flowlens_store --config PATH`: config -> logging -> start -> ready -> receive until SIGTERM."""
from __future__ import annotations

import argparse
import logging
import signal
import sys

from flowmodel.config import ConfigError, config_from_env_or_path
from flowmodel.logs import fields, log_config, setup_logging
from flowmodel.memory import fix_mmap_threshold, release_startup_memory

from .service import StoreService

log = logging.getLogger("flowlens_store")
MMAP_THRESHOLD = 1 << 20  # arrays of a MiB and more go back to the kernel when freed (flowmodel.memory)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="flowlens-store", description="FlowLens store: bus forwarder, ring, SQLite, queries")
    ap.add_argument("--config", help="YAML config file (default: $FLOWLENS_CONFIG or built-in defaults)")
    args = ap.parse_args(argv)
    try:
        cfg = config_from_env_or_path(args.config)
    except ConfigError as e:
        print(f"flowlens-store: {e}", file=sys.stderr)
        return 2
    setup_logging("store", cfg["log.level"], cfg["log.format"])
    log_config(log, cfg, ("storage", "bus", "log"))
    fix_mmap_threshold(MMAP_THRESHOLD)
    service = StoreService(cfg)
    try:
        service.start()
    except Exception as e:  # a failed bind or an unusable SQLite file
        log.error("start failed", extra=fields(error=str(e)))
        print(f"flowlens-store: cannot start: {e}", file=sys.stderr)
        service.stop()
        return 1
    signal.signal(signal.SIGTERM, lambda *_: service.request_stop())
    signal.signal(signal.SIGINT, lambda *_: service.request_stop())
    release_startup_memory()
    log.info("ready", extra=fields(xsub=cfg["storage.bus_xsub_bind"], xpub=cfg["storage.bus_xpub_bind"],
                                   query=cfg["storage.query_bind"], subscribe=cfg["bus.subscribe_endpoint"],
                                   sqlite=cfg["storage.sqlite_path"]))
    try:
        service.run()
    finally:
        service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
