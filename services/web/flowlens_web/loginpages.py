"""The sign-in form, its POST and /logout: plain forms (no script), the password checked on a
thread of its own (scrypt costs ~50 ms), failures counted per client address and refused with 429
past ``web.login_max_failures`` in 5 minutes."""
from __future__ import annotations

import logging
from typing import Callable
from urllib.parse import parse_qs

import anyio
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.requests import ClientDisconnect

from flowmodel import accounts
from flowmodel.logs import RateLimitedLog

from .asgi import App
from .auth import AccountsFile, LoginLimiter, Sessions, dummy_verify, safe_next, set_cookie_header
from .lanes import ClientGone

log = logging.getLogger(__name__)

MAX_FORM_BYTES = 8192
MAX_FORM_FIELDS = 20
FORM_TYPE = "application/x-www-form-urlencoded"


class FormTooLarge(Exception):
    """A form past MAX_FORM_BYTES or MAX_FORM_FIELDS; the message says which (shown with a 413)."""


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form of at most MAX_FORM_BYTES and MAX_FORM_FIELDS (first value of each field)."""
    body = b""
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise FormTooLarge(f"the form is larger than {MAX_FORM_BYTES} bytes")
    except ClientDisconnect:  # gone, or closed at web.body_timeout: nobody to answer
        raise ClientGone(f"{request.client.host if request.client else '?'} went away while sending a form") from None
    try:
        fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:  # parse_qs's "Max number of fields exceeded"
        raise FormTooLarge(f"the form has more than {MAX_FORM_FIELDS} fields") from None
    return {k: v[0] for k, v in fields.items()}


def add_login_routes(app: App, page: Callable[..., Response], users: AccountsFile | None,
                     sessions: Sessions, limiter: LoginLimiter) -> None:
    checks = anyio.CapacityLimiter(2)  # scrypt: 16 MiB and ~50 ms each; two at once at most
    failed_log = RateLimitedLog(log, 10.0)

    def form_page(status: int = 200, error: str | None = None, name: str = "", nxt: str = "/") -> Response:
        return page("login.xhtml", status, title="Sign in", nav="", error=error, account_name=name[:64], next=nxt)

    @app.get("/login")
    async def login_form(request: Request):
        if users is None:  # no accounts: nothing to sign in to
            return RedirectResponse("/", 303)
        return form_page(nxt=safe_next(request.query_params.get("next")))

    @app.post("/login")
    async def login(request: Request):
        if users is None:
            return RedirectResponse("/", 303)
        client = request.client.host if request.client else "?"
        wait_s = limiter.retry_after(client)
        if wait_s:
            limiter.refuse()
            resp = form_page(429, f"Too many failed sign-ins from your address ({client}); try again in "
                                  f"{wait_s:.0f} s.")
            resp.headers["Retry-After"] = str(int(wait_s + 0.999))
            return resp
        if (request.headers.get("content-type") or "").split(";")[0].strip() != FORM_TYPE:
            return form_page(400, "The sign-in form was not sent as a form.")
        try:
            form = await read_form(request)
        except FormTooLarge as e:
            return form_page(413, f"The sign-in form was refused: {e}.")
        name, password, nxt = form.get("name", ""), form.get("password", ""), safe_next(form.get("next"))
        acct = users.get(name) if accounts.NAME_RE.match(name) else None

        def check() -> bool:
            if acct is None:
                dummy_verify(password)
                return False
            return accounts.verify_password(password, acct.password_hash)

        if not await anyio.to_thread.run_sync(check, limiter=checks):
            limiter.fail(client)
            failed_log.warning(client, "sign-in failed", client=client, account=name[:64],
                               failures_total=limiter.failed)
            return form_page(401, "Wrong name or password.", name, nxt)
        limiter.succeed(client)
        log.info("signed in", extra={"fields": {"account": acct.name, "role": acct.role, "client": client}})
        resp = RedirectResponse(nxt, 303)
        resp.raw_headers.append(set_cookie_header(sessions.issue(acct), int(sessions.lifetime_s),
                                                  request.url.scheme == "https"))
        return resp

    @app.post("/logout")
    async def logout(request: Request):
        resp = RedirectResponse("/login" if users is not None else "/", 303)
        resp.raw_headers.append(set_cookie_header("", 0, request.url.scheme == "https"))
        return resp

