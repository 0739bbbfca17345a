"""`python -m flowlens_store --config PATH`: config -> logging -> start -> ready -> receive until SIGTERM
(the shell is flowmodel.lifecycle.service_main, shared by the services)."""
from __future__ import annotations

import sys

from flowmodel.lifecycle import service_main
from flowmodel.memory import fix_mmap_threshold, limit_arenas

MMAP_THRESHOLD = 1 << 20  # arrays of a MiB and more go back to the kernel when freed (flowmodel.memory)
# two malloc arenas for the store's threads: the history bench's store (3 M flows loaded through the
# collector, sealed) held 137 MB of RSS before its questions with glibc's default (up to 16 on two
# cores), 118 MB with two
MALLOC_ARENAS = 2


def _build(cfg):
    from .service import StoreService

    fix_mmap_threshold(MMAP_THRESHOLD)
    limit_arenas(MALLOC_ARENAS)
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
