"""Many datagrams per system call: Linux ``recvmmsg(2)`` through ctypes.

``socket.recvfrom`` costs one system call, one 64 KiB allocation and one freshly built address
tuple per datagram. Here one call fills up to ``slots`` slots of an anonymous mapping (pages are
only made resident where datagrams land, so 256 slots of 64 KiB cost about 1 MiB for ordinary
1500-byte exports); each datagram is then copied out as ``bytes`` (the decoder may keep it, e.g.
records waiting for their template) and its source comes from a small cache of address tuples.

``make_receiver(sock)`` returns a ``MultiReceiver`` where recvmmsg is available, else a
``SimpleReceiver`` with the same interface. Both read datagrams of at most ``max_datagram`` bytes
(collector.buffer_size); a longer one is cut by the kernel (MSG_TRUNC): it is counted in
``truncated`` and handed on empty, so the decoder counts it against its exporter instead of decoding
half a packet.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import socket
import struct
import sys

import numpy as np

MAX_DATAGRAM = 65535
MSG_DONTWAIT = 0x40
MSG_TRUNC = 0x20
EAGAIN = 11
EINTR = 4
SOCKADDR_LEN = 128          # sizeof(struct sockaddr_storage)
ADDR_CACHE_MAX = 65536


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.POINTER(_IoVec)), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t), ("msg_flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


_NAMELEN_OFF = _MMsgHdr.msg_hdr.offset + _MsgHdr.msg_namelen.offset
_FLAGS_OFF = _MMsgHdr.msg_hdr.offset + _MsgHdr.msg_flags.offset
_LEN_OFF = _MMsgHdr.msg_len.offset
_STRIDE = ctypes.sizeof(_MMsgHdr)


def _libc_recvmmsg():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.recvmmsg
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


class SimpleReceiver:
    """recvfrom in a loop; the portable fallback."""

    method = "recvfrom"

    def __init__(self, sock: socket.socket, max_datagram: int = MAX_DATAGRAM):
        self.sock = sock
        self.max_datagram = max_datagram
        self.truncated = 0

    def receive(self, data_out: list, src_out: list, max_n: int) -> bool:
        """Append up to ``max_n`` datagrams; True when the socket may hold more."""
        recv = self.sock.recvmsg
        try:
            for _ in range(max_n):
                data, _anc, flags, addr = recv(self.max_datagram)
                if flags & MSG_TRUNC:
                    self.truncated += 1
                    data = b""
                data_out.append(data)
                src_out.append(addr)
        except BlockingIOError:
            return False
        return True

    def layout(self):
        """None: these datagrams are separate bytes objects; the decoder joins them."""
        return None

    def release(self) -> None:
        """The datagrams handed out are no longer needed (they are bytes: nothing to do)."""

    def close(self) -> None:
        pass


class MultiReceiver:
    """recvmmsg into ``slots`` preallocated slots; same interface as SimpleReceiver."""

    method = "recvmmsg"

    def __init__(self, sock: socket.socket, fn, slots: int = 256, max_datagram: int = MAX_DATAGRAM):
        self.sock = sock
        self.max_datagram = size = max_datagram
        self.fd = sock.fileno()
        self.family = sock.family
        self.slots = slots
        self.truncated = 0
        self.filled = 0  # slots holding datagrams handed out and not yet released
        self._fn = fn
        self._buf = mmap.mmap(-1, slots * size)    # anonymous: untouched pages are not resident
        self._view = memoryview(self._buf)
        self._names = (ctypes.c_char * (slots * SOCKADDR_LEN))()
        self._iov = (_IoVec * slots)()
        self._msgs = (_MMsgHdr * slots)()
        buf_addr = ctypes.addressof(ctypes.c_char.from_buffer(self._buf))
        names_addr = ctypes.addressof(self._names)
        for i in range(slots):
            self._iov[i].iov_base = buf_addr + i * size
            self._iov[i].iov_len = size
            h = self._msgs[i].msg_hdr
            h.msg_name = names_addr + i * SOCKADDR_LEN
            h.msg_namelen = SOCKADDR_LEN
            h.msg_iov = ctypes.pointer(self._iov[i])
            h.msg_iovlen = 1
        self._msgs_addr = ctypes.addressof(self._msgs)
        raw = np.frombuffer(self._msgs, dtype=np.uint8).reshape(slots, _STRIDE)
        self._namelen = raw[:, _NAMELEN_OFF:_NAMELEN_OFF + 4].view(np.uint32)[:, 0]
        self._len = raw[:, _LEN_OFF:_LEN_OFF + 4].view(np.uint32)[:, 0]
        self._flags = raw[:, _FLAGS_OFF:_FLAGS_OFF + 4].view(np.int32)[:, 0]
        self._names_np = np.frombuffer(self._names, dtype=np.uint8).reshape(slots, SOCKADDR_LEN)
        self._slot_starts_np = np.arange(slots, dtype=np.int64) * size
        self._slot_starts_np.setflags(write=False)  # handed out in layout(): nobody may change it
        self._addr_cache: dict[bytes, tuple] = {}

    def receive(self, data_out: list, src_out: list, max_n: int) -> bool:
        """Append up to ``max_n`` datagrams as memoryviews of the receive slots, after those handed
        out since the last ``release()`` (no copy here: the decoder copies a group once). They stay
        valid until ``release()``; the caller decodes them before calling it."""
        first = self.filled
        n_max = min(max_n, self.slots - first)
        if n_max <= 0:
            return False  # every slot holds an undecoded datagram: the caller must decode and release first
        self._namelen[first:first + n_max] = SOCKADDR_LEN  # the kernel overwrites it with the real length
        n = self._fn(self.fd, self._msgs_addr + first * _STRIDE, n_max, MSG_DONTWAIT, None)
        if n < 0:
            err = ctypes.get_errno()
            if err in (EAGAIN, EINTR):
                return err == EINTR
            raise OSError(err, "recvmmsg failed")
        if n == 0:
            return False
        end = first + n
        self.filled = end
        cut = (self._flags[first:end] & MSG_TRUNC) != 0
        if cut.any():  # longer than collector.buffer_size: counted, and handed on empty
            self.truncated += int(cut.sum())
            self._len[first:end][cut] = 0
        view = self._view
        starts = self._slot_starts_np[first:end]
        data_out.extend([view[a:b] for a, b in zip(starts.tolist(), (starts + self._len[first:end]).tolist())])
        key_len = 28 if self.family == socket.AF_INET6 else 16
        rows = self._names_np[first:end, :key_len]
        cache = self._addr_cache
        if n == 1 or (rows == rows[0]).all():  # the usual case under load: one busy exporter per call
            key = rows[0].tobytes()
            addr = cache.get(key) or self._decode_addr(key)
            src_out.extend([addr] * n)
        else:
            keys = rows.tobytes()
            for i in range(n):
                key = keys[i * key_len:(i + 1) * key_len]
                src_out.append(cache.get(key) or self._decode_addr(key))
        return n == n_max

    def release(self) -> None:
        """Every datagram handed out since the last release has been decoded: reuse the slots."""
        self.filled = 0

    def layout(self) -> tuple:
        """(buffer, offsets, lengths) of the datagrams handed out since the last release, for
        Decoder.decode: they sit in fixed 64 KiB slots, so the decoder reads them in place."""
        n = self.filled
        return (self._view, self._slot_starts_np[:n], self._len[:n].astype(np.int64))

    def _decode_addr(self, key: bytes) -> tuple:
        family = struct.unpack_from("=H", key, 0)[0]
        port = struct.unpack_from("!H", key, 2)[0]
        if family == socket.AF_INET:
            addr = (socket.inet_ntop(socket.AF_INET, key[4:8]), port)
        elif family == socket.AF_INET6:
            flowinfo, = struct.unpack_from("!I", key, 4)
            scope, = struct.unpack_from("=I", key, 24)
            addr = (socket.inet_ntop(socket.AF_INET6, key[8:24]), port, flowinfo, scope)
        else:
            addr = ("", 0)
        if len(self._addr_cache) >= ADDR_CACHE_MAX:
            self._addr_cache.clear()  # bound memory under a flood of spoofed sources
        self._addr_cache[key] = addr
        return addr

    def close(self) -> None:
        # ctypes arrays point into the mapping; drop the views before closing it
        self._view.release()
        del self._namelen, self._len, self._flags, self._names_np
        self._iov = self._msgs = None
        try:
            self._buf.close()
        except BufferError:
            pass  # a view is still exported; the mapping goes with the object


def make_receiver(sock: socket.socket, slots: int = 256, max_datagram: int = MAX_DATAGRAM):
    fn = _libc_recvmmsg()
    if fn is None:
        return SimpleReceiver(sock, max_datagram)
    return MultiReceiver(sock, fn, slots, max_datagram)
