"""Keep large buffers in the malloc heap instead of fresh mmaps.

Every published batch allocates and frees a few buffers of hundreds of kB (column bytes, the
msgpack body). Above glibc's mmap threshold each of those is a new mmap, page-faulted and zeroed
by the kernel, then unmapped: measured on the ingest benchmark, that doubled the collector's system
CPU time and cost a third of its lossless rate. Raising the mmap and trim thresholds lets freed
buffers be reused; the heap keeps at most TRIM_THRESHOLD of free memory before giving it back.
"""
from __future__ import annotations

import logging
import sys

from flowmodel.logs import fields
from flowmodel.memory import mallopt

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1   # glibc malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 16 << 20
TRIM_THRESHOLD = 32 << 20


def tune_malloc() -> bool:
    """glibc only; a no-op (False) elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    log.debug("malloc thresholds", extra=fields(mmap_threshold=MMAP_THRESHOLD, trim_threshold=TRIM_THRESHOLD, ok=ok))
    return ok
