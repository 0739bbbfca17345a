"""Run real FlowLens services as processes for integration tests: free ports, a config file in
tmp_path, start with a readiness deadline (a log line with msg=ready), SIGTERM stop, log capture.

    with ServiceStack(tmp_path, ["store", "collector"]) as stack:
        client = stack.client()
        send_udp(stack.netflow_port, payloads)
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int, kind: int = socket.SOCK_STREAM) -> list[int]:
    """``n`` distinct free ports: every socket stays bound until all are, so the kernel cannot hand
    out one port twice (two free_port() calls can return the same port)."""
    socks = [socket.socket(socket.AF_INET, kind) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def stack_config(tmp_path: Path, **sections) -> dict:
    """A config dict on free loopback ports, data under tmp_path; ``sections`` override keys,
    e.g. ``storage={"ring_capacity": 1000}`` (``store=`` means the same)."""
    pub, sub, query, events, web = free_ports(5)
    netflow, ipfix, sflow = free_ports(3, socket.SOCK_DGRAM)
    cfg = {
        "log": {"level": "info"},
        "bus": {"publish_endpoint": f"tcp://127.0.0.1:{pub}", "subscribe_endpoint": f"tcp://127.0.0.1:{sub}",
                "events_endpoint": f"tcp://127.0.0.1:{events}"},
        "query": {"endpoint": f"tcp://127.0.0.1:{query}", "timeout": "5s"},
        "collector": {"bind_address": "127.0.0.1", "netflow_port": netflow, "ipfix_port": ipfix, "sflow_port": sflow,
                      "template_path": str(tmp_path / "templates.json"),
                      "spool_path": str(tmp_path / "spool")},
        "storage": {"sqlite_path": str(tmp_path / "flowlens.db"), "bus_xsub_bind": f"tcp://127.0.0.1:{pub}",
                  "bus_xpub_bind": f"tcp://127.0.0.1:{sub}", "query_bind": f"tcp://127.0.0.1:{query}",
                  "events_bind": f"tcp://127.0.0.1:{events}"},
        "analysis": {},
        "web": {"listen": f"127.0.0.1:{web}"},
    }
    for section, values in sections.items():
        section = "storage" if section == "store" else section  # tests name the service's section store=
        cfg.setdefault(section, {}).update(values)
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


class ServiceProcess:
    """One service as `python -m flowlens_<name> --config PATH`, its stderr collected in lines."""

    def __init__(self, name: str, config_path: Path, env: dict | None = None, args: list[str] | None = None,
                 prefix: list[str] | None = None):
        self.name = name
        self.prefix = prefix or []  # e.g. ["ip", "netns", "exec", NS]: run it inside a network namespace
        self.config_path = config_path
        # the services refuse FLOWLENS_* variables that name no setting, as the benchmarks' FLOWLENS_BENCH_* do
        self.env = {k: v for k, v in {**os.environ, **(env or {})}.items() if not k.startswith("FLOWLENS_BENCH_")}
        self.args = args or []
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    def start(self, timeout_s: float = 20.0) -> "ServiceProcess":
        self.proc = subprocess.Popen(
            [*self.prefix, PYTHON, "-m", f"flowlens_{self.name}", "--config", str(self.config_path), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=self.env, text=True, cwd=REPO)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout_s):
            self.stop()
            raise RuntimeError(f"{self.name} did not log msg=ready within {timeout_s} s; log:\n" + self.log())
        return self

    def _read(self) -> None:
        assert self.proc and self.proc.stderr
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if "msg=ready" in line or '"msg": "ready"' in line:
                self._ready.set()

    def log(self) -> str:
        return "\n".join(self.lines)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM and wait; SIGKILL only if it does not exit in time (then the test should fail)."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        if self._reader:
            self._reader.join(2)
        return rc


class ServiceStack:
    """Several services on one generated config; started in order, stopped in reverse."""

    def __init__(self, tmp_path: Path, services: list[str], **sections):
        self.tmp_path = tmp_path
        self.cfg = stack_config(tmp_path, **sections)
        self.config_path = write_config(tmp_path / "flowlens.yaml", self.cfg)
        self.names = services
        self.procs: dict[str, ServiceProcess] = {}

    @property
    def netflow_port(self) -> int:
        return self.cfg["collector"]["netflow_port"]

    @property
    def ipfix_port(self) -> int:
        return self.cfg["collector"]["ipfix_port"]

    @property
    def sflow_port(self) -> int:
        return self.cfg["collector"]["sflow_port"]

    def client(self):
        from flowmodel.client import StoreClient
        return StoreClient(self.cfg["query"]["endpoint"], timeout_s=5, retries=1)

    def start(self) -> "ServiceStack":
        for name in self.names:
            self.procs[name] = ServiceProcess(name, self.config_path).start()
        return self

    def stop(self) -> dict[str, int | None]:
        return {name: self.procs[name].stop() for name in reversed(list(self.procs))}

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def send_udp(port: int, payloads, host: str = "127.0.0.1", source: tuple[str, int] | None = None,
             pace_every: int = 200) -> int:
    """Send each payload as one datagram; a short pause every ``pace_every`` keeps loopback lossless."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        if source:
            s.bind(source)
        for i, p in enumerate(payloads, 1):
            s.sendto(p, (host, port))
            if pace_every and i % pace_every == 0:
                time.sleep(0.002)
    return len(payloads)


def wait_until(predicate, timeout_s: float = 15.0, interval_s: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value or the deadline passes (then raise)."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s (last value: {last!r})")
