"""UDP listeners: the granted receive buffer is reported, and the kernel drop counter is read from
/proc/net/udp for our own socket (real sockets on 127.0.0.1, a real overflow)."""
import socket

from flowlens_collector.udp import kernel_drops, open_listener


def test_listener_reports_requested_and_granted_buffer():
    lst = open_listener("127.0.0.1", 0, 1 << 20)
    try:
        assert lst.port > 0
        assert lst.rcvbuf_requested == 1 << 20
        assert lst.rcvbuf_granted == lst.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert lst.rcvbuf_granted > 0
        assert lst.address == f"127.0.0.1:{lst.port}"
    finally:
        lst.close()


def test_kernel_drops_counts_overflow_of_our_socket():
    lst = open_listener("127.0.0.1", 0, 4096)  # tiny buffer: the kernel floor, overflows at once
    try:
        assert kernel_drops({lst.inode}) == {lst.inode: 0}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(500):
                s.sendto(bytes(1400), ("127.0.0.1", lst.port))
        assert kernel_drops({lst.inode})[lst.inode] > 0
    finally:
        lst.close()


def test_kernel_drops_unknown_socket_is_zero():
    assert kernel_drops({123456789012}) == {123456789012: 0}


def test_dual_stack_listener_accepts_ipv4():
    try:
        lst = open_listener("::", 0, 1 << 16)
    except OSError as e:
        import pytest
        pytest.skip(f"no IPv6 on this machine: {e}")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"hello", ("127.0.0.1", lst.port))
        lst.sock.settimeout(2)
        data, addr = lst.sock.recvfrom(100)
        assert data == b"hello" and addr[0] == "::ffff:127.0.0.1"
        assert kernel_drops({lst.inode}) == {lst.inode: 0}
    finally:
        lst.close()
