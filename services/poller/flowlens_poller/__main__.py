"""`python -m flowlens_poller --config PATH`: config -> logging -> start -> ready -> walk the SNMP
agents until SIGTERM (the shell is flowmodel.lifecycle.service_main, shared by the services)."""
from __future__ import annotations

import sys

from flowmodel.lifecycle import service_main


def _build(cfg):
    import logging

    from flowmodel.logs import fields

    from .service import PollerService

    service = PollerService(cfg)
    # the snmp keys with communities and keys left out (service_main's own config line would show them)
    logging.getLogger("flowlens_poller").info("config", extra=fields(source=cfg.source, **service.config_report()))
    return service


def _ready(service) -> dict:
    cfg = service.cfg
    return {"targets": len(service.targets), "publish": cfg["bus.publish_endpoint"], "events": cfg["bus.events_endpoint"],
            "interval_s": cfg["snmp.interval"]}


def main(argv: list[str] | None = None) -> int:
    return service_main(argv, prog="flowlens-poller", kind="poller",
                        description="FlowLens SNMP poller: interface names and speeds from the exporters' IF-MIB",
                        sections=(), build=_build, ready=_ready, cannot_start="cannot start the poller")


if __name__ == "__main__":
    sys.exit(main())
