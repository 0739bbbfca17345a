"""Operators' notes on advisories: acknowledgements and silences, events the store keeps (topic
``note`` on its events socket, confirmed like advisories; the ``notes`` query op reads them back), so
they survive restarts and reach every reader. Each field is documented once here.

An acknowledgement is for one episode of one advisory (its key and first_seen): the advisory stays
open but is no longer notified; raised again after it resolved, it is a new episode and notifies.
A silence matches advisories by analyzer, subject pattern, address or network until it expires;
what it matches is not notified. A later note with the same kind and id replaces the earlier one
(a silence is lifted by sending it again with expires_at now).
"""
from __future__ import annotations

import fnmatch
import ipaddress
import re
from typing import Any

NOTE_KINDS = ("ack", "silence")

NOTE_FIELDS = {
    "kind": "ack or silence",
    "id": "ack: the advisory key; silence: its own id (a short random text)",
    "by": "who set it (an account name, or the local user for the CLI)",
    "comment": "why, in the operator's words ('10.0.5.20 is our Nessus scanner')",
    "created_at": "ms since epoch it was set",
    "expires_at": "ms since epoch it ends (silence; an ack has none: its episode ends it)",
    # ack only
    "episode": "first_seen of the advisory episode acknowledged",
    # silence only: every one given must match (at least one is required)
    "analyzer": "analyzer name, exactly",
    "subject": "shell-style pattern of the advisory subject ('10.0.5.*')",
    "address": "an address the advisory is about (in its subject or its flow filter)",
    "network": "a CIDR network an address the advisory is about lies in",
}
SILENCE_MATCHES = ("analyzer", "subject", "address", "network")


def check_note(note: dict) -> None:
    """ValueError, saying why, for a note the store does not keep."""
    kind = note.get("kind")
    if kind not in NOTE_KINDS:
        raise ValueError(f"note kind {kind!r} is not one of {', '.join(NOTE_KINDS)}")
    if not isinstance(note.get("id"), str) or not note["id"]:
        raise ValueError("note without an id")
    if not isinstance(note.get("created_at"), int):
        raise ValueError("note without created_at (ms)")
    if kind == "ack" and not isinstance(note.get("episode"), int):
        raise ValueError("acknowledgement without the episode (the advisory's first_seen)")
    if kind == "silence":
        if not any(note.get(k) for k in SILENCE_MATCHES):
            raise ValueError("silence without a match (analyzer, subject, address or network)")
        if not isinstance(note.get("expires_at"), int):
            raise ValueError("silence without expires_at (ms)")
        for k in ("address", "network"):
            if note.get(k):
                try:
                    ipaddress.ip_network(str(note[k]), strict=False)
                except ValueError:
                    raise ValueError(f"silence {k} {note[k]!r} is not an address or CIDR network") from None


_SPLIT = re.compile(r"[\s,;()]+")


def advisory_addresses(advisory: dict[str, Any]) -> list:
    """The addresses and networks an advisory is about: those in its subject ('10.0.5.20',
    '10.0.5.20 port 22', 'telnet:10.0.5.20', '10.0.5.0/24') and in its flow filter (src, dst, addr)."""
    texts = _SPLIT.split(str(advisory.get("subject") or ""))
    flt = advisory.get("filter")
    if isinstance(flt, dict):
        texts += [str(flt[k]) for k in ("src", "dst", "addr") if flt.get(k) not in (None, "")]
    out = []
    for t in texts:
        for candidate in (t, t.split(":", 1)[1] if t.count(":") == 1 else None):
            if not candidate:
                continue
            try:
                out.append(ipaddress.ip_network(candidate, strict=False))
                break
            except ValueError:
                continue
    return out


def within(found: list, network) -> bool:
    """Any of ``found`` (advisory_addresses) lies in ``network``."""
    return any(a.version == network.version and a.subnet_of(network) for a in found)


def silence_matches(silence: dict, advisory: dict[str, Any], now_ms: int) -> bool:
    """``silence`` is in force at ``now_ms`` and every match it gives holds for ``advisory``."""
    if not silence.get("expires_at") or now_ms >= int(silence["expires_at"]):
        return False
    if not any(silence.get(k) for k in SILENCE_MATCHES):
        return False
    if silence.get("analyzer") and advisory.get("analyzer") != silence["analyzer"]:
        return False
    if silence.get("subject") and not fnmatch.fnmatchcase(str(advisory.get("subject") or ""), str(silence["subject"])):
        return False
    for k in ("address", "network"):
        if silence.get(k) and not within(advisory_addresses(advisory), ipaddress.ip_network(str(silence[k]), strict=False)):
            return False
    return True


def acknowledged(ack: dict | None, advisory: dict[str, Any]) -> bool:
    """``ack`` covers this episode of ``advisory`` (same key, same first_seen)."""
    return bool(ack) and ack.get("id") == advisory.get("key") and ack.get("episode") == advisory.get("first_seen")


def new_silence(matches: dict, duration_s: float, by: str, comment: str, now_ms: int) -> dict:
    """A silence note from its matches (analyzer, subject, address, network; empty ones left out);
    ValueError (check_note's reason) when it is not one the store keeps."""
    import secrets

    from .protocol import WHEN_MAX_MS

    if not duration_s > 0:
        raise ValueError("a silence must last longer than zero")
    if not duration_s * 1000 <= WHEN_MAX_MS - now_ms:  # '9999...d' parses to inf, or past what a time holds
        raise ValueError(f"a silence of {duration_s / 86400:.3g} days ends too far in the future")
    note = {"kind": "silence", "id": secrets.token_hex(4), "by": by, "comment": comment, "created_at": now_ms,
            "expires_at": now_ms + int(duration_s * 1000)}
    note.update({k: str(v).strip() for k, v in matches.items() if k in SILENCE_MATCHES and v and str(v).strip()})
    check_note(note)
    return note


def send_note(cfg, note: dict, source_kind: str, timeout_s: float = 10.0) -> bool:
    """Send ``note`` to the store's events socket (CURVE with the keys of security.*) and wait until
    the store confirms it kept it; False when no confirmation came within ``timeout_s``. Blocking:
    the web calls it on a thread. The bus code (and numpy under it) is imported here, on first use."""
    from . import bus, curve
    from .eventbox import EventSender

    seq = bus.Sequencer(bus.default_source_id(source_kind))
    sender = EventSender(cfg["bus.events_endpoint"], seq.source, 10, 1.0, cfg["bus.events_high_water_mark"],
                         keys=curve.client_keys(cfg)).start()
    try:
        sender.send(bus.TOPIC_NOTE, note, lambda b: bus.encode_event(b, seq))
        return sender.flush(timeout_s)
    finally:
        sender.close()
