"""`python -m flowlens_notifier --config PATH`: config -> logging -> start -> ready -> notify until
SIGTERM (the shell is flowmodel.lifecycle.service_main, shared by the services)."""
from __future__ import annotations

import sys

from flowmodel.lifecycle import service_main


def _build(cfg):
    from .service import NotifierService  # imported once the config is read: --help and a bad config stay quick

    return NotifierService(cfg)


def _ready(service) -> dict:
    cfg = service.cfg
    return {"targets": ",".join(service.targets), "query": cfg["query.endpoint"], "events": cfg["bus.events_endpoint"],
            "state": cfg["notify.state_path"], "cursor_ms": service.tracker.cursor_ms}


def main(argv: list[str] | None = None) -> int:
    return service_main(argv, prog="flowlens-notifier", kind="notifier",
                        description="FlowLens notifier: advisories to webhooks, email and syslog",
                        sections=(), build=_build, ready=_ready, cannot_start="cannot start the notifier",
                        report_config=True)


if __name__ == "__main__":
    sys.exit(main())
