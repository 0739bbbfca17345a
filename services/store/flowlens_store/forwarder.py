"""The bus (flowmodel.bus): an XSUB socket publishers connect to and an XPUB socket subscribers
connect to, joined by ``zmq.proxy_steerable`` on a thread of its own, hosted by the store process.
Each also has an inproc address for the store itself (its acks in, its own subscriber out, inside
CURVE); every socket that reads from other processes has a message size bound (MAXMSGSIZE).
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

import zmq

from flowmodel import curve
from flowmodel.bus import SUBSCRIPTION_MAX_BYTES, max_message_bytes, queue_limit

log = logging.getLogger(__name__)


class Forwarder:
    """Inert until ``start``; ``publish_inproc`` and ``subscribe_inproc`` are the store's own ends."""

    def __init__(self, cfg, tag: str):
        self.cfg = cfg
        self.publish_inproc = f"inproc://store-bus-{tag}"           # the store's own acks enter the bus here
        self.subscribe_inproc = f"inproc://store-subscribers-{tag}"  # the store's own subscriber
        self._control_inproc = f"inproc://store-proxy-{tag}"
        self._ctl: zmq.Socket | None = None
        self.thread: threading.Thread | None = None

    def start(self, make_socket: Callable[[int], zmq.Socket], gate: curve.Gate) -> None:
        """Bind both ends (``make_socket`` makes sockets the service closes at its end) and start the proxy."""
        cfg = self.cfg
        hwm = queue_limit(cfg)  # these sockets carry flow batches: bounded in bytes, not only messages
        xsub = make_socket(zmq.XSUB)
        xsub.setsockopt(zmq.RCVHWM, hwm)
        xsub.setsockopt(zmq.MAXMSGSIZE, max_message_bytes(cfg))
        gate.bind(xsub, cfg["storage.bus_xsub_bind"], curve.BUS_PUBLISH)
        xsub.bind(self.publish_inproc)
        xpub = make_socket(zmq.XPUB)
        xpub.setsockopt(zmq.SNDHWM, hwm)
        xpub.setsockopt(zmq.MAXMSGSIZE, SUBSCRIPTION_MAX_BYTES)
        gate.bind(xpub, cfg["storage.bus_xpub_bind"], curve.BUS_SUBSCRIBE)
        xpub.bind(self.subscribe_inproc)
        self._ctl = make_socket(zmq.PAIR)
        self._ctl.bind(self._control_inproc)
        ctl_peer = make_socket(zmq.PAIR)
        ctl_peer.connect(self._control_inproc)
        self.thread = threading.Thread(target=self._proxy, args=(xsub, xpub, ctl_peer), name="bus-proxy", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop the proxy (its thread closes the bus sockets) and wait for it."""
        if self._ctl is None:
            return
        self._ctl.send(b"TERMINATE")
        if self.thread is not None:
            self.thread.join(5)
        self._ctl.close(linger=0)
        self._ctl = None

    @property
    def alive(self) -> list[str]:
        return [self.thread.name] if self.thread is not None and self.thread.is_alive() else []

    @staticmethod
    def _proxy(xsub: zmq.Socket, xpub: zmq.Socket, ctl_peer: zmq.Socket) -> None:
        try:
            zmq.proxy_steerable(xsub, xpub, None, ctl_peer)
        except zmq.ContextTerminated:
            pass
        except Exception:
            log.exception("bus proxy failed")
        finally:
            for s in (xsub, xpub, ctl_peer):
                s.close(linger=0)
