"""StoreGate's quick path (/healthz, /metrics): a remembered failure is re-raised for a moment, but
re-raising it does not renew it, so the store is asked again once the moment is over. A real ZeroMQ
REP socket on loopback stands in for the store; only the gate's clock is driven by the test."""
import threading

import msgpack
import pytest
import zmq

from flowmodel.client import StoreUnavailable
from flowlens_web.storegate import StoreGate
from support.services import free_port


def test_a_remembered_quick_failure_expires_even_while_it_is_re_raised():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context.instance()
    rep = ctx.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    rep.bind(endpoint)
    now = [1000.0]
    gate = StoreGate(endpoint, timeout_s=2.0, quick_timeout_s=0.3, clock=lambda: now[0])
    stop = threading.Event()
    asked = []
    server = None

    def answer():
        while not stop.is_set():
            if rep.poll(50):
                asked.append(msgpack.unpackb(rep.recv(), raw=False)["op"])
                rep.send(msgpack.packb({"ok": True, "version": "test"}, use_bin_type=True))

    try:
        with pytest.raises(StoreUnavailable):
            gate.ping(quick=True)  # nobody answers yet: remembered for quick_timeout_s
        server = threading.Thread(target=answer, daemon=True)
        server.start()
        now[0] += 0.2
        with pytest.raises(StoreUnavailable):
            gate.ping(quick=True)  # within the moment: re-raised without asking
        now[0] += 0.2  # 0.4 s after the failure, 0.2 s after the re-raise
        assert gate.ping(quick=True) is True  # asked again (the old code had renewed the failure)
        assert asked.count("ping") >= 1
    finally:
        stop.set()
        if server is not None:
            server.join(5)
        gate.close()
        rep.close(linger=0)
