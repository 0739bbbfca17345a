"""The store as a process: without CURVE keys it will not bind its sockets beyond loopback (exit 2, a config error,
naming the key that turns CURVE on); a bus message over the flow-batch bound is dropped by ZeroMQ
before the store reads it, while batches within it still arrive."""
from __future__ import annotations

import subprocess
import time

import zmq

from flowmodel import bus
from flowmodel.config import load_config
from support.services import PYTHON, REPO, ServiceStack, free_port, stack_config, write_config


def wait_for(cond, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


def test_store_refuses_to_bind_beyond_loopback_without_keys(tmp_path):
    cfg = stack_config(tmp_path)
    cfg["storage"]["bus_xsub_bind"] = f"tcp://0.0.0.0:{free_port()}"
    path = write_config(tmp_path / "flowlens.yaml", cfg)
    done = subprocess.run([PYTHON, "-m", "flowlens_store", "--config", str(path)], capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    assert done.returncode == 2, done.stderr  # lifecycle.EXIT_BAD_CONFIG: the config asks for it
    assert "refusing to bind tcp://0.0.0.0" in done.stderr
    for words in ("security.server_key", "flowlens keys generate", "security.allow_insecure_bind"):
        assert words in done.stderr, words

    cfg["security"] = {"allow_insecure_bind": True}  # said on purpose: it starts
    path = write_config(tmp_path / "flowlens.yaml", cfg)
    proc = subprocess.Popen([PYTHON, "-m", "flowlens_store", "--config", str(path)], stderr=subprocess.PIPE,
                            text=True, cwd=REPO)
    try:
        for line in proc.stderr:
            if "msg=ready" in line:
                break
        assert proc.poll() is None
    finally:
        proc.terminate()
        assert proc.wait(30) == 0


def test_oversize_bus_message_is_dropped_unread(tmp_path):
    with ServiceStack(tmp_path, ["store"], collector={"batch_max_flows": 1024, "max_exporters": 16}) as stack:
        limit = bus.max_message_bytes(load_config(stack.config_path))
        ctx = zmq.Context()
        pub = ctx.socket(zmq.PUB)
        pub.linger = 0
        pub.connect(stack.cfg["bus"]["publish_endpoint"])
        junk = b"\x00" * (limit + 1)   # would be a bad message (not msgpack) if the store read it
        small = b"\xc1"                # is one: the store reads it and counts it
        client = stack.client()

        def bad() -> int:
            return client.status()["bus"]["bad_messages"]

        def send_small_until_counted(before: int) -> int:
            """Send the small bad message until the store counts it; how many were sent."""
            sent, deadline = 0, time.monotonic() + 15
            while time.monotonic() < deadline:
                pub.send_multipart([b"flows.5", small])
                sent += 1
                if wait_for(lambda: bad() > before, 0.2):
                    return sent
            raise AssertionError("the store never counted the small bad message")

        try:
            send_small_until_counted(0)
            b0 = bad()
            for _ in range(20):
                pub.send_multipart([b"flows.5", junk])
            k = send_small_until_counted(b0)  # the publisher reconnects after each drop; then one gets through
            # had the store read the 20 oversize ones, each would be one more bad message
            assert k < 20 and bad() - b0 <= k, (b0, bad(), k)
        finally:
            client.close()
            pub.close()
            ctx.term()
