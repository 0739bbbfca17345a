"""First contact: the configuration file exactly as the FlowLens design document writes it is
accepted by `flowlens config check` and runs a real `flowlens up` that serves pages; the old
``store:`` section still runs, with a deprecation line; the seed's buffer_size: 65535 is the
largest datagram read and never shrinks the kernel receive buffer."""
from __future__ import annotations

import errno
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from flowmodel.client import StoreClient
from flowmodel.pcap import read_datagrams
from support.services import REPO, ServiceProcess, send_udp, stack_config, wait_until, write_config

DATA = Path(__file__).resolve().parents[1] / "data"

# Verbatim from the design document (issue 11): comments, quoting and the ":8080" listen form included.
SEED_CONFIG = """\
collector:
  netflow_port: 2055          # UDP port for NetFlow v5/v9
  ipfix_port: 4739            # UDP port for IPFIX
  buffer_size: 65535          # UDP read buffer size in bytes

storage:
  ring_buffer_duration: 10m   # how long to keep flows in memory
  sqlite_path: "./flowlens.db"
  sqlite_retention: 72h       # auto-prune flows older than this
  prune_interval: 15m         # how often to run TTL cleanup

analysis:
  interval: 60s               # how often to run analyzers
  top_talkers_count: 10       # number of top talkers to track
  anomaly_baseline_window: 7d # baseline period for anomaly detection
  scan_threshold: 500         # unique ports in 60s = scan

web:
  listen: ":8080"             # HTTP listen address
  page_size: 50               # rows per page in flow explorer
"""

# The ports the seed file and the defaults it leaves alone use: the store's query, bus and events ports and
# the seed's own UDP and HTTP ports.
SEED_TCP_PORTS = (5555, 5559, 5560, 5561, 8080)
SEED_UDP_PORTS = (2055, 4739, 6343)


def cli(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flowmodel.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def port_taken(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError as e:
            return e.errno == errno.EADDRINUSE
    return False


def granted_for(request: int) -> int:
    """What this kernel grants a UDP socket that asks for ``request`` bytes the way the collector asks."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), request)
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, request)
        return s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def test_seed_file_passes_config_check_with_its_meaning(tmp_path):
    path = tmp_path / "flowlens.yaml"
    path.write_text(SEED_CONFIG)
    proc = cli("config", "check", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "deprecated" not in proc.stderr
    shown = proc.stdout
    assert re.search(r"(?m)^storage:\n(  .*\n)*  sqlite_path: \./flowlens\.db$", shown), shown
    assert re.search(r"(?m)^  buffer_size: 65535$", shown)  # the largest datagram read
    assert re.search(r"(?m)^  socket_buffer: 8388608$", shown)  # the kernel buffer keeps its own default
    assert re.search(r"(?m)^  prune_interval: 900\.0$", shown)
    assert re.search(r"(?m)^  scan_threshold: 500$", shown)
    assert re.search(r"(?m)^  sqlite_retention: 259200\.0$", shown)
    assert re.search(r"(?m)^  listen: '?:8080'?$", shown)


def test_store_section_is_an_alias_with_a_deprecation_line(tmp_path):
    cfg = stack_config(tmp_path)
    cfg["store"] = cfg.pop("storage")
    path = write_config(tmp_path / "old.yaml", cfg)
    proc = cli("config", "check", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "section 'store' is deprecated, rename it to 'storage'" in proc.stderr
    assert f"sqlite_path: {cfg['store']['sqlite_path']}" in proc.stdout
    store = ServiceProcess("store", path).start()
    try:
        with StoreClient(cfg["query"]["endpoint"], timeout_s=5, retries=1) as client:
            assert client.status()["sqlite"]["path"] == cfg["store"]["sqlite_path"]
    finally:
        assert store.stop() == 0, store.log()
    assert re.search(r"level=warning .*msg=\"?deprecated config name.*section 'store' is deprecated", store.log()), \
        store.log()

    both = dict(cfg, storage={"ring_capacity": 1000})
    proc = cli("config", "check", str(write_config(tmp_path / "both.yaml", both)), cwd=tmp_path)
    assert proc.returncode == 2
    assert "'storage' and 'store' are both given" in proc.stderr


def test_wrong_section_name_gets_did_you_mean(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("analyzer:\n  scan_threshold: 50\n")
    proc = cli("config", "check", str(path), cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown section 'analyzer'; did you mean 'analysis'?" in proc.stderr


def test_seed_file_runs_flowlens_up_and_serves_pages(tmp_path):
    taken = [p for p in SEED_TCP_PORTS if port_taken(p, socket.SOCK_STREAM)]
    taken += [p for p in SEED_UDP_PORTS if port_taken(p, socket.SOCK_DGRAM)]
    if taken:
        pytest.skip(f"the seed file names fixed ports and another program on this machine holds {taken}")
    path = tmp_path / "flowlens.yaml"
    path.write_text(SEED_CONFIG)
    lines: list[str] = []
    up = subprocess.Popen([sys.executable, "-m", "flowmodel.cli", "up", "--config", str(path), "--stop-timeout", "20"],
                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={"PYTHONPATH": str(REPO / "tests"), "PATH": "/usr/bin:/bin"})

    import threading
    reader = threading.Thread(target=lambda: [lines.append(line.rstrip("\n")) for line in up.stdout], daemon=True)
    reader.start()

    def ready(name):
        return any(re.match(rf"^{name}\s* \| .*msg=ready", line) for line in list(lines))

    try:
        wait_until(lambda: all(ready(n) for n in ("store", "collector", "analyzer", "web")), timeout_s=60,
                   interval_s=0.1)
        payloads = [d.payload for d in read_datagrams(str(DATA / "softflowd_v5_dns.pcap"))]
        send_udp(2055, payloads, source=("127.0.0.2", 0))
        with StoreClient("tcp://127.0.0.1:5555", timeout_s=5, retries=1) as client:
            wait_until(lambda: client.status()["flows_committed"] >= 409, timeout_s=30, interval_s=0.2)
            status = client.status()
        for page in ("/", "/flows", "/flows?since=0", "/advisories", "/about", "/metrics", "/healthz"):
            with urllib.request.urlopen(f"http://127.0.0.1:8080{page}", timeout=10) as r:
                assert r.status == 200, page
                body = r.read().decode()
            if page == "/about":
                assert "./flowlens.db" in body
    finally:
        up.terminate()
        rc = up.wait(60)
        reader.join(5)
    log = "\n".join(lines)
    assert rc == 0, log
    # the seed's ./flowlens.db is where it says: next to the file's working directory
    assert (tmp_path / "flowlens.db").exists()
    assert status["sqlite"]["path"] == "./flowlens.db"
    # buffer_size 65535 is the read size; the kernel buffer is asked for with socket_buffer's 8 MiB
    granted = [int(m.group(1)) for m in (re.search(r"msg=listening .*rcvbuf_granted=(\d+)", line) for line in lines) if m]
    assert len(granted) == 3, log  # NetFlow, IPFIX and sFlow ports
    assert granted == [granted_for(8 << 20)] * 3
    assert min(granted) > 2 * 65535  # not the seed's 64 KiB
