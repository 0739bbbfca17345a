"""``snmp.targets``, checked at start: the SNMP agents the poller asks for interface names, one per
exporter, with SNMP v2c (community) or v3 (user, auth and privacy protocol and keys) credentials.
``parse_targets`` returns plain dicts with every option filled in, or raises ValueError naming the
target and the option, so a bad entry stops the service with a message like the other keys.
"""
from __future__ import annotations

import ipaddress
from typing import Any

MAX_TARGETS = 10_000
VERSIONS = ("2c", "3")
# names accepted in the config -> the USM protocol they mean (the poller maps them to pysnmp's)
AUTH_PROTOCOLS = ("none", "md5", "sha", "sha224", "sha256", "sha384", "sha512")
PRIV_PROTOCOLS = ("none", "des", "3des", "aes", "aes192", "aes256")
KEY_MIN_CHARS = 8   # RFC 3414 11.2: pass phrases shorter than 8 characters are refused by agents
SECRET_OPTIONS = ("community", "auth_key", "priv_key")

_COMMON = ("exporter", "host", "port", "version")
_OPTIONS = {"2c": (*_COMMON, "community"),
            "3": (*_COMMON, "user", "auth_protocol", "auth_key", "priv_protocol", "priv_key", "context")}


def _text(v: Any, what: str) -> str:
    if not isinstance(v, (str, int)) or isinstance(v, bool):
        raise ValueError(f"{what} must be text, got {v!r}")
    return str(v)


def exporter_text(value: Any, what: str) -> str:
    """An exporter address as the flows' exporter column shows it (IPv4 dotted, IPv6 compressed)."""
    try:
        ip = ipaddress.ip_address(_text(value, what).strip())
    except ValueError:
        raise ValueError(f"{what} must be an IP address (the exporter's, as its flows carry it), got {value!r}") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def _version(v: Any, what: str) -> str:
    text = str(v).lower().lstrip("v") if isinstance(v, (str, int)) and not isinstance(v, bool) else None
    if text == "2":
        text = "2c"
    if text not in VERSIONS:
        raise ValueError(f"{what} must be 2c or 3, got {v!r}")
    return text


def _port(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 65535:
        raise ValueError(f"{what} must be a port 1-65535, got {v!r}")
    return v


def _choice(v: Any, choices: tuple[str, ...], what: str) -> str:
    text = _text(v, what).lower()
    if text not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}, got {v!r}")
    return text


def _key(v: Any, what: str) -> str:
    text = _text(v, what)
    if len(text) < KEY_MIN_CHARS:
        raise ValueError(f"{what} must be at least {KEY_MIN_CHARS} characters (agents refuse shorter pass phrases)")
    return text


def _target(t: Any, i: int) -> dict:
    if not isinstance(t, dict):
        raise ValueError(f"target {i} is not a map (exporter, community or user, ...)")
    if "exporter" not in t:
        raise ValueError(f"target {i} has no exporter (the address its flows come from)")
    exporter = exporter_text(t["exporter"], f"target {i}: exporter")
    where = f"target {exporter}"
    version = _version(t.get("version", "2c"), f"{where}: version")
    unknown = sorted(set(t) - set(_OPTIONS[version]))
    if unknown:
        raise ValueError(f"{where}: unknown option {unknown[0]!r} for SNMP v{version} "
                         f"(known: {', '.join(_OPTIONS[version])})")
    host = _text(t.get("host", exporter), f"{where}: host").strip()
    if not host:
        raise ValueError(f"{where}: host is empty")
    out = {"exporter": exporter, "host": host, "port": _port(t.get("port", 161), f"{where}: port"), "version": version}
    if version == "2c":
        if not t.get("community"):
            raise ValueError(f"{where}: SNMP v2c needs a community")
        out["community"] = _text(t["community"], f"{where}: community")
        return out
    user = _text(t.get("user", ""), f"{where}: user").strip()
    if not user:
        raise ValueError(f"{where}: SNMP v3 needs a user")
    auth_key = _key(t["auth_key"], f"{where}: auth_key") if t.get("auth_key") is not None else ""
    priv_key = _key(t["priv_key"], f"{where}: priv_key") if t.get("priv_key") is not None else ""
    auth = _choice(t.get("auth_protocol", "sha" if auth_key else "none"), AUTH_PROTOCOLS, f"{where}: auth_protocol")
    priv = _choice(t.get("priv_protocol", "aes" if priv_key else "none"), PRIV_PROTOCOLS, f"{where}: priv_protocol")
    if (auth == "none") != (not auth_key):
        raise ValueError(f"{where}: auth_protocol {auth} " + ("needs an auth_key" if auth != "none" else "takes no auth_key"))
    if (priv == "none") != (not priv_key):
        raise ValueError(f"{where}: priv_protocol {priv} " + ("needs a priv_key" if priv != "none" else "takes no priv_key"))
    if priv != "none" and auth == "none":
        raise ValueError(f"{where}: privacy (priv_protocol {priv}) needs authentication too (auth_protocol and auth_key)")
    out.update(user=user, auth_protocol=auth, auth_key=auth_key, priv_protocol=priv, priv_key=priv_key,
               context=_text(t.get("context", ""), f"{where}: context"))
    return out


def parse_targets(value: Any) -> list[dict]:
    """``snmp.targets``: a list of maps, one per exporter: exporter (its flows' address), host (where
    its agent answers; default the exporter), port (161), version (2c or 3), then community (v2c) or
    user, auth_protocol, auth_key, priv_protocol, priv_key, context (v3)."""
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise ValueError(f"expected a list of targets (maps with exporter and community or user), got {value!r}")
    if len(value) > MAX_TARGETS:
        raise ValueError(f"{len(value)} targets; at most {MAX_TARGETS}")
    out, seen = [], set()
    for i, t in enumerate(value, 1):
        target = _target(t, i)
        if target["exporter"] in seen:
            raise ValueError(f"exporter {target['exporter']} is given twice")
        seen.add(target["exporter"])
        out.append(target)
    return out


def redacted(target: dict) -> dict:
    """A target with its community and keys shown as '(set)', for logs, health events and About."""
    return {k: ("(set)" if k in SECRET_OPTIONS and v else v) for k, v in target.items()}
