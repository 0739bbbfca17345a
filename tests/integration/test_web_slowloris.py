"""Slowloris against the real web process: 2,000 connections that never finish their request head
(half send nothing, half a partial head), plus 300 that send garbage, do not stop a real page from
being served; the web closes every half-open connection itself (evicted past web.max_connections
or at web.header_timeout), and its log stays under 1 MB (each kind of line at most
web.log_lines_per_minute a minute)."""
from __future__ import annotations

import re
import resource
import selectors
import socket
import time

import httpx
import pytest

from support.services import ServiceProcess, stack_config, write_config
from support.webaccess import add_user

HALF_OPEN = 2000
GARBAGE = 300
MAX_CONNECTIONS = 1000
HEADER_TIMEOUT_S = 3


def raise_own_file_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"the hard open-file limit is {hard}; this test needs {need} descriptors")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def open_half(port: int, n: int) -> list[socket.socket]:
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if i % 2:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # a head that never ends
        socks.append(s)
    return socks


def closed_by_server(socks: list[socket.socket], deadline_s: float) -> int:
    """How many of ``socks`` the server closed (EOF or reset) before the deadline."""
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    closed = 0
    end = time.monotonic() + deadline_s
    while closed < len(socks) and time.monotonic() < end:
        for key, _ in sel.select(timeout=0.5):
            try:
                data = key.fileobj.recv(4096)
            except (ConnectionResetError, BlockingIOError) as e:
                if isinstance(e, BlockingIOError):
                    continue
                data = b""
            if not data or data.startswith(b"HTTP/1.1 503"):
                sel.unregister(key.fileobj)
                closed += 1
    sel.close()
    return closed


def test_half_open_connections_do_not_stop_a_real_request(tmp_path):
    raise_own_file_limit(HALF_OPEN + GARBAGE + 512)
    cfg = stack_config(tmp_path, web={"header_timeout": f"{HEADER_TIMEOUT_S}s", "max_connections": MAX_CONNECTIONS})
    path = write_config(tmp_path / "flowlens.yaml", cfg)
    store = ServiceProcess("store", path).start()
    web = ServiceProcess("web", path).start()
    socks: list[socket.socket] = []
    try:
        port = int(cfg["web"]["listen"].rsplit(":", 1)[1])
        socks = open_half(port, HALF_OPEN)
        for _ in range(GARBAGE):  # each one a warning from the HTTP parser: the log filter bounds them
            with socket.create_connection(("127.0.0.1", port), timeout=10) as g:
                g.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        # a real page, while the half-open connections are still there (the newest are)
        r = httpx.get(f"http://127.0.0.1:{port}/", timeout=30)
        assert r.status_code == 200 and b"<h1>Dashboard</h1>" in r.content
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).status_code == 200
        # the web closes every half-open connection itself: evicted at once, or at the head deadline
        assert closed_by_server(socks, HEADER_TIMEOUT_S + 20) == HALF_OPEN
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    finally:
        for s in socks:
            s.close()
        rc = web.stop()
        store.stop()
    assert rc == 0, web.log()
    counters = dict(re.findall(r"^(flowlens_web_connections_\w+) (\d+)$", metrics, re.M))
    evicted, timed_out = int(counters["flowlens_web_connections_evicted_total"]), int(counters["flowlens_web_connections_header_timeouts_total"])
    assert evicted >= HALF_OPEN - MAX_CONNECTIONS and evicted + timed_out >= HALF_OPEN, counters
    log_bytes = sum(len(line) + 1 for line in web.lines)
    invalid = [line for line in web.lines if "Invalid HTTP request" in line]
    print(f"web log: {len(web.lines)} lines, {log_bytes} bytes; {evicted} evicted, {timed_out} timed out")
    assert log_bytes < 1_000_000
    assert 1 <= len(invalid) <= 60 + 1, len(invalid)  # web.log_lines_per_minute (default 60) in this minute
    stopped = [line for line in web.lines if "msg=stopped" in line][-1]
    assert "log_lines_suppressed=" in stopped and int(re.search(r"log_lines_suppressed=(\d+)", stopped).group(1)) > 0


def test_a_body_that_never_arrives_is_cut_at_the_body_timeout(tmp_path):
    users = tmp_path / "users"
    add_user(users, "ann", "viewer", "pw")
    cfg = stack_config(tmp_path, web={"users_file": str(users), "body_timeout": "2s", "header_timeout": "30s"})
    web = ServiceProcess("web", write_config(tmp_path / "flowlens.yaml", cfg)).start()
    port = int(cfg["web"]["listen"].rsplit(":", 1)[1])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                      b"Content-Length: 100\r\n\r\nname=ann&pass")  # 87 bytes short, for ever
            assert closed_by_server([s], 20) == 1
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
        assert re.search(r"^flowlens_web_connections_body_timeouts_total 1$", metrics, re.M), metrics[:2000]
        assert re.search(r"^flowlens_web_connections_header_timeouts_total 0$", metrics, re.M)
    finally:
        assert web.stop() == 0
    assert not [line for line in web.lines if "page failed" in line or "Traceback" in line], web.log()
