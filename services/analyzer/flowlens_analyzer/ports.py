"""A compact table of well-known ports (IANA service names) for the wording of advisories."""
from __future__ import annotations

from flowmodel.ports import SERVICE_NAMES as _SERVICES
from flowmodel.protocol import protocol_name

_UDP_ONLY = {443: "QUIC"}


def service_name(port: int, protocol: int = 6) -> str:
    """'HTTPS' for 443/TCP, 'QUIC' for 443/UDP, 'port 31337/TCP' for an unknown port."""
    port = int(port)
    protocol = int(protocol)
    if protocol == 17 and port in _UDP_ONLY:
        return _UDP_ONLY[port]
    name = _SERVICES.get(port)
    if name:
        return name
    if protocol == 1:
        return "ICMP"
    if protocol == 58:
        return "ICMPv6"
    proto = {6: "TCP", 17: "UDP", 132: "SCTP"}.get(protocol)
    if proto:
        return f"port {port}/{proto}"
    name = protocol_name(protocol)  # as the pages and the CLI name it: VRRP, not protocol 112
    return f"protocol {protocol}" if name.isdigit() else name


def service_port(src_port, dst_port):
    """Vectorised guess of the service side of a flow: the lower port when one is well known (<1024)
    or in the table, else the destination port."""
    import numpy as np

    src_port = np.asarray(src_port)
    dst_port = np.asarray(dst_port)
    known = _known_mask()
    src_known = known[src_port]
    dst_known = known[dst_port]
    use_src = src_known & ~dst_known
    return np.where(use_src, src_port, dst_port)


_KNOWN = None


def _known_mask():
    import numpy as np

    global _KNOWN
    if _KNOWN is None:
        m = np.zeros(65536, dtype=bool)
        m[:1024] = True
        m[list(_SERVICES)] = True
        _KNOWN = m
    return _KNOWN
