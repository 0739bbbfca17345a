"""Who may acknowledge and silence on the web, through real store and web processes: with accounts,
an operator may and a viewer gets 403; a form posted from another site is refused; without accounts,
a web listening beyond loopback refuses the forms (and shows none), one on loopback takes them."""
from __future__ import annotations

import contextlib

import httpx

from support.notify import Injector, advisory
from support.services import ServiceProcess, ServiceStack, free_port, wait_until
from support.webaccess import add_user

PASSWORDS = {"alice": "alice pass phrase", "victor": "victor's phrase"}


@contextlib.contextmanager
def signed_in(base: str, name: str):
    with httpx.Client(base_url=base, timeout=30) as c:
        r = c.post("/login", data={"name": name, "password": PASSWORDS[name], "next": "/advisories"})
        assert r.status_code == 303, r.text[:500]
        yield c


def test_operator_may_viewer_may_not_and_other_sites_may_not(tmp_path):
    users = tmp_path / "users"
    add_user(users, "alice", "operator", PASSWORDS["alice"])
    add_user(users, "victor", "viewer", PASSWORDS["victor"])
    with ServiceStack(tmp_path, ["store", "web"], web={"users_file": str(users)}) as stack:
        base = "http://" + stack.cfg["web"]["listen"]
        client, inject = stack.client(), Injector(stack.cfg)
        try:
            inject.send([advisory(1)])
            silence = {"address": "10.9.0.2", "duration": "1h", "comment": "lab"}
            with signed_in(base, "victor") as viewer:
                assert "Add silence" not in viewer.get("/advisories").text  # no forms for a viewer
                r = viewer.post("/silences", data=silence)
                assert r.status_code == 403 and "operator" in r.text
            with signed_in(base, "alice") as operator:
                page = operator.get("/advisories").text
                assert "Add silence" in page and "Acknowledge" in page
                r = operator.post("/silences", data=silence, headers={"Origin": "https://evil.example.net"})
                assert r.status_code == 403 and "another site" in r.text
                r = operator.post("/silences", data={**silence, "address": "not-an-address"})
                assert r.status_code == 400 and "not an address" in r.text
                r = operator.post("/silences", data=silence, headers={"Origin": base})
                assert r.status_code == 303 and r.headers["location"] == "/advisories#silences"
                r = operator.post("/advisories/ack", data={"key": "scan:10.9.0.1", "episode": "1700000000000",
                                                           "comment": "known"})
                assert r.status_code == 303
            notes = wait_until(lambda: client.notes(), 10)
        finally:
            inject.close()
            client.close()
    by_kind = {n["kind"]: n for n in notes}
    assert by_kind["silence"]["address"] == "10.9.0.2" and by_kind["silence"]["by"] == "alice"
    assert by_kind["ack"]["id"] == "scan:10.9.0.1" and by_kind["ack"]["by"] == "alice"


def test_without_accounts_only_a_loopback_web_takes_the_forms(tmp_path):
    port = free_port()
    with ServiceStack(tmp_path, ["store"], web={"listen": f"0.0.0.0:{port}"}) as stack:
        web = ServiceProcess("web", stack.config_path).start()
        try:
            r = httpx.post(f"http://127.0.0.1:{port}/silences", data={"address": "10.9.0.2"}, timeout=30)
            assert r.status_code == 403 and "web.users_file" in r.text
            assert "Add silence" not in httpx.get(f"http://127.0.0.1:{port}/advisories", timeout=30).text
        finally:
            assert web.stop() == 0
