"""The web's accounts file (``web.users_file``): one account a line, ``name:role:hash``, the hash
being the standard library's scrypt (hashlib.scrypt, RFC 7914) with a random salt. Written by
``flowlens users add``, read by the web; no crypto of our own, only the library's KDF and a
constant-time compare.

    alice:operator:scrypt$16384$8$1$<salt, base64>$<key, base64>
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

ROLES = ("viewer", "operator")           # each role may do what the ones before it may
ROLE_RANK = {r: i for i, r in enumerate(ROLES)}
NAME_RE = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
MAX_PASSWORD_BYTES = 1024                # longer input is refused before it reaches the KDF
MAX_FILE_BYTES = 1 << 20                 # an accounts file larger than this is refused (a bound on what is read)
# scrypt cost: N=2^14, r=8, p=1 uses 16 MiB and ~50 ms on one core (the RFC's interactive-login figure)
SCRYPT_N, SCRYPT_R, SCRYPT_P, KEY_BYTES, SALT_BYTES = 1 << 14, 8, 1, 32, 16
MAX_SCRYPT_N = 1 << 20                   # a file naming a larger cost is refused (memory bound)


class AccountsError(ValueError):
    """A bad accounts file, name, role or password; the message says which and why."""


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    password_hash: str

    @property
    def fingerprint(self) -> str:
        """Changes whenever the password (or its salt) changes: sessions carry it, so a new password
        ends the sessions opened with the old one."""
        return hashlib.sha256(self.password_hash.encode()).hexdigest()[:16]

    def may(self, role: str) -> bool:
        """True when this account's role includes ``role`` (an operator may do what a viewer may)."""
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise AccountsError(f"account name {name!r} is not 1-64 letters, digits or . _ @ -")
    return name


def check_role(role: str) -> str:
    if role not in ROLE_RANK:
        raise AccountsError(f"role {role!r} is not one of {', '.join(ROLES)}")
    return role


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def hash_password(password: str, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    raw = password.encode("utf-8")
    if not raw:
        raise AccountsError("the password is empty")
    if len(raw) > MAX_PASSWORD_BYTES:
        raise AccountsError(f"the password is longer than {MAX_PASSWORD_BYTES} bytes")
    salt = secrets.token_bytes(SALT_BYTES)
    key = hashlib.scrypt(raw, salt=salt, n=n, r=r, p=p, dklen=KEY_BYTES, maxmem=_maxmem(n, r))
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(key)}"


def _maxmem(n: int, r: int) -> int:
    return 128 * r * (n + 2) + (1 << 20)


def _parse_hash(text: str) -> tuple[int, int, int, bytes, bytes]:
    parts = text.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise AccountsError("the password hash is not scrypt$N$r$p$salt$key")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)
    except ValueError as e:
        raise AccountsError(f"the password hash is malformed: {e}") from None
    if not (2 <= n <= MAX_SCRYPT_N and n & (n - 1) == 0 and 1 <= r <= 64 and 1 <= p <= 16 and salt and key):
        raise AccountsError(f"the password hash's scrypt cost N={n} r={r} p={p} is out of range")
    return n, r, p, salt, key


def verify_password(password: str, password_hash: str) -> bool:
    raw = password.encode("utf-8", "replace")
    if not raw or len(raw) > MAX_PASSWORD_BYTES:
        return False
    n, r, p, salt, key = _parse_hash(password_hash)
    got = hashlib.scrypt(raw, salt=salt, n=n, r=r, p=p, dklen=len(key), maxmem=_maxmem(n, r))
    return hmac.compare_digest(got, key)


def parse(text: str, source: str = "accounts file") -> dict[str, Account]:
    """Accounts by name; blank lines and ``#`` comments are skipped; any bad line is an error."""
    accounts: dict[str, Account] = {}
    for i, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":", 2)
        if len(parts) != 3:
            raise AccountsError(f"{source} line {i}: not name:role:hash")
        name, role, password_hash = parts
        try:
            check_name(name)
            check_role(role)
            _parse_hash(password_hash)
        except AccountsError as e:
            raise AccountsError(f"{source} line {i}: {e}") from None
        if name in accounts:
            raise AccountsError(f"{source} line {i}: account {name!r} appears twice")
        accounts[name] = Account(name, role, password_hash)
    return accounts


def load(path: str | Path) -> dict[str, Account]:
    p = Path(path)
    try:
        st = p.stat()
        if not stat.S_ISREG(st.st_mode):  # /dev/null read as no accounts, then save() renamed over it
            raise AccountsError(f"{p}: not a regular file")
        size = st.st_size
        if size > MAX_FILE_BYTES:
            raise AccountsError(f"{p}: {size} bytes, more than an accounts file may hold ({MAX_FILE_BYTES})")
        return parse(p.read_text(encoding="utf-8"), str(p))
    except OSError as e:
        raise AccountsError(f"{p}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:  # a binary file named by mistake
        raise AccountsError(f"{p}: not an accounts file (not UTF-8 text at byte {e.start})") from None


def render(accounts: dict[str, Account]) -> str:
    head = "# FlowLens web accounts: name:role:scrypt hash (written by `flowlens users add`)\n"
    return head + "".join(f"{a.name}:{a.role}:{a.password_hash}\n" for a in accounts.values())


def save(path: str | Path, accounts: dict[str, Account]) -> None:
    """Replace the file at once (write beside it, then rename), readable by its owner only."""
    p = Path(path)
    if (p.exists() or p.is_symlink()) and not p.is_file():  # never rename over a device, a directory, ...
        raise AccountsError(f"{p}: not a regular file")
    try:
        if p.parent and not p.parent.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as e:
        raise AccountsError(f"{p}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(render(accounts))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise AccountsError(f"{p}: {e.strerror or e}") from None
        raise


def add(path: str | Path, name: str, role: str, password: str) -> bool:
    """Add the account, or replace its role and password; True when it was new."""
    check_name(name)
    check_role(role)
    p = Path(path)
    accounts = load(p) if p.exists() else {}
    new = name not in accounts
    accounts[name] = Account(name, role, hash_password(password))
    save(p, accounts)
    return new


def remove(path: str | Path, name: str) -> None:
    accounts = load(path)
    if name not in accounts:
        raise AccountsError(f"{path}: there is no account {name!r}")
    del accounts[name]
    save(path, accounts)
