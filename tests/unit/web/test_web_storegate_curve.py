"""StoreGate with CURVE keys: every one of its connections (pages, the quick path, the background
probe) reaches a store socket that admits only authorised keys; without the keys nothing answers."""
import threading

import msgpack
import pytest
import zmq

from flowmodel import curve
from flowmodel.client import StoreUnavailable
from flowmodel.config import load_config
from flowlens_web.storegate import StoreGate


def test_gate_speaks_curve_to_the_store(tmp_path):
    keys, authorised = tmp_path / "keys", tmp_path / "authorised"
    authorised.mkdir()
    curve.generate_keys(str(keys), "store")
    curve.generate_keys(str(keys), "web")
    (authorised / "web.key").write_bytes((keys / "web.key").read_bytes())
    ctx = zmq.Context()
    store_gate = curve.Gate(load_config(overrides={"security.server_key": str(keys / "store.key_secret"),
                                                   "security.authorized_keys": str(authorised)})).start(ctx)
    rep = ctx.socket(zmq.REP)
    rep.linger = 0
    store_gate.bind(rep, "tcp://127.0.0.1:*", curve.QUERY)
    endpoint = rep.last_endpoint.decode()
    stop = threading.Event()

    def answer():
        while not stop.is_set():
            if rep.poll(50):
                op = msgpack.unpackb(rep.recv(), raw=False)["op"]
                rep.send(msgpack.packb({"ok": True, "op": op}, use_bin_type=True))

    server = threading.Thread(target=answer, daemon=True)
    server.start()
    web_keys = curve.client_keys(load_config(overrides={"security.client_key": str(keys / "web.key_secret"),
                                                        "security.store_public_key": str(keys / "store.key")}))
    gate = StoreGate(endpoint, timeout_s=3.0, quick_timeout_s=1.0, keys=web_keys)
    plain = StoreGate(endpoint, timeout_s=0.3, quick_timeout_s=0.3)
    try:
        assert gate.ping(quick=False) and gate.ping(quick=True)
        with pytest.raises(StoreUnavailable):
            plain.ping(quick=False)
    finally:
        gate.close()
        plain.close()
        stop.set()
        server.join(2)
        rep.close()
        store_gate.stop()
        ctx.term()
