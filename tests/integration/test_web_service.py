"""The web as a process without a store: it starts, says `ready`, answers /healthz with 503 and
every page with a 503 page in words, and exits 0 on SIGTERM; a bad config exits non-zero."""
from __future__ import annotations

import subprocess

import httpx
from lxml import etree

from support.services import PYTHON, REPO, ServiceProcess, stack_config, write_config


def test_web_without_store_says_so_in_words(tmp_path):
    cfg = stack_config(tmp_path, query={"timeout": "300ms", "retries": 0})
    web = ServiceProcess("web", write_config(tmp_path / "flowlens.yaml", cfg)).start()
    try:
        base = "http://" + cfg["web"]["listen"]
        h = httpx.get(base + "/healthz", timeout=10)
        assert h.status_code == 503 and h.json()["ok"] is False
        for path in ("/", "/flows", "/advisories", "/about"):
            r = httpx.get(base + path, timeout=10)
            assert r.status_code == 503, path
            assert r.headers["content-type"] == "application/xhtml+xml; charset=utf-8"
            root = etree.fromstring(r.content)
            heading = root.find(".//{http://www.w3.org/1999/xhtml}h1").text
            assert heading == "The store is not answering"
            assert "Traceback" not in r.text
        m = httpx.get(base + "/metrics", timeout=10)
        assert m.status_code == 200 and "flowlens_store_up 0" in m.text
    finally:
        rc = web.stop()
    assert rc == 0, web.log()
    assert any("msg=ready" in line for line in web.lines)


def test_bad_listen_config_exits_with_reason(tmp_path):
    cfg = stack_config(tmp_path, web={"listen": "nowhere"})
    path = write_config(tmp_path / "bad.yaml", cfg)
    p = subprocess.run([PYTHON, "-m", "flowlens_web", "--config", str(path)], capture_output=True, text=True,
                       cwd=REPO, timeout=30)
    assert p.returncode != 0 and "web.listen" in p.stderr
