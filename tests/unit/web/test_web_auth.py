"""The pure parts of the web's access control and log bound: session values expire and resist
tampering, the per-address sign-in limit opens again when its window passes, only local paths are
followed after sign-in, the role check refuses a viewer what an operator may do, and the log
filter passes each kind of line a bounded number of times a minute."""
import logging

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from flowlens_web import auth
from flowlens_web.guard import LogRateLimit
from flowmodel import accounts


def test_session_values_expire_and_resist_tampering():
    now = [1_000_000.0]
    s = auth.Sessions(b"k" * 32, lifetime_s=60, clock=lambda: now[0])
    acct = accounts.Account("alice", "viewer", accounts.hash_password("pw"))
    value = s.issue(acct)
    assert s.read(value) == ("alice", acct.fingerprint)
    assert auth.Sessions(b"j" * 32, 60, clock=lambda: now[0]).read(value) is None  # another key
    payload, mac = value.split(".")
    assert s.read(payload.replace(payload[3], "A" if payload[3] != "A" else "B", 1) + "." + mac) is None
    now[0] += 61
    assert s.read(value) is None
    with pytest.raises(ValueError):
        auth.Sessions(b"short", 60)


def test_login_limit_is_per_address_and_window():
    now = [0.0]
    lim = auth.LoginLimiter(3, window_s=300, max_addresses=2, clock=lambda: now[0])
    for _ in range(3):
        assert lim.retry_after("a") == 0
        lim.fail("a")
        now[0] += 10
    assert lim.retry_after("a") == pytest.approx(300 - 30)
    assert lim.retry_after("b") == 0
    now[0] += 271  # the first failure has left the window
    assert lim.retry_after("a") == 0
    lim.fail("b"), lim.fail("c"), lim.fail("d")
    assert len(lim._failures) == 2 and lim.failed == 6  # bounded: the oldest address forgotten


@pytest.mark.parametrize("target,want", [("/flows?x=1", "/flows?x=1"), ("//evil.example/", "/"),
                                         ("https://evil.example/", "/"), ("/\\evil", "/"), (None, "/")])
def test_only_local_paths_are_followed(target, want):
    assert auth.safe_next(target) == want


def test_role_check_through_the_middleware(tmp_path):
    users = tmp_path / "users"
    accounts.add(users, "op", "operator", "pw1")
    accounts.add(users, "view", "viewer", "pw2")
    file = auth.AccountsFile(str(users))
    sessions = auth.Sessions(b"s" * 32, 3600)

    def act(request):
        auth.require_role("operator")
        return PlainTextResponse("done")

    app = Starlette(routes=[Route("/act", act, methods=["POST"])])
    app.add_middleware(auth.AuthMiddleware, users=file, sessions=sessions, metrics_token="")
    with TestClient(app) as c:
        assert c.post("/act").status_code == 401  # nobody signed in
        c.cookies.set(auth.COOKIE, sessions.issue(file.get("view")))
        r = c.post("/act")
        assert r.status_code == 403 and "needs the operator role; view is a viewer" in r.text
        c.cookies.set(auth.COOKIE, sessions.issue(file.get("op")))
        assert c.post("/act").text == "done"


def test_log_filter_bounds_each_kind_per_minute():
    now = [0.0]
    f = LogRateLimit(3, clock=lambda: now[0])

    def rec(msg):
        return logging.LogRecord("uvicorn.error", logging.WARNING, __file__, 1, msg, None, None)
    passed = [f.filter(rec("Invalid HTTP request received.")) for _ in range(10)]
    assert passed == [True] * 3 + [False] * 7
    assert f.filter(rec("another kind"))
    now[0] += 60
    r = rec("Invalid HTTP request received.")
    assert f.filter(r) and r.fields == {"suppressed": 7} and f.suppressed == 7
