"""Which targets a notification goes to, by the rules of ``notify.rules`` (flowmodel.notifyconf):
an advisory goes to the targets of every rule whose matches all hold; with no rules, to every target."""
from __future__ import annotations

import fnmatch
import ipaddress
from typing import Any, Iterable

from flowmodel.notes import advisory_addresses, within


def matches(rule: dict, note: dict[str, Any]) -> bool:
    if rule["severity"] and note.get("severity") not in rule["severity"]:
        return False
    if rule["analyzer"] and note.get("analyzer") not in rule["analyzer"]:
        return False
    if rule["subject"] and not any(fnmatch.fnmatchcase(str(note.get("subject") or ""), p) for p in rule["subject"]):
        return False
    if rule["network"]:
        found = advisory_addresses(note)
        if not any(within(found, ipaddress.ip_network(n)) for n in rule["network"]):
            return False
    return True


def route(note: dict[str, Any], rules: list[dict], targets: Iterable[str]) -> list[str]:
    """Target names for ``note``, in the order of ``targets``."""
    names = list(targets)
    if not rules:
        return names
    wanted = set()
    for rule in rules:
        if matches(rule, note):
            wanted.update(rule["targets"])
    return [n for n in names if n in wanted]
