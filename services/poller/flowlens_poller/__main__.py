"""`python -m flowlens_poller --config PATH`: config -> logging -> start -> ready -> walk the SNMP
agents until SIGTERM (the shell is flowmodel.lifecycle.service_main, shared by the services)."""
from __future__ import annotations

import sys

from flowmodel.lifecycle import service_main


def _build(cfg):
    from .service import PollerService  # imported once the config is read: --help and a bad config stay quick

    return PollerService(cfg)


def _ready(service) -> dict:
    cfg = service.cfg
    return {"targets": len(service.targets), "publish": cfg["bus.publish_endpoint"], "events": cfg["bus.events_endpoint"],
            "interval_s": cfg["snmp.interval"]}


def main(argv: list[str] | None = None) -> int:
    return service_main(argv, prog="flowlens-poller", kind="poller",
                        description="FlowLens SNMP poller: interface names and speeds from the exporters' IF-MIB",
                        sections=(), build=_build, ready=_ready, cannot_start="cannot start the poller",
                        report_config=True)


if __name__ == "__main__":
    sys.exit(main())
