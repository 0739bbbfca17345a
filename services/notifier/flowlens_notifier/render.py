"""A message's forms, one per kind of target: the webhook's JSON (the advisory event fields of every
notification, plus a text line) or plain-text body that Slack, Mattermost and Teams incoming
webhooks accept, the email, and RFC 5424 syslog records. Pure functions of the message."""
from __future__ import annotations

import json
import re
import socket
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import urlencode

from flowmodel import timefmt
from flowmodel.events import ADVISORY_FIELDS

from .outbox import Message

VERBS = {"raised": "raised", "escalated": "escalated", "resolved": "resolved"}
FLOW_FILTER_FIELDS = ("src", "dst", "addr", "port", "protocol", "exporter")


def flows_link(note: dict[str, Any], public_url: str) -> str | None:
    """The web UI's flow explorer for the advisory's filter (what its advisories page links to)."""
    flt = note.get("filter")
    if not public_url or not isinstance(flt, dict):
        return None
    q = {k: str(flt[k]) for k in FLOW_FILTER_FIELDS if flt.get(k) not in (None, "")}
    for k in ("src_port", "dst_port"):
        if flt.get(k) not in (None, "") and "port" not in q:
            q["port"] = str(flt[k])
    if isinstance(flt.get("since"), int):
        q["range"] = "custom"
        q["since"] = timefmt.iso(flt["since"])
        if isinstance(flt.get("until"), int):
            q["until"] = timefmt.iso(flt["until"])
    if not q:
        return None
    return f"{public_url.rstrip('/')}/flows?{urlencode(q)}"


def headline(note: dict[str, Any]) -> str:
    """'CRITICAL raised: Port scan from 10.0.5.20'"""
    title = note.get("title") or note.get("key") or "advisory"
    return f"{note.get('severity', '?')} {VERBS.get(note.get('transition'), note.get('transition'))}: {title}"


def summary(message: Message) -> str:
    """One line for a subject or a chat: 'FlowLens: CRITICAL raised: Port scan from ... (+2 more)'."""
    items = message.items
    first = max(items, key=lambda n: (n.get("transition") != "resolved", -_rank(n.get("severity"))))
    more = f" (+{len(items) - 1} more)" if len(items) > 1 else ""
    return f"FlowLens: {headline(first)}{more}"


def _rank(severity) -> int:
    return {"CRITICAL": 2, "WARNING": 1}.get(severity, 0)


def _evidence_text(evidence) -> str:
    if not isinstance(evidence, dict):
        return ""
    return ", ".join(f"{k}={v}" for k, v in evidence.items() if k not in ("window_start", "window_end"))


def text(message: Message, public_url: str, max_items: int) -> str:
    """The plain-text body: a line per notification (its sentence, action and flows link), the ones
    past ``max_items`` counted in one line."""
    items = message.items
    counts: dict[str, int] = {}
    for n in items:
        counts[n.get("transition", "")] = counts.get(n.get("transition", ""), 0) + 1
    lines = [summary(message)]
    if len(items) > 1:
        lines.append(", ".join(f"{c} {t}" for t, c in counts.items()))
    for n in items[:max_items]:
        lines.append("")
        lines.append(f"* {headline(n)} [{n.get('key')}]")
        if n.get("description"):
            lines.append(f"  {n['description']}")
        if n.get("action") and n.get("transition") != "resolved":
            lines.append(f"  Action: {n['action']}")
        link = flows_link(n, public_url)
        if link:
            lines.append(f"  Flows: {link}")
    if len(items) > max_items:
        lines.append("")
        lines.append(f"... and {len(items) - max_items} more advisories in this burst (see the advisories page).")
    return "\n".join(lines)


def webhook_body(message: Message, fmt: str, public_url: str, max_items: int) -> bytes:
    """``json``: {message_id, text, notifications: [advisory fields + transition + link]};
    ``text``: {"text": ...} only (what Slack, Mattermost and Teams incoming webhooks take)."""
    body: dict[str, Any] = {"text": text(message, public_url, max_items)}
    if fmt == "json":
        body["message_id"] = message.id
        body["notifications"] = [{**{k: n.get(k) for k in ADVISORY_FIELDS}, "transition": n.get("transition"),
                                  "link": flows_link(n, public_url)} for n in message.items]
    return json.dumps(body, default=str).encode()


def email(message: Message, target: dict, public_url: str, max_items: int) -> EmailMessage:
    """The email: the summary as subject, each notification's sentence, action, evidence and link."""
    msg = EmailMessage()
    msg["Subject"] = summary(message)
    msg["From"] = target["from"]
    msg["To"] = ", ".join(target["to"])
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(idstring=message.id)
    msg["X-FlowLens-Message"] = message.id
    lines = [text(message, public_url, max_items), ""]
    for n in message.items[:max_items]:
        ev = _evidence_text(n.get("evidence"))
        if ev:
            lines.append(f"Evidence for {n.get('key')}: {ev}")
    msg.set_content("\n".join(lines).rstrip() + "\n")
    return msg


# RFC 5424: PRI = facility * 8 + severity (2 critical, 4 warning, 5 notice, 6 informational)
SYSLOG_SEVERITY = {"CRITICAL": 2, "WARNING": 4, "INFO": 6}
SD_ID = "flowlens@32473"  # 32473: the private enterprise number RFC 5612 sets aside for documentation


def _sd_value(v: Any) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def syslog_records(message: Message, facility: int, app_name: str, max_items: int,
                   hostname: str | None = None, now_ms: int | None = None) -> list[bytes]:
    """One RFC 5424 record per notification (SIEMs want one event per line), the ones past
    ``max_items`` summed in a last record."""
    host = (hostname or socket.gethostname() or "-")[:255]
    stamp = timefmt.iso(now_ms) if now_ms is not None else None
    out = []
    for n in message.items[:max_items]:
        sev = 5 if n.get("transition") == "resolved" else SYSLOG_SEVERITY.get(n.get("severity"), 6)
        sd = " ".join(f'{k}="{_sd_value(n.get(k))}"' for k in ("key", "analyzer", "subject", "severity", "state",
                                                                  "transition"))
        msg = f"{headline(n)}: {n.get('description') or ''}".strip()
        out.append(_record(facility * 8 + sev, stamp, host, app_name, message.id, f"[{SD_ID} {sd}]", msg))
    if len(message.items) > max_items:
        out.append(_record(facility * 8 + 5, stamp, host, app_name, message.id, "-",
                           f"and {len(message.items) - max_items} more advisories in this burst"))
    return out


def _record(pri: int, stamp: str | None, host: str, app: str, msgid: str, sd: str, msg: str) -> bytes:
    import os
    import time

    if stamp is None:
        stamp = timefmt.iso(time.time_ns() // 1_000_000)
    host, app, msgid = (_PRINTABLE.sub("_", v) or "-" for v in (host, app[:48], msgid[:32]))
    return f"<{pri}>1 {stamp} {host} {app} {os.getpid()} {msgid} {sd} {msg}".encode("utf-8")


_PRINTABLE = re.compile(r"[^!-~]")  # RFC 5424 header fields: printable US-ASCII, no spaces
