"""nfdump's side of the history benchmark: nfcapd -y files in NfSen's layout (``nfcapd.YYYYMMDDhhmm``,
one per 5 minutes of *flow* time, UTC) made by the real nfcapd, and the nfdump commands that answer
the benchmark's questions over a window's files (``-R first:last``).

nfcapd names a file by its own wall clock when it rotates, so a file cannot be told to hold 5
minutes of historic flows. ``SliceCollector`` runs one short-lived nfcapd per 5-minute slice of flow
time instead: it starts nfcapd in an empty directory, the caller sends that slice's datagrams, then
``finish`` waits until nfcapd has read everything queued on its socket, stops it with SIGTERM (nfcapd
flushes and closes its file), and renames the one file to the slice's own name (files of a slice
that straddled nfcapd's wall-clock rotation are merged with ``nfdump -w -y``). nfdump then reads
exactly the flows the slice was sent, and its ``-t``-free file selection is the time_end window
FlowLens answers (since <= time_end < until), because the flows were cut into slices by time_end.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import numpy as np

from .harness import udp_queue_bytes

SLICE_MS = 300_000
EMPTY_IPFIX = struct.pack(">HHIII", 10, 16, 0, 0, 0xFFFF)  # a message with no sets: no flows, nothing to log
NFDUMP_ENV = {**os.environ, "TZ": "UTC"}   # nfdump prints and names times in local time


def have_nfcapd() -> bool:
    return shutil.which("nfcapd") is not None and shutil.which("nfdump") is not None


def file_name(slice_start_ms: int) -> str:
    """NfSen's name of the 5-minute file starting at ``slice_start_ms`` (UTC)."""
    return "nfcapd." + time.strftime("%Y%m%d%H%M", time.gmtime(slice_start_ms // 1000))


def wait_drained(port: int, timeout_s: float = 30.0, below: int = 0) -> None:
    """Until the socket on ``port`` holds at most ``below`` queued bytes (a deadline, not a sleep)."""
    deadline = time.monotonic() + timeout_s
    while True:
        q = udp_queue_bytes(port)
        if q is None:
            raise RuntimeError(f"nothing is bound to UDP port {port}")
        if q <= below:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"UDP port {port} still holds {q} bytes after {timeout_s} s")
        time.sleep(0.001)


class SliceCollector:
    """One nfcapd process per 5-minute slice of flow time, its file renamed into ``out_dir``."""

    def __init__(self, out_dir: Path, work_dir: Path, port: int):
        self.out_dir = Path(out_dir)
        self.work_dir = Path(work_dir)
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.slice_ms: int | None = None
        self.files = 0
        self.returncode: int | None = None

    def start(self, slice_start_ms: int) -> None:
        if self.proc is not None:
            raise RuntimeError("the previous slice was not finished")
        shutil.rmtree(self.work_dir, ignore_errors=True)
        self.work_dir.mkdir(parents=True)
        self.slice_ms = slice_start_ms
        self.proc = subprocess.Popen(
            ["nfcapd", "-w", str(self.work_dir), "-t", "300", "-y", "-b", "127.0.0.1", "-p", str(self.port),
             "-B", str(16 << 20)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=NFDUMP_ENV)
        deadline = time.monotonic() + 10
        while udp_queue_bytes(self.port) is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                out = self.stop_process()
                raise RuntimeError(f"nfcapd did not bind 127.0.0.1:{self.port}: {out[-500:]}")
            time.sleep(0.001)

    def stop_process(self) -> str:
        """SIGTERM nfcapd and wait; safe twice. Returns its output."""
        if self.proc is None:
            return ""
        proc, self.proc = self.proc, None
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(0.2)
            except subprocess.TimeoutExpired:
                # nfcapd checks its stop flag before it blocks in recvfrom: a SIGTERM that lands in
                # between leaves it waiting for one more datagram. An empty IPFIX message wakes it.
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.sendto(EMPTY_IPFIX, ("127.0.0.1", self.port))
        if proc.poll() is None:
            proc.kill()
        out, _ = proc.communicate()
        self.returncode = proc.returncode
        return out or ""

    def finish(self) -> Path:
        """nfcapd has read every datagram sent: stop it, move its file to the slice's name."""
        wait_drained(self.port)
        out = self.stop_process()
        made = sorted(p for p in self.work_dir.iterdir() if p.name.startswith("nfcapd.") and
                      not p.name.startswith("nfcapd.current"))
        target = self.out_dir / file_name(self.slice_ms)
        if not made:
            raise RuntimeError(f"nfcapd (exit {self.returncode}) wrote no file for slice {file_name(self.slice_ms)};"
                               f" its directory: {sorted(p.name for p in self.work_dir.iterdir())}; its log: {out[-500:]}")
        if len(made) == 1:
            shutil.move(made[0], target)
        else:   # the slice straddled nfcapd's own 5-minute rotation: one file of both
            subprocess.run(["nfdump", "-R", str(self.work_dir), "-y", "-w", str(target)], check=True,
                           env=NFDUMP_ENV, stdout=subprocess.DEVNULL)
        self.files += 1
        return target


# ---------------------------------------------------------------------------- nfdump questions

def range_arg(files_dir: Path, since_ms: int, until_ms: int) -> str:
    """``-R`` argument naming the files of [since, until) (both multiples of 5 minutes)."""
    first, last = file_name(since_ms), file_name(until_ms - SLICE_MS)
    return f"{files_dir}/{first}:{last}"


def nfdump(args: list[str]) -> str:
    res = subprocess.run(["nfdump", *args], capture_output=True, text=True, env=NFDUMP_ENV)
    if res.returncode != 0:
        raise RuntimeError(f"nfdump {' '.join(args)} failed ({res.returncode}): {res.stderr[-500:]}")
    return res.stdout


def top(files: str, key: str, n: int = 10, order: str = "bytes") -> list[tuple[str, int]]:
    """``-s <key>/<order> -n N``: [(key text, bytes)] first by ``order``."""
    out = nfdump(["-R", files, "-q", "-N", "-o", "csv", "-s", f"{key}/{order}", "-n", str(n)])
    rows = []
    for line in out.splitlines():
        parts = line.split(",")
        if len(parts) < 14 or parts[0] == "ts":
            continue
        rows.append((parts[4], int(parts[9])))
    return rows


def per_file_series(files: str) -> dict[int, tuple[int, int]]:
    """``-g``: every file's flows and bytes, as NfSen draws its graphs: {slice start ms: (flows, bytes)}."""
    out = nfdump(["-R", files, "-g"])
    series = {}
    for line in out.splitlines():
        if not line or line.startswith("#"):
            continue
        when, flows, _packets, nbytes = line.split(",")
        t = int(np.datetime64(when.replace(" ", "T"), "ms").astype(np.int64))
        series[t] = (int(flows), int(nbytes))
    return series


def host_series(files: str, host: str, step_ms: int = SLICE_MS) -> dict[int, tuple[int, int]]:
    """One host's flows and bytes per step, by flow end time: nfdump prints end time and bytes of
    every flow of the host, summed here ({step start ms: (flows, bytes)})."""
    out = nfdump(["-R", files, "-q", "-N", "-o", "fmt:%te,%byt", f"host {host}"])
    lines = [ln for ln in out.splitlines() if "," in ln]
    if not lines:
        return {}
    te_text, byt_text = zip(*(ln.split(",") for ln in lines))
    te = np.array([t.strip().replace(" ", "T") for t in te_text], dtype="datetime64[ms]").astype(np.int64)
    nbytes = np.array(byt_text, dtype=np.int64)
    bucket = te // step_ms * step_ms
    keys, inverse = np.unique(bucket, return_inverse=True)
    flows = np.bincount(inverse)
    sums = np.bincount(inverse, weights=nbytes)   # float64 is exact to 2**53 bytes
    return {int(k): (int(f), int(b)) for k, f, b in zip(keys, flows, sums)}


def host_flows(files: str, host: str, limit: int = 50) -> int:
    """``-c N 'host X'``: the first N flows of the host in the window; returns how many came."""
    out = nfdump(["-R", files, "-q", "-N", "-c", str(limit), "-o", "csv", f"host {host}"])
    return sum(1 for ln in out.splitlines() if ln and ln[0].isdigit())


def total_flows(files_dir: Path) -> tuple[int, int]:
    """Flows and bytes in every file of the directory, from their stat records (``-I``)."""
    out = nfdump(["-R", str(files_dir), "-I"])
    stat = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    return int(stat["Flows"]), int(stat["Bytes"])


def file_flows(path: Path) -> int:
    """Flows in one file, from its stat record."""
    out = nfdump(["-r", str(path), "-I"])
    stat = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    return int(stat["Flows"])


def files_bytes(files_dir: Path) -> int:
    return sum(p.stat().st_size for p in Path(files_dir).iterdir() if p.name.startswith("nfcapd."))
