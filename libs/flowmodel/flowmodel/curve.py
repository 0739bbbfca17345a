"""ZeroMQ CURVE on the bus, the events socket and the query socket: the one place that sets up the
store's server sockets (``Gate.bind``) and every client socket (``connect_securely``).

With keys configured (``security.*``) every server socket speaks CURVE and pyzmq's ZAP handler
(zmq.auth) admits only the client public keys in ``security.authorized_keys`` (re-read when the
directory changes, so a new collector's key needs no restart). A refused handshake is counted
per peer address and socket: by the ZAP handler (an unknown client key: the peer's address is in
the ZAP request) and by a socket monitor (no CURVE at all, a wrong store key: the address is
looked up from the accepted connection, best effort). Without keys a server socket binds only to
loopback, unless ``security.allow_insecure_bind`` says the network around it is trusted.

Key files are the ones ``zmq.auth.create_certificates`` writes (``flowlens keys generate``):
``NAME.key`` holds the public key, ``NAME.key_secret`` both.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import zmq
import zmq.auth

from .config import ConfigError
from .logs import RateLimitedLog, fields

log = logging.getLogger(__name__)

# ZAP domains: which store socket a refused peer knocked on.
BUS_PUBLISH, BUS_SUBSCRIBE, QUERY, EVENTS = "bus-publish", "bus-subscribe", "query", "events"
MAX_PEERS = 256  # refused peer addresses tracked one by one; the rest are summed in OTHER
OTHER = "other"
HOW_TO = ("turn CURVE on: `flowlens keys generate --dir KEYS --name store` (and one pair per client), set "
          "security.server_key and security.authorized_keys for the store, security.client_key and "
          "security.store_public_key for each client (README: Collectors on other boxes); or set "
          "security.allow_insecure_bind: true where the network itself is private")


@dataclass(frozen=True)
class ClientKeys:
    public: bytes
    secret: bytes
    server: bytes  # the store's public key


def generate_keys(directory: str, name: str, force: bool = False) -> tuple[str, str]:
    """``zmq.auth.create_certificates`` into ``directory``: (NAME.key, NAME.key_secret), the secret mode 0600."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"key name {name!r}: use letters, digits, - and _ (e.g. store, collector-edge1)")
    public, secret = os.path.join(directory, f"{name}.key"), os.path.join(directory, f"{name}.key_secret")
    if not force and (os.path.exists(public) or os.path.exists(secret)):
        raise ValueError(f"{public} or {secret} exists; --force replaces the pair (clients holding the old public "
                         "key must get the new one)")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    old = os.umask(0o077)
    try:
        public, secret = zmq.auth.create_certificates(directory, name)
    finally:
        os.umask(old)
    os.chmod(secret, 0o600)
    os.chmod(public, 0o644)
    return str(public), str(secret)


def _load(path: str, key: str, want_secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{key}: cannot read the key file {path}: {e}") from e
    if want_secret and not secret:
        raise ConfigError(f"{key}: {path} holds no secret key (give the NAME.key_secret file, not NAME.key)")
    return public, secret


def client_keys(cfg) -> ClientKeys | None:
    """This client's key pair and the store's public key, or None when the config names none."""
    own, store = cfg.get("security.client_key", ""), cfg.get("security.store_public_key", "")
    if not own and not store:
        return None
    if not (own and store):
        missing = "security.store_public_key" if own else "security.client_key"
        raise ConfigError(f"{missing} is empty: a client needs both security.client_key (its NAME.key_secret) "
                          "and security.store_public_key (the store's NAME.key) to speak CURVE")
    public, secret = _load(own, "security.client_key", True)
    server, _ = _load(store, "security.store_public_key", False)
    return ClientKeys(public, secret, server)


def connect_securely(sock: zmq.Socket, endpoint: str, keys: ClientKeys | None) -> None:
    """Connect ``sock`` to a store socket, as a CURVE client when ``keys`` are given."""
    if keys is not None:
        sock.curve_secretkey = keys.secret
        sock.curve_publickey = keys.public
        sock.curve_serverkey = keys.server
    sock.connect(endpoint)


def is_loopback(endpoint: str) -> bool:
    """inproc:// and ipc:// endpoints, and tcp:// ones on 127.0.0.0/8, ::1 or localhost."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("inproc", "ipc"):
        return True
    host = rest.rsplit(":", 1)[0].strip("[]")
    if host.split(";")[-1] == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split(";")[-1]).is_loopback
    except ValueError:  # an interface name or a wildcard: not loopback
        return False


def _peer_of(fd: int) -> str | None:
    """The remote address of an accepted connection, from its file descriptor (dup'd; None once closed)."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            with socket.fromfd(fd, family, socket.SOCK_STREAM) as s:
                return s.getpeername()[0]
        except OSError:
            continue
    return None


def _drain(monitor: zmq.Socket, recv, limit: int = 1000) -> list[dict]:
    """The events waiting on a monitor socket (at most ``limit``); ``recv`` is zmq.utils.monitor's."""
    out = []
    while len(out) < limit:
        try:
            out.append(recv(monitor, zmq.NOBLOCK))
        except zmq.Again:
            break
    return out


def _zap_handler(context: zmq.Context, gate: "Gate"):
    """pyzmq's ZAP thread, remembering the address of the request it is answering. Its class is made
    here, with keys only: zmq.auth.thread (and zmq.utils.monitor, see Gate._watch) import asyncio and
    ssl, about 6 MiB of RSS in every service that would otherwise import them without using them."""
    from zmq.auth.thread import ThreadAuthenticator

    class _ZapHandler(ThreadAuthenticator):
        def __init__(self):
            super().__init__(context, log=logging.getLogger("flowmodel.curve.zap"))
            self.gate = gate
            self.peer = "?"

        async def handle_zap_message(self, msg: list[bytes]) -> None:
            self.peer = msg[3].decode("utf-8", "replace") if len(msg) > 3 else "?"
            await super().handle_zap_message(msg)

    return _ZapHandler()


class Gate:
    """The store's side: its key pair, the authorised client keys, the ZAP handler, and the refusals.
    Inert until ``start(ctx)``; ``stop()`` is safe twice and must run before the context ends."""

    def __init__(self, cfg):
        self.server_key_path = cfg.get("security.server_key", "")
        self.authorized_dir = cfg.get("security.authorized_keys", "")
        self.allow_insecure = cfg.get("security.allow_insecure_bind", False)
        self.enabled = bool(self.server_key_path)
        self.public = self.secret = None
        if self.enabled:
            if not self.authorized_dir:
                raise ConfigError("security.authorized_keys is empty: with security.server_key set the store needs "
                                  "the directory of authorised client public keys (NAME.key files)")
            if not os.path.isdir(self.authorized_dir):
                raise ConfigError(f"security.authorized_keys: {self.authorized_dir} is not a directory")
            self.public, self.secret = _load(self.server_key_path, "security.server_key", True)
        elif self.authorized_dir:
            raise ConfigError("security.authorized_keys is set but security.server_key is empty: give the store's "
                              "NAME.key_secret to turn CURVE on")
        self._keys: set[bytes] = set()
        self._keys_stamp: tuple | None = None
        self._zap: Any = None  # the ZAP handler thread (_zap_handler), with keys
        self._monitors: dict[zmq.Socket, str] = {}
        self._monitor_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.refused: dict[str, dict[str, Any]] = {}  # peer address -> count, socket, reason, first_at, last_at
        self.refused_total = 0
        self.admitted = 0
        self.handshake_failures: dict[str, dict[str, int]] = {}  # socket -> {protocol, no_detail}
        self._rl = RateLimitedLog(log)

    # ---------------------------------------------------------------- lifecycle

    def start(self, ctx: zmq.Context) -> "Gate":
        if self.enabled:
            self._reload_keys()
            self._zap = _zap_handler(ctx, self)
            self._zap.start()
            for domain in (BUS_PUBLISH, BUS_SUBSCRIBE, QUERY, EVENTS):  # pyzmq looks providers up by the exact domain
                self._zap.configure_curve_callback(domain, self)
            self._monitor_thread = threading.Thread(target=self._watch, name="curve-monitor", daemon=True)
            self._monitor_thread.start()
            log.info("curve on", extra=fields(authorized_keys=len(self._keys), directory=self.authorized_dir))
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._monitor_thread is not None:
            self._monitor_thread.join(5)
            self._monitor_thread = None
        if self._zap is not None:
            self._zap.stop()
            self._zap = None

    def bind(self, sock: zmq.Socket, endpoint: str, domain: str) -> None:
        """Bind a store socket: CURVE server with ZAP when keys are configured, else loopback only."""
        if self.enabled:
            sock.curve_server = True
            sock.curve_secretkey = self.secret
            sock.curve_publickey = self.public
            sock.zap_domain = domain.encode()
            mon = sock.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED
                                          | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                                          | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
            with self._lock:
                self._monitors[mon] = domain
        elif not is_loopback(endpoint) and not self.allow_insecure:
            raise ConfigError(f"refusing to bind {endpoint} ({domain}) beyond loopback without CURVE keys: "
                              f"anyone who reaches it could {'read' if domain == QUERY else 'write'} flows; " + HOW_TO)
        elif not is_loopback(endpoint):
            self._rl.warning(f"insecure {domain}", "binding beyond loopback without CURVE "
                             "(security.allow_insecure_bind)", endpoint=endpoint, socket=domain)
        sock.bind(endpoint)

    # ---------------------------------------------------------------- ZAP (the authenticator's thread)

    def callback(self, domain: str, z85_key: bytes) -> bool:
        """pyzmq's CURVE credentials provider: is this client key authorised?"""
        self._reload_keys()
        if z85_key in self._keys:
            self.admitted += 1
            return True
        peer = self._zap.peer if self._zap is not None else "?"
        self.note_refused(peer, domain, f"unknown client key {z85_key.decode('ascii', 'replace')}")
        return False

    def _reload_keys(self) -> None:
        try:
            st = os.stat(self.authorized_dir)
            names = sorted(os.listdir(self.authorized_dir))
        except OSError as e:
            self._rl.warning("keys", "cannot read security.authorized_keys", error=str(e))
            return
        stamp = (st.st_mtime_ns, tuple(names),
                 tuple(os.stat(os.path.join(self.authorized_dir, n)).st_mtime_ns for n in names if n.endswith(".key")))
        if stamp == self._keys_stamp:
            return
        try:
            self._keys = set(zmq.auth.load_certificates(self.authorized_dir))
        except (OSError, ValueError) as e:
            self._rl.warning("keys", "cannot load security.authorized_keys", error=str(e))
            return
        if self._keys_stamp is not None:
            log.info("authorised keys reloaded", extra=fields(authorized_keys=len(self._keys)))
        self._keys_stamp = stamp

    def note_refused(self, peer: str, domain: str, reason: str) -> None:
        now = int(time.time() * 1000)
        with self._lock:
            self.refused_total += 1
            key = peer if peer in self.refused or len(self.refused) < MAX_PEERS else OTHER
            row = self.refused.setdefault(key, {"address": key, "count": 0, "first_at": now, "sockets": {}})
            row["count"] += 1
            row["last_at"] = now
            row["reason"] = reason
            row["sockets"][domain] = row["sockets"].get(domain, 0) + 1
        self._rl.warning(f"refused {key}", "handshake refused: peer not authorised", peer=peer, socket=domain,
                         reason=reason, refused=row["count"])

    # ---------------------------------------------------------------- socket monitors (their own thread)

    def _watch(self) -> None:
        from zmq.utils.monitor import recv_monitor_message  # with keys only (see _zap_handler)

        fds: dict[str, dict[int, str | None]] = {}  # socket -> accepted fd -> peer address
        failed: dict[zmq.Socket, str] = {}  # a handshake failure waiting for its DISCONNECTED (the fd)
        poller = zmq.Poller()
        registered: set = set()
        try:
            while not self._stop.is_set():
                with self._lock:
                    mons = dict(self._monitors)
                for m in mons:
                    if m not in registered:
                        poller.register(m, zmq.POLLIN)
                        registered.add(m)
                for m, ev in ((m, ev) for m, _ in poller.poll(100) for ev in _drain(m, recv_monitor_message)):
                    domain = mons[m]
                    kind, value = ev["event"], ev["value"]
                    by_fd = fds.setdefault(domain, {})
                    if kind == zmq.EVENT_ACCEPTED:
                        if len(by_fd) > 4096:
                            by_fd.clear()
                        by_fd[value] = _peer_of(value)
                    elif kind in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                        which = "protocol" if kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL else "no_detail"
                        with self._lock:
                            counts = self.handshake_failures.setdefault(domain, {"protocol": 0, "no_detail": 0})
                            counts[which] += 1
                        # no_detail: the peer hung up during the handshake, which is what a client without
                        # CURVE does when it sees the store's mechanism (or a port probe); refused all the same
                        failed[m] = (f"CURVE handshake failed (protocol error {value}: no CURVE, or not this store's key)"
                                     if which == "protocol" else "hung up during the CURVE handshake (a client without CURVE, or a probe)")
                    elif kind == zmq.EVENT_DISCONNECTED:
                        peer = by_fd.pop(value, None)
                        reason = failed.pop(m, None)
                        if reason is not None:
                            self.note_refused(peer or f"unknown peer on {domain}", domain, reason)
        finally:
            for m in registered | set(self._monitors):
                m.close(linger=0)

    # ---------------------------------------------------------------- what the store reports

    def status(self) -> dict[str, Any]:
        with self._lock:
            peers = sorted((dict(r, sockets=dict(r["sockets"])) for r in self.refused.values()),
                           key=lambda r: -r["last_at"])
            return {"curve": self.enabled, "authorized_keys": len(self._keys), "admitted": self.admitted,
                    "refused_total": self.refused_total, "refused_peers": peers,
                    "handshake_failures": {k: dict(v) for k, v in self.handshake_failures.items()}}

    def recent_refusals(self, limit: int = 20) -> list[dict[str, Any]]:
        """The peers refused most recently (the store's health event carries them to the analyzer)."""
        return self.status()["refused_peers"][:limit]
