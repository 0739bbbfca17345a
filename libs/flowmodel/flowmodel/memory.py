"""Give start-up memory back: each service calls ``release_startup_memory`` once, after it started and
before it logs ``ready``.

Imports and start-up (config parsing, compiled regular expressions, the first sockets) leave garbage
and freed malloc chunks behind. A full collection frees the garbage; glibc's ``malloc_trim(0)`` then
returns the free pages of every malloc arena to the kernel, which otherwise keeps them in the
process's RSS for the whole run. Elsewhere than glibc (musl, macOS) the trim is skipped.
"""
from __future__ import annotations

import ctypes
import gc
import logging

from .logs import fields

log = logging.getLogger(__name__)


def release_startup_memory() -> bool:
    """gc.collect(), then malloc_trim(0) where glibc has it; True when the trim ran."""
    collected = gc.collect()
    trim = malloc_trim()
    if trim is None:
        log.debug("no malloc_trim", extra=fields(collected=collected))
        return False
    trim(0)
    log.debug("start-up memory released", extra=fields(collected=collected))
    return True


M_MMAP_THRESHOLD = -3  # glibc malloc.h


def fix_mmap_threshold(size: int) -> bool:
    """Allocations of ``size`` bytes or more get their own mmap, returned to the kernel when freed.

    glibc raises its mmap threshold each time such a block is freed (up to 32 MiB), after which
    numpy's block-sized temporaries (columns of 32,768 flows, decoded rollups) come from the arenas,
    where fragmentation keeps them in RSS: in the store, 10 M flows loaded and sealed left 387 MiB of
    RSS with 121 MiB live; with the threshold fixed at 128 KiB, 274 MiB. Setting it explicitly turns
    the adjustment off. glibc only; False elsewhere."""
    return mallopt(M_MMAP_THRESHOLD, int(size))


M_ARENA_MAX = -8  # glibc malloc.h


def limit_arenas(count: int) -> bool:
    """At most ``count`` malloc arenas for the whole process (MALLOC_ARENA_MAX), set before threads start.

    glibc gives a thread that meets a locked arena one of its own, up to 8 per core, and each arena
    keeps the chunks freed in it for its own reuse: a burst on one thread (the store's receive
    thread cutting batches, its writer building blobs and rollups) stays in RSS beside the others'
    burst. glibc only; False elsewhere."""
    return mallopt(M_ARENA_MAX, int(count))


def mallopt(param: int, value: int) -> bool:
    """glibc's mallopt(param, value); False where there is none (another libc) or it refuses."""
    try:
        fn = ctypes.CDLL(None).mallopt  # the process's own symbols: libc without a library search
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_int]
    fn.restype = ctypes.c_int
    return bool(fn(param, value))


def malloc_trim():
    """glibc's malloc_trim(pad) as a callable, or None elsewhere (musl, macOS)."""
    try:
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn
