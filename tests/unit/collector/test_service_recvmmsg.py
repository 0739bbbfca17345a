"""recvmmsg receiver: the same datagrams, in order, with the same source tuples as recvfrom (real
sockets on loopback), and the group bound respected. Its datagrams are views of its receive slots:
valid until release(), filled in after each other until then."""
import socket

import pytest

from flowlens_collector.recvmmsg import MultiReceiver, SimpleReceiver, _libc_recvmmsg, make_receiver

FN = _libc_recvmmsg()
needs_recvmmsg = pytest.mark.skipif(FN is None, reason="recvmmsg is Linux/glibc only; the recvfrom fallback is used")


def _pair(family, host):
    r = socket.socket(family, socket.SOCK_DGRAM)
    r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    if host == "::":
        r.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    r.bind((host, 0))
    r.setblocking(False)
    s = socket.socket(socket.AF_INET if host in ("::", "127.0.0.1") else family, socket.SOCK_DGRAM)
    return r, s, ("127.0.0.1" if host == "::" else host, r.getsockname()[1])


MESSAGES = [bytes([i % 251]) * (1 + (i * 397) % 8000) for i in range(120)] + [b"\x00\x05" * 30000]


@needs_recvmmsg
@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1"), (socket.AF_INET6, "::")])
def test_same_datagrams_and_sources_as_recvfrom(family, host):
    try:
        r, s, dst = _pair(family, host)
    except OSError as e:
        pytest.skip(f"no IPv6 loopback here: {e}")
    rx = MultiReceiver(r, FN, slots=64)
    try:
        for m in MESSAGES:
            s.sendto(m, dst)
        data, srcs = [], []
        more = rx.receive(data, srcs, 64)
        assert more and len(data) == 64          # a full group: the socket may hold more
        assert rx.receive(data, srcs, 64) is False and len(data) == 64  # no free slot before release()
        got = [bytes(d) for d in data]
        data.clear()
        rx.release()
        while rx.receive(data, srcs, 64):
            pass
        got += [bytes(d) for d in data]
        assert got == MESSAGES
        for m in MESSAGES[:3]:
            s.sendto(m, dst)
        fallback = SimpleReceiver(r)
        d2, s2 = [], []
        assert fallback.receive(d2, s2, 10) is False  # drained: fewer than asked
        assert d2 == MESSAGES[:3]
        assert set(srcs) == set(s2) and len(set(srcs)) == 1
        assert srcs[0][1] == s.getsockname()[1]
        assert rx.truncated == 0
    finally:
        rx.close()
        r.close()
        s.close()


@needs_recvmmsg
def test_max_n_bounds_one_call_and_empty_socket_returns_false():
    r, s, dst = _pair(socket.AF_INET, "127.0.0.1")
    rx = make_receiver(r, slots=16)
    try:
        assert rx.method == "recvmmsg"
        data, srcs = [], []
        assert rx.receive(data, srcs, 16) is False and data == []
        for i in range(10):
            s.sendto(bytes([i]), dst)
        assert rx.receive(data, srcs, 4) is True
        assert data == [bytes([i]) for i in range(4)]
        assert rx.receive(data, srcs, 16) is False
        assert data == [bytes([i]) for i in range(10)] and len(srcs) == 10  # the first four still intact
        rx.release()
        s.sendto(b"\xee", dst)
        assert rx.receive(data, srcs, 16) is False
        assert data[0] == b"\xee" and data[10] == b"\xee"  # slot 0 reused after release()
    finally:
        rx.close()
        r.close()
        s.close()


@needs_recvmmsg
def test_interleaved_sources_keep_their_own_address():
    r, s1, dst = _pair(socket.AF_INET, "127.0.0.1")
    s2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s2.bind(("127.0.0.2", 0))
    rx = MultiReceiver(r, FN, slots=32)
    try:
        for i in range(20):
            (s1 if i % 3 else s2).sendto(bytes([i]) * 10, dst)
        data, srcs = [], []
        while rx.receive(data, srcs, 32):
            pass
        assert data == [bytes([i]) * 10 for i in range(20)]
        expected = [(s1 if i % 3 else s2).getsockname() for i in range(20)]
        assert [(h if h != "0.0.0.0" else "127.0.0.1", p) for h, p in expected] == srcs
    finally:
        rx.close()
        for x in (r, s1, s2):
            x.close()


@pytest.mark.parametrize("multi", [True, False])
def test_datagram_longer_than_buffer_size_is_counted_and_handed_on_empty(multi):
    """collector.buffer_size is the largest datagram read: a longer one is never decoded in part."""
    if multi and FN is None:
        pytest.skip("recvmmsg is Linux/glibc only")
    r, s, dst = _pair(socket.AF_INET, "127.0.0.1")
    rx = MultiReceiver(r, FN, slots=8, max_datagram=1000) if multi else SimpleReceiver(r, max_datagram=1000)
    try:
        for m in (b"a" * 1000, b"b" * 1001, b"c" * 20):
            s.sendto(m, dst)
        data, srcs = [], []
        while rx.receive(data, srcs, 8) and len(data) < 3:
            pass
        rx.receive(data, srcs, 8)
        assert [bytes(d) for d in data] == [b"a" * 1000, b"", b"c" * 20]
        assert rx.truncated == 1
        if multi:
            buf, offsets, lengths = rx.layout()
            assert lengths.tolist() == [1000, 0, 20]
    finally:
        rx.close()
        r.close()
        s.close()
