"""The value types of config keys that say where something is: ZeroMQ endpoints, addresses to
bind or listen on, URLs, email addresses and paths. Like configtypes, each raises ValueError with the
reason (load_config adds the key's name); the path types look at the disk only to refuse what can
never work.
"""
from __future__ import annotations

import re
from typing import Any

from .configtypes import _port, _shown, _str, _str_list

# ---------------------------------------------------------------- addresses

_TCP_ENDPOINT_RE = re.compile(r"^tcp://([^\s/]+):(\d+)$")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")


def _endpoint(value: Any) -> str:
    """A ZeroMQ endpoint: tcp://HOST:PORT (HOST an address, a name, [IPv6] or * for a bind),
    ipc://PATH or inproc://NAME; refused here, a malformed one only failed at start with
    "Invalid argument" and no key."""
    text = _str(value).strip()
    hint = "an endpoint like tcp://127.0.0.1:5555 or ipc:///run/flowlens/query.sock"
    if text.startswith("tcp://"):
        m = _TCP_ENDPOINT_RE.match(text)
        if not m:
            raise ValueError(f"{_shown(text)} is not tcp://HOST:PORT ({hint})")
        _port(m.group(2))
        return text
    for scheme in ("ipc://", "inproc://"):
        if text.startswith(scheme):
            if not text[len(scheme):].strip():
                raise ValueError(f"{_shown(text)} names no {'path' if scheme == 'ipc://' else 'name'}")
            return text
    raise ValueError(f"expected {hint}, got {_shown(value)}")


def _host(value: Any) -> str:
    """An IP address or a host name to bind to; '999.1.1.1' or 'two words' only failed at start."""
    import ipaddress

    text = _str(value).strip()
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    if not _HOSTNAME_RE.match(text) or text.rsplit(".", 1)[-1].isdigit():
        raise ValueError(f"{_shown(value)} is not an IP address (0.0.0.0, ::, 127.0.0.1) or a host name")
    return text


def _listen(value: Any) -> str:
    """HOST:PORT to listen on ('[::]:8080', ':8080' = every IPv4 address); a port past 65535 was a
    traceback at start, 0 a port nobody can know."""
    text = _str(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{_shown(value)} is not HOST:PORT, e.g. 0.0.0.0:8080 or [::]:8080")
    _port(port)
    if host:
        _host(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
    return text



_PUBLIC_URL_RE = re.compile(r"^https?://[^\s/?#]+(/[^\s]*)?$", re.I)
_EMAIL_RE = re.compile(r"^[^\s@,<>]+@[^\s@,<>]+$")


def _public_url(value: Any) -> str:
    """Empty, or the http(s) address links in notifications start with ('javascript:...' or 'x' loaded)."""
    text = _str(value).strip()
    if text and not _PUBLIC_URL_RE.match(text):
        raise ValueError(f"{_shown(value)} is not an http:// or https:// address like https://flowlens.example.net")
    return text


def _emails(value: Any) -> list[str]:
    """A list of addresses NAME@DOMAIN: 'not an address' loaded and failed each morning at the SMTP server."""
    addresses = _str_list(value)
    for address in addresses:
        if not _EMAIL_RE.match(address.strip()):
            raise ValueError(f"{_shown(address)} is not an email address like noc@example.net")
    return addresses

# ---------------------------------------------------------------- paths
# Checked against the disk only for what is already there and can never work (a directory where a
# file goes, a file where a directory goes): a path not there yet is fine, the services create it,
# and `flowlens config check` may run on another machine.

def _file_path(value: Any) -> str:
    """A file's path, or empty (the feature off)."""
    import os

    text = _str(value)
    if text and os.path.isdir(text):
        raise ValueError(f"{_shown(text)} is a directory; name a file (in it, or elsewhere)")
    parent = os.path.dirname(text)
    while parent and not os.path.exists(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)  # the nearest ancestor already there
    if text and parent and os.path.exists(parent) and not os.path.isdir(parent):
        raise ValueError(f"{_shown(parent)} is a file, so {_shown(text)} cannot be made under it")
    return text


def _required_file_path(value: Any) -> str:
    """A file's path that cannot be empty (SQLite took '' for a private temporary database)."""
    text = _file_path(value)
    if not text.strip():
        raise ValueError("is empty: name the file")
    return text


def _dir_path(value: Any) -> str:
    """A directory's path, or empty (the feature off)."""
    import os

    text = _str(value)
    if text and os.path.exists(text) and not os.path.isdir(text):
        raise ValueError(f"{_shown(text)} is a file, not a directory")
    return text
