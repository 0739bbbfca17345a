"""``python -m flowlens_collector --config PATH``: config -> listeners and bus -> loop -> orderly stop."""
from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys

from flowmodel.config import ConfigError, config_from_env_or_path
from flowmodel.logs import fields, log_config, setup_logging
from flowmodel.memory import release_startup_memory

from .memory import tune_malloc
from .service import Collector

log = logging.getLogger("flowlens_collector")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowlens-collector", description="FlowLens NetFlow/IPFIX collector")
    parser.add_argument("--config", help="YAML config file (default: $FLOWLENS_CONFIG, else built-in defaults)")
    args = parser.parse_args(argv)
    try:
        cfg = config_from_env_or_path(args.config)
    except ConfigError as e:
        print(f"flowlens-collector: {e}", file=sys.stderr)
        return 2
    setup_logging("collector", cfg["log.level"], cfg["log.format"])
    log_config(log, cfg, ("collector", "bus"))
    tune_malloc()
    collector = Collector(cfg)
    try:
        collector.start()
    except OSError as e:
        log.error("cannot start", extra=fields(error=str(e)))
        collector.stop()
        print(f"flowlens-collector: cannot bind UDP listeners: {e}", file=sys.stderr)
        return 1

    def on_signal(signum, _frame):
        log.info("stopping", extra=fields(signal=signal.Signals(signum).name))
        collector.request_stop()

    release_startup_memory()
    # Everything allocated so far lives for the whole run: keep it out of the collector's full GC
    # passes so they stay short under load.
    gc.freeze()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("ready", extra=fields(listen=",".join(lst.address for lst in collector.listeners), source=collector.source_id))
    try:
        collector.run()
    finally:
        collector.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
