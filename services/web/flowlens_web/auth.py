"""Who may see the pages: the accounts of ``web.users_file``, a signed session cookie, per-address
login limits, the /metrics bearer token, and the role check later actions use.

Everything here is inert until the app calls it; the cookie is an HMAC-SHA256 (standard library)
over the account name, its password fingerprint and an expiry, so a new password, a removed account
or a passed expiry ends a session without any state kept on the server.
"""
from __future__ import annotations

import base64
import collections
import contextvars
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Callable

from starlette.exceptions import HTTPException

from flowmodel import accounts
from flowmodel.accounts import Account, AccountsError
from flowmodel.logs import RateLimitedLog

log = logging.getLogger(__name__)

COOKIE = "flowlens_session"
OPEN_PATHS = ("/healthz", "/login", "/logout", "/favicon.ico")   # and /static/..., /metrics (its own token)
LOGIN_WINDOW_S = 300.0
MAX_TRACKED_ADDRESSES = 10_000      # login failure records kept; the oldest address is forgotten first
RELOAD_CHECK_S = 1.0                # how often the accounts file's mtime is looked at

# the signed-in account of the request being served (None: accounts off, or an open path)
current: contextvars.ContextVar[Account | None] = contextvars.ContextVar("flowlens_account", default=None)


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_role(role: str) -> None:
    """Raise 403 unless the signed-in account has ``role`` (or accounts are off: then nobody signs in
    and every page is open, as the start-up warning and the banner say)."""
    accounts.check_role(role)
    acct = current.get()
    if acct is not None and not acct.may(role):
        raise HTTPException(403, f"this needs the {role} role; {acct.name} is a {acct.role}")


class AccountsFile:
    """The accounts of ``web.users_file``, read again when the file changes (a bad edit keeps the
    accounts read last and logs why)."""

    def __init__(self, path: str, clock: Callable[[], float] = time.monotonic):
        self.path = Path(path)
        self.clock = clock
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._accounts = accounts.load(self.path)   # AccountsError at start: the web refuses to start
        self._checked = clock()
        self._bad = RateLimitedLog(log, 60.0)

    def _stat(self):
        try:
            st = self.path.stat()
            return (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            return None

    def get(self, name: str) -> Account | None:
        with self._lock:
            now = self.clock()
            if now - self._checked >= RELOAD_CHECK_S:
                self._checked = now
                stamp = self._stat()
                if stamp != self._stamp:
                    self._stamp = stamp
                    try:
                        self._accounts = accounts.load(self.path)
                        log.info("accounts read again", extra={"fields": {"file": str(self.path), "accounts": len(self._accounts)}})
                    except AccountsError as e:
                        self._bad.warning("accounts", "accounts file not read; the accounts read before stay", error=str(e))
            return self._accounts.get(name)

    def __len__(self) -> int:
        return len(self._accounts)


class Sessions:
    """Signed, expiring session values: ``payload.mac``, both base64url."""

    def __init__(self, key: bytes, lifetime_s: float, clock: Callable[[], float] = time.time):
        if len(key) < 32:
            raise ValueError("the session key needs at least 32 bytes")
        self.key = key
        self.lifetime_s = lifetime_s
        self.clock = clock

    @classmethod
    def from_config(cls, secret_file: str, lifetime_s: float) -> "Sessions":
        if not secret_file:
            return cls(secrets.token_bytes(32), lifetime_s)
        try:
            key = Path(secret_file).read_bytes().strip()
        except OSError as e:
            raise AccountsError(f"web.session_secret_file {secret_file}: {e.strerror or e}") from None
        if len(key) < 32:
            raise AccountsError(f"web.session_secret_file {secret_file}: {len(key)} bytes, at least 32 wanted "
                                "(e.g. head -c 48 /dev/urandom | base64 > FILE)")
        return cls(key, lifetime_s)

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self.key, payload, hashlib.sha256).digest()

    def issue(self, account: Account) -> str:
        body = json.dumps([account.name, account.fingerprint, int(self.clock() + self.lifetime_s)]).encode()
        payload = base64.urlsafe_b64encode(body).rstrip(b"=")
        return (payload + b"." + base64.urlsafe_b64encode(self._mac(payload)).rstrip(b"=")).decode("ascii")

    def read(self, value: str) -> tuple[str, str] | None:
        """(name, password fingerprint) of a genuine, unexpired value; None otherwise."""
        try:
            payload, mac = value.encode("ascii").split(b".", 1)
            if not hmac.compare_digest(base64.urlsafe_b64decode(mac + b"=" * (-len(mac) % 4)), self._mac(payload)):
                return None
            name, fingerprint, expires = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
        except (ValueError, TypeError, UnicodeError):
            return None
        if not isinstance(expires, int) or expires < self.clock():
            return None
        return str(name), str(fingerprint)


class LoginLimiter:
    """Failed logins per client address in the last ``window_s``; an address past ``max_failures``
    waits until its oldest failure leaves the window. Bounded to ``max_addresses`` records."""

    def __init__(self, max_failures: int, window_s: float = LOGIN_WINDOW_S,
                 max_addresses: int = MAX_TRACKED_ADDRESSES, clock: Callable[[], float] = time.monotonic):
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_addresses = max_addresses
        self.clock = clock
        self._failures: collections.OrderedDict[str, collections.deque] = collections.OrderedDict()
        self.failed = 0     # every failed login (wrong name or password)
        self.refused = 0    # tries refused with 429 while an address was over its limit

    def _recent(self, address: str) -> collections.deque | None:
        q = self._failures.get(address)
        if q is None:
            return None
        cutoff = self.clock() - self.window_s
        while q and q[0] <= cutoff:
            q.popleft()
        if not q:
            del self._failures[address]
            return None
        return q

    def retry_after(self, address: str) -> float:
        """Seconds until ``address`` may try again (0: now)."""
        q = self._recent(address)
        if q is None or len(q) < self.max_failures:
            return 0.0
        return max(1.0, q[-self.max_failures] + self.window_s - self.clock())

    def refuse(self) -> None:
        self.refused += 1

    def fail(self, address: str) -> None:
        self.failed += 1
        q = self._recent(address)
        if q is None:
            q = self._failures[address] = collections.deque(maxlen=self.max_failures)
        q.append(self.clock())
        self._failures.move_to_end(address)
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)

    def succeed(self, address: str) -> None:
        self._failures.pop(address, None)


def safe_next(target: str | None) -> str:
    """Where to go after login: a path on this site only (no //host, no scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target[:2000]


def bearer_ok(headers: dict[bytes, bytes], token: str) -> bool:
    got = headers.get(b"authorization", b"")
    scheme, _, value = got.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), token.encode())


def cookie_value(headers: dict[bytes, bytes]) -> str | None:
    for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


def set_cookie_header(value: str, max_age: int, secure: bool) -> tuple[bytes, bytes]:
    attrs = f"{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax" + ("; Secure" if secure else "")
    return b"set-cookie", attrs.encode("latin-1")


class AuthMiddleware:
    """Pure ASGI: sets ``current`` for the request; without a valid session a page GET is sent to
    /login (303), anything else gets 401. /metrics checks its bearer token when one is set."""

    def __init__(self, app, users: AccountsFile | None, sessions: Sessions, metrics_token: str):
        self.app = app
        self.users = users
        self.sessions = sessions
        self.metrics_token = metrics_token

    def account_of(self, headers: dict[bytes, bytes]) -> Account | None:
        if self.users is None:
            return None
        value = cookie_value(headers)
        got = self.sessions.read(value) if value else None
        if got is None:
            return None
        acct = self.users.get(got[0])
        return acct if acct is not None and acct.fingerprint == got[1] else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        headers = dict(scope.get("headers") or [])
        if path == "/metrics" and self.metrics_token:
            if not bearer_ok(headers, self.metrics_token):
                return await plain(send, 401, "/metrics needs the bearer token of web.metrics_token\n",
                                   [(b"www-authenticate", b'Bearer realm="flowlens metrics"')])
            return await self.app(scope, receive, send)
        acct = self.account_of(headers)
        token = current.set(acct)
        try:
            if (self.users is None or acct is not None or path in OPEN_PATHS or path.startswith("/static/")
                    or path == "/metrics"):
                return await self.app(scope, receive, send)
            if scope.get("method") in ("GET", "HEAD"):
                target = path + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
                from urllib.parse import urlencode
                location = "/login" + ("?" + urlencode({"next": target}) if target != "/" else "")
                return await plain(send, 303, "sign in first\n", [(b"location", location.encode("latin-1"))])
            return await plain(send, 401, "sign in first\n")
        finally:
            current.reset(token)


async def plain(send, status: int, text: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store"), *headers]})
    await send({"type": "http.response.body", "body": body})


def dummy_verify(password: str) -> None:
    """Spend what a real check spends, so an unknown name answers as slowly as a wrong password."""
    accounts.verify_password(password, _DUMMY_HASH)


_DUMMY_HASH = accounts.hash_password(os.urandom(16).hex())
