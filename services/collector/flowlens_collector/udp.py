"""UDP listener sockets: bind with a large receive buffer, report what the kernel granted, and
read the kernel's per-socket drop counter from /proc/net/udp{,6}."""
from __future__ import annotations

import logging
import os
import socket

from flowmodel.logs import fields

log = logging.getLogger(__name__)

# Linux-only; not exported by the socket module on every build.
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


class Listener:
    """One bound, non-blocking UDP socket and what we know about its receive buffer."""

    def __init__(self, sock: socket.socket, host: str, port: int, rcvbuf_requested: int, rcvbuf_granted: int):
        self.sock = sock
        self.host = host
        self.port = port
        self.rcvbuf_requested = rcvbuf_requested
        self.rcvbuf_granted = rcvbuf_granted
        self.inode = os.fstat(sock.fileno()).st_ino  # matches the inode column of /proc/net/udp

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def close(self) -> None:
        self.sock.close()


def open_listener(host: str, port: int, rcvbuf: int) -> Listener:
    """Bind ``host:port`` (``::`` also accepts IPv4) and ask for ``rcvbuf`` bytes of buffer.

    Linux caps SO_RCVBUF at net.core.rmem_max; SO_RCVBUFFORCE passes the cap when the process has
    CAP_NET_ADMIN (e.g. root in a container), so it is tried first. getsockopt reports twice the
    usable size (the kernel's bookkeeping overhead), so "capped" means granted < 2 x requested.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        forced = False
        if rcvbuf:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
                forced = True
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    bound_port = sock.getsockname()[1]
    listener = Listener(sock, host, bound_port, rcvbuf, granted)
    log.info("listening", extra=fields(address=listener.address, rcvbuf_requested=rcvbuf,
                                       rcvbuf_granted=granted, forced=forced))
    if rcvbuf and granted < 2 * rcvbuf:
        log.warning("receive buffer capped by the kernel; raise net.core.rmem_max to avoid drops under load",
                    extra=fields(address=listener.address, rcvbuf_requested=rcvbuf, rcvbuf_granted=granted,
                                 rmem_max=_read_int("/proc/sys/net/core/rmem_max")))
    return listener


def kernel_drops(inodes: set[int]) -> dict[int, int]:
    """inode -> the kernel's drop counter for those UDP sockets (0 for sockets not found)."""
    out = {i: 0 for i in inodes}
    for path in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(path, encoding="ascii") as f:
                next(f, None)  # header
                for line in f:
                    parts = line.split()
                    # sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
                    if len(parts) >= 13:
                        inode = int(parts[9])
                        if inode in out:
                            out[inode] = int(parts[12])
        except OSError:
            continue
    return out


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None
