"""Entry point: `python -m flowlens_analyzer --config PATH` runs the service;
`python -m flowlens_analyzer analyze --config PATH --since WHEN --until WHEN [--format table|json]`
analyses a stored range and prints the advisories."""
from __future__ import annotations

import argparse
import logging
import sys

from flowmodel.client import StoreClient, StoreError, StoreUnavailable
from flowmodel.config import ConfigError, config_from_env_or_path
from flowmodel.lifecycle import service_main
from flowmodel.logs import fields, setup_logging
from flowmodel.memory import fix_mmap_threshold
from flowmodel.protocol import QueryError, parse_when

log = logging.getLogger("flowlens_analyzer")
# Arrays of a MiB and more (window columns, each run's temporaries) go back to the kernel when freed,
# instead of staying in the malloc arenas once glibc has raised its threshold (flowmodel.memory).
MMAP_THRESHOLD = 1 << 20


class _Runner:
    """The analyzer as flowmodel.lifecycle.service_main runs it: its loop polls a stop flag."""

    def __init__(self, cfg):
        from .service import AnalyzerService

        fix_mmap_threshold(MMAP_THRESHOLD)
        log.info("endpoints", extra=fields(subscribe=cfg["bus.subscribe_endpoint"], publish=cfg["bus.publish_endpoint"],
                                           query=cfg["query.endpoint"]))
        self.service = AnalyzerService(cfg)
        self._stopping = False

    def start(self) -> None:
        self.service.start()

    def request_stop(self) -> None:
        self._stopping = True

    def run(self) -> None:
        self.service.run(lambda: self._stopping)

    def stop(self) -> None:
        self.service.stop()
        log.info("stopped", extra=fields(**{k: v for k, v in self.service.stats().items() if not isinstance(v, dict)}))


def _after_start(runner: _Runner, cfg) -> None:
    _seed(runner.service, cfg)
    _adopt(runner.service, cfg)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["analyze"]:
        return analyze_main(argv[1:])
    return service_main(argv, prog="flowlens-analyzer", kind="analyzer", description="FlowLens analyzer service",
                        sections=("analysis",), build=_Runner, after_start=_after_start,
                        ready=lambda r: {"source": r.service.source})


def _seed(service, cfg) -> None:
    """Seed the anomaly baseline from the store's rollups; the analyzer works without them. A request
    may take the store's read time limit plus the reply's transfer; the whole seeding stops starting
    requests after baseline_seed.SEED_BUDGET_S."""
    timeout_s = max(cfg["query.timeout"], cfg["storage.query_time_limit"] + 5.0)
    client = StoreClient.from_config(cfg, timeout_s=timeout_s, retries=0)
    try:
        report = service.seed_from_store(client)
        log.info("baseline seeded from store rollups", extra=fields(**{k: v for k, v in report.items() if k != "errors"},
                                                                    errors="; ".join(report["errors"]) or None))
    except (StoreError, StoreUnavailable) as e:
        log.warning("no baseline from the store; starting from live data", extra=fields(reason=str(e)))
    finally:
        client.close()


def _adopt(service, cfg) -> None:
    """Take over the advisories an earlier run left open in the store, so they update or resolve."""
    # as long as the seed's reads: a timeout here would leave an earlier run's advisories open for good
    client = StoreClient.from_config(cfg, timeout_s=max(cfg["query.timeout"], cfg["storage.query_time_limit"] + 5.0),
                                     retries=0)
    try:
        n = service.adopt_from_store(client)
        log.info("open advisories taken over from the store", extra=fields(advisories=n))
    except (StoreError, StoreUnavailable) as e:
        log.warning("open advisories not read from the store; advisories an earlier run raised stay open there",
                    extra=fields(reason=str(e)))
    finally:
        client.close()


def analyze_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="flowlens analyze", description="run the analyzers over a stored time range")
    parser.add_argument("--config")
    parser.add_argument("--since", default="1h", help="duration back from now (15m, 24h) or ISO 8601 time")
    parser.add_argument("--until", default="now")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args(argv)
    try:
        cfg = config_from_env_or_path(args.config)
        since, until = parse_when(args.since, name="since"), parse_when(args.until, name="until")
    except (ConfigError, QueryError) as e:
        print(f"flowlens analyze: {e}", file=sys.stderr)
        return 2
    if since >= until:
        print("flowlens analyze: --since must be before --until", file=sys.stderr)
        return 2
    setup_logging("analyzer", "warning", cfg["log.format"])
    from flowmodel.cli import EXIT_UNREACHABLE  # the command line's exit codes (and its imports): here only

    from .offline import analyze_range, format_json, format_table, latest_per_key

    client = StoreClient.from_config(cfg)
    try:
        events = analyze_range(cfg, client, since, until)
    except StoreUnavailable as e:  # as `flowlens query`: 3 = the store did not answer
        print(f"flowlens analyze: {e}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except StoreError as e:
        print(f"flowlens analyze: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()
    found = latest_per_key(events)
    print(format_json(found) if args.format == "json" else format_table(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
