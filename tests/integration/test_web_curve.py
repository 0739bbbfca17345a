"""The web speaks CURVE to a store that requires it: with its key authorised its pages and /healthz
answer; a web whose key the store does not know gets no answer and says so (503), not a crash."""
from __future__ import annotations

import shutil
import subprocess
import sys

import httpx

from support.services import ServiceProcess, free_port, stack_config, write_config


def keys(directory, name: str) -> None:
    r = subprocess.run([sys.executable, "-m", "flowmodel.cli", "keys", "generate", "--dir", str(directory),
                        "--name", name], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_web_pages_over_curve_and_a_stranger_refused(tmp_path):
    kdir, authorized = tmp_path / "keys", tmp_path / "authorized"
    authorized.mkdir()
    for name in ("store", "web", "stranger"):
        keys(kdir, name)
    shutil.copy(kdir / "web.key", authorized / "web.key")
    security = {"server_key": str(kdir / "store.key_secret"), "authorized_keys": str(authorized),
                "client_key": str(kdir / "web.key_secret"), "store_public_key": str(kdir / "store.key")}
    cfg = stack_config(tmp_path, security=security, query={"timeout": "2s"})
    path = write_config(tmp_path / "flowlens.yaml", cfg)
    stranger_cfg = {**cfg, "security": {**security, "client_key": str(kdir / "stranger.key_secret")},
                    "web": {"listen": f"127.0.0.1:{free_port()}"}}
    stranger_path = write_config(tmp_path / "stranger.yaml", stranger_cfg)
    store = ServiceProcess("store", path).start()
    web = ServiceProcess("web", path).start()
    stranger = ServiceProcess("web", stranger_path).start()
    try:
        base = "http://" + cfg["web"]["listen"]
        assert httpx.get(base + "/healthz", timeout=30).status_code == 200
        r = httpx.get(base + "/", timeout=30)
        assert r.status_code == 200 and b"<h1>Dashboard</h1>" in r.content
        other = "http://" + stranger_cfg["web"]["listen"]
        h = httpx.get(other + "/healthz", timeout=30)
        assert h.status_code == 503 and h.json()["ok"] is False
        assert httpx.get(other + "/", timeout=30).status_code == 503
    finally:
        rcs = [stranger.stop(), web.stop(), store.stop()]
    assert rcs == [0, 0, 0], (web.log(), stranger.log())
