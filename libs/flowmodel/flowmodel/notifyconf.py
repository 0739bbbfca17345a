"""The ``notify:`` section's two structured keys, checked at start: ``notify.targets`` (where
notifications go: webhook, email, syslog) and ``notify.rules`` (which advisories go to which
targets). Each check returns plain dicts with every option filled in, or raises ValueError naming
the target or rule and the option, so a bad entry stops the service with a message like the others.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from .events import SEVERITIES

TARGET_TYPES = ("webhook", "email", "syslog")
WEBHOOK_FORMATS = ("json", "text")   # json: the advisory fields and a text line; text: {"text": ...} only
SYSLOG_PROTOCOLS = ("udp", "tcp")
SYSLOG_FACILITIES = {"kern": 0, "user": 1, "daemon": 3, "auth": 4, "syslog": 5, "authpriv": 10,
                     **{f"local{i}": 16 + i for i in range(8)}}

# option -> (default, parser) per target type; "name" and "type" are common to all
_URL = re.compile(r"^https?://[^\s/]+", re.I)


def _text(v: Any, what: str) -> str:
    if not isinstance(v, (str, int)) or isinstance(v, bool):
        raise ValueError(f"{what} must be text, got {v!r}")
    return str(v)


def _flag(v: Any, what: str) -> bool:
    if isinstance(v, bool):
        return v
    raise ValueError(f"{what} must be true or false, got {v!r}")


def _port(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 65535:
        raise ValueError(f"{what} must be a port 1-65535, got {v!r}")
    return v


def _texts(v: Any, what: str) -> list[str]:
    if isinstance(v, str):
        v = [x.strip() for x in v.split(",") if x.strip()]
    if not isinstance(v, list) or not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in v):
        raise ValueError(f"{what} must be a list of text, got {v!r}")
    return [str(x) for x in v]


def parse_targets(value: Any) -> list[dict]:
    """``notify.targets``: a list of maps, each with a unique ``name`` and a ``type``:
    webhook (url, format json|text, headers), email (host, port, starttls, ssl, username, password,
    from, to), syslog (host, port, protocol udp|tcp, facility, app_name)."""
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise ValueError(f"expected a list of targets (maps with name and type), got {value!r}")
    out, names = [], set()
    for i, t in enumerate(value, 1):
        if not isinstance(t, dict):
            raise ValueError(f"target {i} is not a map (name, type, ...)")
        name = _text(t.get("name", ""), f"target {i}: name").strip()
        if not name:
            raise ValueError(f"target {i} has no name")
        if name in names:
            raise ValueError(f"target name {name!r} is given twice")
        names.add(name)
        kind = t.get("type")
        if kind not in TARGET_TYPES:
            raise ValueError(f"target {name!r}: type must be one of {', '.join(TARGET_TYPES)}, got {kind!r}")
        where = f"target {name!r}"
        known = {"name", "type", *_OPTIONS[kind]}
        unknown = sorted(set(t) - known)
        if unknown:
            raise ValueError(f"{where}: unknown option {unknown[0]!r} for a {kind} target "
                             f"(known: {', '.join(sorted(known))})")
        parsed = {"name": name, "type": kind}
        for opt, (default, parse) in _OPTIONS[kind].items():
            parsed[opt] = parse(t[opt], f"{where}: {opt}") if opt in t else default
        _check_target(parsed, where)
        out.append(parsed)
    return out


def _headers(v: Any, what: str) -> dict:
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, (str, int)) for k, x in v.items()):
        raise ValueError(f"{what} must be a map of header names to text")
    return {k: str(x) for k, x in v.items()}


def _choice(choices):
    def parse(v: Any, what: str) -> str:
        v = _text(v, what).lower()
        if v not in choices:
            raise ValueError(f"{what} must be one of {', '.join(choices)}, got {v!r}")
        return v
    return parse


_OPTIONS: dict[str, dict[str, tuple[Any, Any]]] = {
    "webhook": {"url": ("", _text), "format": ("json", _choice(WEBHOOK_FORMATS)), "headers": ({}, _headers)},
    "email": {"host": ("", _text), "port": (25, _port), "starttls": (False, _flag), "ssl": (False, _flag),
              "username": ("", _text), "password": ("", _text), "from": ("", _text), "to": ([], _texts)},
    "syslog": {"host": ("", _text), "port": (514, _port), "protocol": ("udp", _choice(SYSLOG_PROTOCOLS)),
               "facility": ("local0", _choice(tuple(SYSLOG_FACILITIES))), "app_name": ("flowlens", _text)},
}


def _check_target(t: dict, where: str) -> None:
    if t["type"] == "webhook" and not _URL.match(t["url"]):
        raise ValueError(f"{where}: url must be an http:// or https:// address, got {t['url']!r}")
    if t["type"] in ("email", "syslog") and not t["host"]:
        raise ValueError(f"{where}: host is required")
    if t["type"] == "email":
        if not t["from"] or not t["to"]:
            raise ValueError(f"{where}: from and to (a list of addresses) are required")
        if t["starttls"] and t["ssl"]:
            raise ValueError(f"{where}: starttls and ssl exclude each other (ssl: TLS from the start, port 465)")
        if t["password"] and not t["username"]:
            raise ValueError(f"{where}: a password needs a username")


def parse_rules(value: Any) -> list[dict]:
    """``notify.rules``: a list of maps, each with ``targets`` (names) and optional matches, all of
    which must hold: ``severity`` (one, meaning that severity or more severe, or a list of exact
    ones), ``analyzer`` (list), ``subject`` (list of shell-style patterns, e.g. '10.0.5.*'),
    ``network`` (list of CIDR networks the subject's address lies in). Target names are checked
    against notify.targets by the notifier at start."""
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise ValueError(f"expected a list of rules (maps with targets and matches), got {value!r}")
    out = []
    for i, r in enumerate(value, 1):
        where = f"rule {i}"
        if not isinstance(r, dict):
            raise ValueError(f"{where} is not a map (targets, severity, analyzer, subject, network)")
        unknown = sorted(set(r) - {"targets", "severity", "analyzer", "subject", "network"})
        if unknown:
            raise ValueError(f"{where}: unknown option {unknown[0]!r} (known: targets, severity, analyzer, subject, network)")
        targets = _texts(r.get("targets", []), f"{where}: targets")
        if not targets:
            raise ValueError(f"{where}: targets (a list of target names) is required")
        sev = r.get("severity")
        if sev in (None, ""):
            severities = []
        elif isinstance(sev, str) and "," not in sev:
            if sev.upper() not in SEVERITIES:
                raise ValueError(f"{where}: severity must be one of {', '.join(SEVERITIES)}, got {sev!r}")
            severities = list(SEVERITIES[:SEVERITIES.index(sev.upper()) + 1])  # this one or more severe
        else:
            severities = [s.upper() for s in _texts(sev, f"{where}: severity")]
            bad = [s for s in severities if s not in SEVERITIES]
            if bad:
                raise ValueError(f"{where}: severity {bad[0]!r} is not one of {', '.join(SEVERITIES)}")
        networks = []
        for n in _texts(r.get("network", []), f"{where}: network"):
            try:
                networks.append(str(ipaddress.ip_network(n, strict=False)))
            except ValueError:
                raise ValueError(f"{where}: network {n!r} is not a CIDR network") from None
        out.append({"targets": targets, "severity": severities,
                    "analyzer": _texts(r.get("analyzer", []), f"{where}: analyzer"),
                    "subject": _texts(r.get("subject", []), f"{where}: subject"), "network": networks})
    return out


def check_references(values) -> None:
    """Names one key gives that another must hold, checked once both are parsed, so that `flowlens
    config check` refuses what the notifier would stop on: a rule's target not in notify.targets,
    a report.target that is not one of their email targets. Without targets there is no notifier,
    and a collector box may share the file: nothing to check."""
    targets = {t["name"]: t for t in values["notify.targets"]}
    if not targets:
        return
    for i, rule in enumerate(values["notify.rules"], 1):
        unknown = [name for name in rule["targets"] if name not in targets]
        if unknown:
            raise ValueError(f"notify.rules: rule {i} sends to {unknown[0]!r}, which is not in notify.targets "
                             f"({', '.join(sorted(targets))})")
    name = values["report.target"]
    if values["report.email_to"] and name:
        if name not in targets:
            raise ValueError(f"report.target {name!r} is not in notify.targets ({', '.join(sorted(targets))})")
        if targets[name]["type"] != "email":
            raise ValueError(f"report.target {name!r} is a {targets[name]['type']} target; "
                             "the report needs an email one")
    elif values["report.email_to"] and not any(t["type"] == "email" for t in targets.values()):
        raise ValueError("report.email_to is set but notify.targets has no email target to send the report through")
