"""The collector's UDP side, built for speed: one ``poll`` over the listeners (and a wake pipe for a
stop), then each readable socket is read with recvmmsg (recvmmsg.py) into a bounded group of
datagrams, handed to the decoder in one call once the group is full or a few milliseconds old.
"""
from __future__ import annotations

import logging
import os
import select
import time
from typing import Callable

from flowmodel.logs import RateLimitedLog

from .recvmmsg import make_receiver
from .udp import Listener, open_listener

log = logging.getLogger(__name__)

GROUP_MAX_WAIT_MS = 5              # a group waits this long for more datagrams before it is decoded
GROUPS_PER_WAKEUP = 16             # then timers and the stop flag are checked again
# When the last wakeup found only a few datagrams waiting, the loop is outpacing the exporters:
# it lets datagrams gather in the socket buffer for this long before reading, so each recvmmsg
# call (and its fixed Python cost) takes dozens of datagrams instead of a handful. Measured at
# 2 M v5 flows/s: 15 datagrams per call without it. Never applied when the socket had a backlog.
RECEIVE_COALESCE_S = 0.001
FEW_DATAGRAMS = 64


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Intake:
    """Listeners and datagram groups. ``decode(datagrams, sources, layout)`` takes a group (and counts
    it in ``counters["datagrams"]``); ``layout`` says where one socket's datagrams sit in its slots."""

    def __init__(self, cfg, decode: Callable[[list, list, object], None], counters: dict):
        self.cfg = cfg
        self.decode = decode
        self.counters = counters
        self.group_max = cfg["collector.receive_group"]  # datagrams received and decoded together at most
        self.listeners: list[Listener] = []
        self.receivers: dict = {}          # fd -> recvmmsg receiver
        self._by_fd: dict[int, Listener] = {}
        self._poller: select.poll | None = None
        self._group_data: list[bytes] = []
        self._group_src: list = []
        self._group_started_ms = 0
        self._group_fds: set[int] = set()  # sockets the current group's datagrams came from
        self._few_last_wakeup = False
        self._wake_r = self._wake_w = -1
        self._rlog = RateLimitedLog(log)

    # ---------------------------------------------------------------- lifecycle

    def open_listeners(self) -> None:
        """Bind the NetFlow port and the IPFIX and sFlow ports when they differ; OSError on a failed bind."""
        host = self.cfg["collector.bind_address"]
        rcvbuf = self.cfg["collector.socket_buffer"]
        ports = [self.cfg["collector.netflow_port"]]
        for other in (self.cfg["collector.ipfix_port"], self.cfg["collector.sflow_port"]):
            if other and other not in ports:
                ports.append(other)
        try:
            for port in ports:
                try:
                    self.listeners.append(open_listener(host, port, rcvbuf))
                except OSError as e:  # say which address and key: "Address already in use" alone names neither
                    keys = " = ".join(f"collector.{k}" for k in ("netflow_port", "ipfix_port", "sflow_port")
                                      if self.cfg[f"collector.{k}"] == port)
                    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                    raise OSError(e.errno, f"{where} ({keys}): {e.strerror}") from e
        except OSError:
            self.close_listeners()
            raise

    def close_listeners(self) -> None:
        for rx in self.receivers.values():
            rx.close()
        self.receivers = {}
        for listener in self.listeners:
            listener.close()
        self.listeners = []

    def open_poll(self) -> None:
        """The receivers, the poll over the listeners and the wake pipe."""
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poller = select.poll()
        for listener in self.listeners:
            fd = listener.sock.fileno()
            self._by_fd[fd] = listener
            self.receivers[fd] = make_receiver(listener.sock, self.group_max, self.cfg["collector.buffer_size"])
            self._poller.register(fd, select.POLLIN)
        self._poller.register(self._wake_r, select.POLLIN)

    def close_poll(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def wake(self) -> None:
        """Safe from a signal handler: make the poll return."""
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass  # pipe full: the loop is awake anyway

    @property
    def methods(self) -> str:
        return ",".join(sorted({rx.method for rx in self.receivers.values()}))

    @property
    def truncated(self) -> int:
        return sum(rx.truncated for rx in self.receivers.values())

    # ---------------------------------------------------------------- the loop's part

    def group_wait_ms(self, t: int) -> int | None:
        """How long the current group may still wait for more; None when there is none."""
        if not self._group_data:
            return None
        return self._group_started_ms + GROUP_MAX_WAIT_MS - t

    def poll_and_read(self, timeout_ms: int, stopping: Callable[[], bool]) -> None:
        events = self._poller.poll(max(0, timeout_ms))
        if events and self._few_last_wakeup and not stopping():
            time.sleep(RECEIVE_COALESCE_S)
        received_before = self.counters["datagrams"] + len(self._group_data)
        for fd, _mask in events:
            listener = self._by_fd.get(fd)
            if listener is None:
                self._clear_wake_pipe()
                continue
            for _ in range(GROUPS_PER_WAKEUP):
                if not self.receive(listener.sock) or stopping():
                    break
        if events:
            self._few_last_wakeup = self.counters["datagrams"] + len(self._group_data) - received_before < FEW_DATAGRAMS

    def decode_if_old(self, t: int) -> None:
        if self._group_data and t - self._group_started_ms >= GROUP_MAX_WAIT_MS:
            self.decode_group()

    def receive(self, sock) -> bool:
        """Read datagrams into the current group until it is full (then decode it) or the socket is
        empty. A group that is not full waits up to GROUP_MAX_WAIT_MS for more: decoding costs a
        fixed amount per call, so a few milliseconds of patience buy large groups under load.
        Returns True when the socket may hold more."""
        data_list, src_list = self._group_data, self._group_src
        if not data_list:
            self._group_started_ms = now_ms()
            self._group_fds = set()
        self._group_fds.add(sock.fileno())
        try:
            more = self.receivers[sock.fileno()].receive(data_list, src_list, self.group_max - len(data_list))
        except OSError as e:  # e.g. ECONNREFUSED echoes on some kernels; never fatal for a listener
            self._rlog.warning("recv", "receive error", error=str(e))
            more = False
        if len(data_list) >= self.group_max:
            self.decode_group()
        return more

    def decode_group(self) -> None:
        datagrams, sources = self._group_data, self._group_src
        self._group_data, self._group_src = [], []
        if datagrams:
            layout = None
            if len(self._group_fds) == 1:  # all from one socket: the decoder can read its slots in place
                layout = self.receivers[next(iter(self._group_fds))].layout()
            try:
                self.decode(datagrams, sources, layout)
            finally:
                del datagrams  # views of the receive slots: gone before the slots are reused
                for rx in self.receivers.values():
                    rx.release()

    def drain(self, max_s: float) -> int:
        """Read every datagram the kernel already holds (for at most ``max_s``), decoding as usual."""
        before = self.counters["datagrams"]
        deadline = time.monotonic() + max_s
        for listener in self.listeners:
            try:
                while time.monotonic() < deadline and self.receive(listener.sock):
                    pass
            except Exception:
                self.counters["loop_errors"] += 1
                log.exception("error while draining at stop")
        self.decode_group()
        return self.counters["datagrams"] - before

    def _clear_wake_pipe(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except (BlockingIOError, OSError):
            pass
