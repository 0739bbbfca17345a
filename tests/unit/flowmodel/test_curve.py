"""flowmodel.curve through real ZeroMQ sockets on 127.0.0.1: an authorised client gets through, an
unknown key, a client without CURVE and one with the wrong store key are refused and counted by
address, a key added to the directory is admitted without a restart, and without keys a store
socket binds to loopback only."""
import time

import pytest
import zmq

from flowmodel import curve
from flowmodel.config import ConfigError, load_config
from flowmodel.curve import Gate, client_keys, connect_securely, generate_keys, is_loopback


def test_loopback_endpoints():
    for ep in ("tcp://127.0.0.1:5555", "tcp://127.9.0.1:1", "tcp://[::1]:5555", "tcp://localhost:5555",
               "inproc://x", "ipc:///tmp/x"):
        assert is_loopback(ep), ep
    for ep in ("tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://198.18.0.1:5559", "tcp://[::]:5555", "tcp://eth0:5555"):
        assert not is_loopback(ep), ep


def test_no_keys_binds_loopback_only():
    gate = Gate(load_config())
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.ROUTER)
        sock.linger = 0
        with pytest.raises(ConfigError, match="security.server_key") as e:
            gate.bind(sock, "tcp://0.0.0.0:0", curve.QUERY)
        assert "allow_insecure_bind" in str(e.value)
        gate.bind(sock, "tcp://127.0.0.1:*", curve.QUERY)
        insecure = Gate(load_config(overrides={"security.allow_insecure_bind": True}))
        other = ctx.socket(zmq.ROUTER)
        other.linger = 0
        insecure.bind(other, "tcp://0.0.0.0:*", curve.QUERY)
        sock.close()
        other.close()
    finally:
        ctx.term()


def test_half_configured_keys_are_config_errors(tmp_path):
    generate_keys(str(tmp_path), "store")
    with pytest.raises(ConfigError, match="security.authorized_keys"):
        Gate(load_config(overrides={"security.server_key": str(tmp_path / "store.key_secret")}))
    with pytest.raises(ConfigError, match="no secret key"):
        Gate(load_config(overrides={"security.server_key": str(tmp_path / "store.key"),
                                    "security.authorized_keys": str(tmp_path)}))
    with pytest.raises(ConfigError, match="security.store_public_key"):
        client_keys(load_config(overrides={"security.client_key": str(tmp_path / "store.key_secret")}))


def _roundtrip(ctx, endpoint, keys, timeout_ms=1500, plain_server_key=None) -> bytes | None:
    s = ctx.socket(zmq.REQ)
    s.linger = 0
    if plain_server_key is not None:  # CURVE, but the server key of another store
        s.curve_secretkey, s.curve_publickey = keys.secret, keys.public
        s.curve_serverkey = plain_server_key
        s.connect(endpoint)
    else:
        connect_securely(s, endpoint, keys)
    try:
        s.send(b"ping")
        return s.recv() if s.poll(timeout_ms) else None
    finally:
        s.close()


def _wait(cond, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


def test_curve_admits_authorised_and_counts_refused(tmp_path):
    keys, authorised = tmp_path / "keys", tmp_path / "authorised"
    authorised.mkdir()
    generate_keys(str(keys), "store")
    generate_keys(str(keys), "good")
    generate_keys(str(keys), "late")
    generate_keys(str(keys), "intruder")
    generate_keys(str(keys), "other-store")
    (authorised / "good.key").write_bytes((keys / "good.key").read_bytes())
    cfg = load_config(overrides={"security.server_key": str(keys / "store.key_secret"),
                                 "security.authorized_keys": str(authorised)})

    def client(name):
        return client_keys(load_config(overrides={"security.client_key": str(keys / f"{name}.key_secret"),
                                                  "security.store_public_key": str(keys / "store.key")}))

    ctx = zmq.Context()
    gate = Gate(cfg).start(ctx)
    server = ctx.socket(zmq.REP)
    server.linger = 0
    try:
        gate.bind(server, "tcp://127.0.0.1:*", curve.QUERY)
        endpoint = server.last_endpoint.decode()
        import threading
        stop = threading.Event()

        def serve():
            while not stop.is_set():
                if server.poll(50):
                    server.send(b"pong:" + server.recv())
        t = threading.Thread(target=serve, daemon=True)
        t.start()

        assert _roundtrip(ctx, endpoint, client("good")) == b"pong:ping"
        assert _roundtrip(ctx, endpoint, client("intruder"), timeout_ms=500) is None
        assert _wait(lambda: gate.status()["refused_total"] >= 1)
        peers = {p["address"]: p for p in gate.status()["refused_peers"]}
        assert "127.0.0.1" in peers and peers["127.0.0.1"]["sockets"].get(curve.QUERY, 0) >= 1
        assert "unknown client key" in peers["127.0.0.1"]["reason"]

        # no CURVE at all, and CURVE against another store's key: refused in the handshake, counted by the monitor
        before = gate.status()["refused_total"]
        assert _roundtrip(ctx, endpoint, None, timeout_ms=500) is None
        other = client("good")
        wrong = client_keys(load_config(overrides={"security.client_key": str(keys / "good.key_secret"),
                                                   "security.store_public_key": str(keys / "other-store.key")}))
        assert _roundtrip(ctx, endpoint, other, plain_server_key=wrong.server, timeout_ms=500) is None
        assert _wait(lambda: gate.status()["handshake_failures"].get(curve.QUERY, {}).get("protocol", 0) >= 2)
        assert _wait(lambda: gate.status()["refused_total"] >= before + 2)

        # a key put in the directory is admitted at the next handshake, no restart
        assert _roundtrip(ctx, endpoint, client("late"), timeout_ms=500) is None
        (authorised / "late.key").write_bytes((keys / "late.key").read_bytes())
        assert _roundtrip(ctx, endpoint, client("late")) == b"pong:ping"
        assert gate.status()["authorized_keys"] == 2
        stop.set()
        t.join(2)
    finally:
        server.close()
        gate.stop()
        ctx.term()


def test_flowlens_up_advisories_reach_a_curve_store(tmp_path):
    """The supervisor's AdvisoryPublisher (events DEALER and bus PUB) connects with security.* keys."""
    from flowmodel import bus
    from flowmodel.supervisor import AdvisoryPublisher

    keys, authorised = tmp_path / "keys", tmp_path / "authorised"
    authorised.mkdir()
    generate_keys(str(keys), "store")
    generate_keys(str(keys), "up")
    (authorised / "up.key").write_bytes((keys / "up.key").read_bytes())
    ctx = zmq.Context()
    gate = Gate(load_config(overrides={"security.server_key": str(keys / "store.key_secret"),
                                       "security.authorized_keys": str(authorised)})).start(ctx)
    events, sub = ctx.socket(zmq.ROUTER), ctx.socket(zmq.SUB)
    for s in (events, sub):
        s.linger = 0
    sub.subscribe(b"")
    gate.bind(events, "tcp://127.0.0.1:*", curve.EVENTS)
    gate.bind(sub, "tcp://127.0.0.1:*", curve.BUS_PUBLISH)
    publisher = AdvisoryPublisher(sub.last_endpoint.decode(),
                                  {"endpoint": events.last_endpoint.decode(), "max_events": 10, "resend_after_s": 0.2,
                                   "high_water_mark": 10},
                                  {"security.client_key": str(keys / "up.key_secret"),
                                   "security.store_public_key": str(keys / "store.key")})
    try:
        publisher.send({"analyzer": "supervisor", "subject": "x", "severity": "WARNING"})
        deadline = time.monotonic() + 5
        while not events.poll(100) and time.monotonic() < deadline:
            publisher.pump()
        frames = events.recv_multipart(zmq.NOBLOCK)
        assert frames[1] == bus.TOPIC_ADVISORY and bus.decode_body(frames[2])["subject"] == "x"
        while not sub.poll(100) and time.monotonic() < deadline:  # PUB: the first may go before the handshake
            publisher.send({"analyzer": "supervisor", "subject": "y", "severity": "WARNING"})
        assert sub.recv_multipart(zmq.NOBLOCK)[0] == bus.TOPIC_ADVISORY
        assert gate.status()["refused_total"] == 0 and gate.status()["admitted"] >= 2
    finally:
        publisher.close()
        events.close()
        sub.close()
        gate.stop()
        ctx.term()


def test_an_unanswered_client_says_what_to_check(tmp_path):
    from flowmodel.client import StoreClient, StoreUnavailable

    generate_keys(str(tmp_path), "store")
    generate_keys(str(tmp_path), "me")
    keys = client_keys(load_config(overrides={"security.client_key": str(tmp_path / "me.key_secret"),
                                              "security.store_public_key": str(tmp_path / "store.key")}))
    with StoreClient("tcp://127.0.0.1:9", timeout_s=0.05, retries=0, keys=keys) as c:
        with pytest.raises(StoreUnavailable, match="security.authorized_keys"):
            c.ping()
    with StoreClient("tcp://198.18.0.1:9", timeout_s=0.05, retries=0) as c:
        with pytest.raises(StoreUnavailable, match="security.client_key"):
            c.ping()
    with StoreClient("tcp://127.0.0.1:9", timeout_s=0.05, retries=0) as c:
        with pytest.raises(StoreUnavailable, match=r"\(1 try\)$"):
            c.ping()


def test_flowlens_keys_generate(tmp_path, capsys):
    import os
    import stat

    from flowmodel.cli import main

    d = tmp_path / "keys"
    assert main(["keys", "generate", "--dir", str(d), "--name", "edge1"]) == 0
    assert stat.S_IMODE(os.stat(d / "edge1.key_secret").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert "edge1.key" in capsys.readouterr().err
    first = (d / "edge1.key").read_bytes()
    assert main(["keys", "generate", "--dir", str(d), "--name", "edge1"]) == 2  # never replaced by accident
    assert "--force" in capsys.readouterr().err and (d / "edge1.key").read_bytes() == first
    assert main(["keys", "generate", "--dir", str(d), "--name", "edge1", "--force"]) == 0
    assert (d / "edge1.key").read_bytes() != first
    assert main(["keys", "generate", "--dir", str(d), "--name", "../x"]) == 2
