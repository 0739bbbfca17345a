"""Delivering one message to one target: an HTTP POST, an SMTP session, syslog records over UDP or
TCP. Each raises DeliveryError saying why (the outbox counts it and tries again later); each is
bounded by the send timeout, and runs on the target's own thread, so a slow target holds up no other."""
from __future__ import annotations

import smtplib
import socket
import ssl
import urllib.error
import urllib.request

from flowmodel.notifyconf import SYSLOG_FACILITIES

from . import render
from .outbox import Message

USER_AGENT = "flowlens-notifier/0.1"


class DeliveryError(RuntimeError):
    """A delivery that failed; the message says why in plain words."""


def deliver(target: dict, message: Message, *, public_url: str, max_items: int, timeout_s: float) -> None:
    kind = target["type"]
    try:
        if kind == "webhook":
            _webhook(target, message, public_url, max_items, timeout_s)
        elif kind == "email":
            _email(target, message, public_url, max_items, timeout_s)
        elif kind == "syslog":
            _syslog(target, message, max_items, timeout_s)
        else:
            raise DeliveryError(f"unknown target type {kind!r}")
    except DeliveryError:
        raise
    except (OSError, smtplib.SMTPException, ssl.SSLError) as e:  # refused, timed out, TLS, SMTP replies
        raise DeliveryError(f"{kind} {_where(target)}: {e.__class__.__name__}: {e}") from e


def _where(target: dict) -> str:
    return target["url"] if target["type"] == "webhook" else f"{target['host']}:{target['port']}"


def _webhook(target: dict, message: Message, public_url: str, max_items: int, timeout_s: float) -> None:
    body = render.webhook_body(message, target["format"], public_url, max_items)
    req = urllib.request.Request(target["url"], data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": USER_AGENT, "X-FlowLens-Message": message.id,
        **target["headers"]})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            resp.read(65536)
    except urllib.error.HTTPError as e:  # 4xx/5xx: the receiver did not take it
        raise DeliveryError(f"webhook {target['url']}: HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        raise DeliveryError(f"webhook {target['url']}: {e.reason}") from e


def _email(target: dict, message: Message, public_url: str, max_items: int, timeout_s: float) -> None:
    send_email(target, render.email(message, target, public_url, max_items), timeout_s)


def send_email(target: dict, msg, timeout_s: float) -> None:
    """One SMTP session of the email ``target`` (TLS and login as it says) sending ``msg``; an
    OSError or SMTPException for the caller to translate (deliver does, so does the daily report)."""
    if target["ssl"]:
        smtp = smtplib.SMTP_SSL(target["host"], target["port"], timeout=timeout_s, context=ssl.create_default_context())
    else:
        smtp = smtplib.SMTP(target["host"], target["port"], timeout=timeout_s)
    with smtp:
        if target["starttls"]:
            smtp.starttls(context=ssl.create_default_context())
        if target["username"]:
            smtp.login(target["username"], target["password"])
        refused = smtp.send_message(msg)
        if refused:
            raise DeliveryError(f"email {_where(target)}: recipients refused: {', '.join(sorted(refused))}")


def _syslog(target: dict, message: Message, max_items: int, timeout_s: float) -> None:
    records = render.syslog_records(message, SYSLOG_FACILITIES[target["facility"]], target["app_name"], max_items)
    family = socket.AF_INET6 if ":" in target["host"] else socket.AF_INET
    if target["protocol"] == "udp":
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout_s)
            for r in records:
                s.sendto(r, (target["host"], target["port"]))
        return
    with socket.create_connection((target["host"], target["port"]), timeout=timeout_s) as s:
        # RFC 6587 octet counting: "<length> <record>", so a record may hold any byte
        s.sendall(b"".join(str(len(r)).encode() + b" " + r for r in records))
        s.shutdown(socket.SHUT_WR)
