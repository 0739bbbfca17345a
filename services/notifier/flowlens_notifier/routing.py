"""Which targets a notification goes to, by the rules of ``notify.rules`` (flowmodel.notifyconf):
an advisory goes to the targets of every rule whose matches all hold; with no rules, to every target."""
from __future__ import annotations

import fnmatch
import ipaddress
import re
from typing import Any, Iterable

_SPLIT = re.compile(r"[\s,;()]+")


def addresses(note: dict[str, Any]) -> list:
    """The addresses and networks an advisory is about: those in its subject ('10.0.5.20',
    '10.0.5.20 port 22', 'telnet:10.0.5.20', '10.0.5.0/24') and in its flow filter (src, dst, addr)."""
    texts = _SPLIT.split(str(note.get("subject") or ""))
    flt = note.get("filter")
    if isinstance(flt, dict):
        texts += [str(flt[k]) for k in ("src", "dst", "addr") if flt.get(k) not in (None, "")]
    out = []
    for t in texts:
        for candidate in (t, t.split(":", 1)[1] if ":" in t and "::" not in t and t.count(":") == 1 else None):
            if not candidate:
                continue
            try:
                out.append(ipaddress.ip_network(candidate, strict=False))
                break
            except ValueError:
                continue
    return out


def matches(rule: dict, note: dict[str, Any]) -> bool:
    if rule["severity"] and note.get("severity") not in rule["severity"]:
        return False
    if rule["analyzer"] and note.get("analyzer") not in rule["analyzer"]:
        return False
    if rule["subject"] and not any(fnmatch.fnmatchcase(str(note.get("subject") or ""), p) for p in rule["subject"]):
        return False
    if rule["network"]:
        nets = [ipaddress.ip_network(n) for n in rule["network"]]
        found = addresses(note)
        if not any(a.version == n.version and a.subnet_of(n) for a in found for n in nets):
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


def check_rules(rules: list[dict], targets: Iterable[str]) -> None:
    """ValueError naming a rule that sends to a target notify.targets does not have."""
    names = set(targets)
    for i, rule in enumerate(rules, 1):
        unknown = [t for t in rule["targets"] if t not in names]
        if unknown:
            raise ValueError(f"notify.rules: rule {i} sends to {unknown[0]!r}, which is not in notify.targets "
                             f"({', '.join(sorted(names)) or 'none'})")
