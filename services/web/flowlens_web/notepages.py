"""The advisories page's forms (no JavaScript): acknowledge an open advisory, add a silence, lift one.
Each form posts, the note (flowmodel.notes) goes to the store's events socket on a thread and the
answer waits for the store's confirmation, then the browser is sent back to /advisories (303).

Who may: the operator role when web.users_file is set; without accounts, only a web that listens on
loopback (anyone reaching a wider one could otherwise silence the alarms). A form posted from
another site is refused (its Origin, or Sec-Fetch-Site, says so; the session cookie is SameSite=Lax).
"""
from __future__ import annotations

import logging
from typing import Callable

import anyio
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException

from flowmodel.config import parse_duration
from flowmodel.notes import SILENCE_MATCHES, new_silence, send_note

from . import auth
from .asgi import App
from .loginpages import FORM_TYPE, FormTooLarge, read_form

log = logging.getLogger(__name__)

CONFIRM_TIMEOUT_S = 5.0
MAX_COMMENT = 500


def may_operate(users, listen_host: str) -> bool:
    """The signed-in account may acknowledge and silence (or, without accounts, the web is loopback-only)."""
    if users is None:
        return auth.is_loopback(listen_host)
    acct = auth.current.get()
    return acct is not None and acct.may("operator")


def add_note_routes(app: App, cfg, users, listen_host: str, lanes,
                    error_page: Callable[..., Response], now_ms: Callable[[], int]) -> None:
    senders = anyio.CapacityLimiter(2)  # each waits up to CONFIRM_TIMEOUT_S for the store

    async def checked_form(request: Request) -> dict[str, str]:
        if users is None and not auth.is_loopback(listen_host):
            raise HTTPException(403, "acknowledging and silencing need accounts (web.users_file, flowlens users "
                                     "add NAME --role operator) on a web that listens beyond this machine")
        if users is not None:
            auth.require_role("operator")
        origin = request.headers.get("origin")
        if (origin and origin != f"{request.url.scheme}://{request.url.netloc}") or \
                request.headers.get("sec-fetch-site") not in (None, "same-origin", "none"):
            raise HTTPException(403, "this form was posted from another site")
        if (request.headers.get("content-type") or "").split(";")[0].strip() != FORM_TYPE:
            raise HTTPException(400, "the form was not sent as a form")
        try:
            return await read_form(request)
        except FormTooLarge as e:
            raise HTTPException(413, str(e)) from None

    def who() -> str:
        acct = auth.current.get()
        return acct.name if acct is not None else "web (no accounts)"

    async def send(note: dict) -> Response:
        ok = await anyio.to_thread.run_sync(lambda: send_note(cfg, note, "web", CONFIRM_TIMEOUT_S), limiter=senders)
        if not ok:
            return error_page(503, "The store did not confirm",
                              f"The store did not confirm the {note['kind']} within {CONFIRM_TIMEOUT_S:g} s; it may "
                              "not be kept. Look at the advisories page again in a moment.", "advisories")
        log.info("operator note", extra={"fields": {"kind": note["kind"], "id": note["id"], "by": note["by"]}})
        return RedirectResponse("/advisories" + ("#silences" if note["kind"] == "silence" else ""), 303)

    @app.post("/advisories/ack")
    async def acknowledge(request: Request):
        form = await checked_form(request)
        key = form.get("key", "")
        try:
            episode = int(form.get("episode", ""))
        except ValueError:
            raise HTTPException(400, "the form did not say which episode of the advisory to acknowledge") from None
        reply = await lanes.query(request, "advisories", include_resolved=True, limit=1000)
        found = [a for a in reply.get("advisories") or [] if a.get("key") == key]
        if not found or found[0].get("state") == "resolved" or found[0].get("first_seen") != episode:
            raise HTTPException(409, f"advisory {key[:200]!r} is not open in that episode any more; reload the page")
        return await send({"kind": "ack", "id": key, "episode": episode, "by": who(),
                           "comment": form.get("comment", "")[:MAX_COMMENT], "created_at": now_ms()})

    @app.post("/silences")
    async def add_silence(request: Request):
        form = await checked_form(request)
        try:
            note = new_silence({k: form.get(k, "") for k in SILENCE_MATCHES},
                               parse_duration(form.get("duration") or "24h"), who(),
                               form.get("comment", "")[:MAX_COMMENT], now_ms())
        except ValueError as e:
            raise HTTPException(400, f"cannot add the silence: {e}") from None
        return await send(note)

    @app.post("/silences/remove")
    async def remove_silence(request: Request):
        form = await checked_form(request)
        sid = form.get("id", "")
        known = [n for n in await lanes.query(request, "notes", kind="silence", active=True) if n.get("id") == sid]
        if not known:
            raise HTTPException(409, f"there is no silence {sid[:40]!r} in force")
        return await send({**known[0], "expires_at": now_ms(), "removed_by": who()})
