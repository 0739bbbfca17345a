"""The web with its store down, at the default client timeouts (query.timeout 5 s, query.retries 2):
a page answers 503 within about one timeout, later pages fail at once, /healthz and /metrics answer
within a second or two even while pages wait, and the pages come back by themselves once a store
answers on the endpoint.

The bounds are behaviour, not speed: before the web remembered "store down", /metrics took 15 s,
/healthz 30 s and the dashboard 44 s here.
"""
from __future__ import annotations

import threading
import time

import httpx
from lxml import etree

from support.services import ServiceProcess, stack_config, wait_until, write_config

H1 = "{http://www.w3.org/1999/xhtml}h1"
PAGES = ("/", "/flows", "/advisories", "/about")
FIRST_PAGE_BOUND_S = 8.0   # one 5 s timeout plus slack; three tries would be 15 s
FAIL_FAST_BOUND_S = 1.5
QUICK_BOUND_S = 3.0        # /healthz and /metrics: a 1 s ping plus slack


def timed_get(base: str, path: str) -> tuple[httpx.Response, float]:
    t0 = time.monotonic()
    r = httpx.get(base + path, timeout=60)
    return r, time.monotonic() - t0


def test_store_down_pages_fail_fast_and_health_answers_quickly(tmp_path):
    cfg = stack_config(tmp_path)  # query.timeout 5 s, retries at their default; nobody listens there
    assert "retries" not in cfg["query"] and cfg["query"]["timeout"] == "5s"
    path = write_config(tmp_path / "flowlens.yaml", cfg)
    web = ServiceProcess("web", path).start()
    store = None
    base = "http://" + cfg["web"]["listen"]
    try:
        # Every page, twice, and the health endpoints, all at once against a store that never answers.
        results: dict[str, tuple[httpx.Response, float]] = {}
        paths = [*PAGES, *(p + "?again=1" for p in PAGES), "/healthz", "/metrics"]
        threads = [threading.Thread(target=lambda p=p: results.__setitem__(p, timed_get(base, p))) for p in paths]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        walls = {p: round(results[p][1], 2) for p in paths}
        print("concurrent, store down:", walls)
        for p in paths[:-2]:
            r, wall = results[p]
            assert r.status_code == 503, (p, r.status_code)
            assert etree.fromstring(r.content).find(f".//{H1}").text == "The store is not answering", p
            assert wall < FIRST_PAGE_BOUND_S, walls
        assert results["/healthz"][0].status_code == 503 and results["/healthz"][1] < QUICK_BOUND_S, walls
        assert "flowlens_store_up 0" in results["/metrics"][0].text and results["/metrics"][1] < QUICK_BOUND_S, walls

        # Now the web knows: each page fails at once, saying since when.
        later = {}
        for p in (*PAGES, "/healthz", "/metrics"):
            r, wall = timed_get(base, p)
            later[p] = round(wall, 3)
            assert r.status_code == (200 if p == "/metrics" else 503), p
            if p in PAGES:
                assert "has not answered for" in r.text and r.headers.get("retry-after"), p
        print("later, store down:", later)
        assert all(w < FAIL_FAST_BOUND_S for w in later.values()), later

        # A store on the endpoint: the background ping finds it and the pages come back by themselves.
        store = ServiceProcess("store", path).start()
        t_store = time.monotonic()
        wait_until(lambda: httpx.get(base + "/healthz", timeout=10).status_code == 200, timeout_s=15, interval_s=0.2)
        wait_until(lambda: httpx.get(base + "/", timeout=10).status_code == 200, timeout_s=15, interval_s=0.2)
        print(f"pages back {time.monotonic() - t_store:.2f} s after the store said ready")
        assert "flowlens_store_up 1" in httpx.get(base + "/metrics", timeout=10).text
    finally:
        rc = web.stop()
        if store:
            store.stop()
    assert rc == 0, web.log()
    # the moment the store stopped answering and came back are logged once each, not once per page
    assert sum("store not answering" in line for line in web.lines) == 1, web.log()
    assert sum("store answers again" in line for line in web.lines) == 1, web.log()
    assert not any("Traceback" in line for line in web.lines), web.log()
