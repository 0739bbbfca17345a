"""flowmodel.memory's malloc settings, seen in a fresh process's own malloc statistics (glibc)."""
from __future__ import annotations

import ctypes.util
import platform
import subprocess
import sys

import pytest

CHILD = """
import ctypes, sys, threading
from flowmodel.memory import limit_arenas
assert limit_arenas(int(sys.argv[1]))
def churn():
    for _ in range(2000):  # threads contending for malloc: glibc gives them arenas of their own
        bufs = [bytearray(4096) for _ in range(20)]
        del bufs
threads = [threading.Thread(target=churn) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL(None).malloc_stats()  # one "Arena N:" block per arena, on stderr
"""


@pytest.mark.skipif(platform.system() != "Linux" or not ctypes.util.find_library("c") or
                    platform.libc_ver()[0] != "glibc", reason="malloc arenas are glibc's")
def test_limit_arenas_caps_the_arenas_threads_get():
    run = subprocess.run([sys.executable, "-c", CHILD, "1"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    arenas = [line for line in run.stderr.splitlines() if line.startswith("Arena ")]
    assert len(arenas) == 1, run.stderr  # without the limit this churn makes 3 on two cores
