"""``python -m flowlens_collector --config PATH``: config -> listeners and bus -> loop -> orderly stop
(the shell is flowmodel.lifecycle.service_main, shared by the services)."""
from __future__ import annotations

import gc
import sys

from flowmodel.lifecycle import service_main

from .memory import tune_malloc


def _build(cfg):
    from .service import Collector

    tune_malloc()
    return Collector(cfg)


def _after_start(_collector, _cfg) -> None:
    # Everything allocated so far lives for the whole run: keep it out of the collector's full GC
    # passes so they stay short under load.
    gc.freeze()


def main(argv: list[str] | None = None) -> int:
    return service_main(argv, prog="flowlens-collector", kind="collector", description="FlowLens NetFlow/IPFIX collector",
                        sections=("collector", "enrichment", "bus"), build=_build, after_start=_after_start,
                        cannot_start="cannot bind UDP listeners",
                        ready=lambda c: {"listen": ",".join(lst.address for lst in c.listeners), "source": c.source_id})


if __name__ == "__main__":
    sys.exit(main())
