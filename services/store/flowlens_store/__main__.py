"""`python -m flowlens_store --config PATH`: config -> logging -> start -> ready -> receive until SIGTERM
(the shell is flowmodel.lifecycle.service_main, shared by the services)."""
from __future__ import annotations

import sys

from flowmodel.lifecycle import service_main
from flowmodel.memory import fix_mmap_threshold

MMAP_THRESHOLD = 1 << 20  # arrays of a MiB and more go back to the kernel when freed (flowmodel.memory)


def _build(cfg):
    from .service import StoreService

    fix_mmap_threshold(MMAP_THRESHOLD)
    return StoreService(cfg)


def _ready(service) -> dict:
    cfg = service.cfg
    return {"xsub": cfg["storage.bus_xsub_bind"], "xpub": cfg["storage.bus_xpub_bind"], "query": cfg["storage.query_bind"],
            "events": cfg["storage.events_bind"], "sqlite": cfg["storage.sqlite_path"],
            "curve": bool(service.gate and service.gate.enabled)}


def main(argv: list[str] | None = None) -> int:
    return service_main(argv, prog="flowlens-store", kind="store",
                        description="FlowLens store: bus forwarder, ring, SQLite, queries",
                        sections=("storage", "bus", "log"), build=_build, ready=_ready)


if __name__ == "__main__":
    sys.exit(main())
