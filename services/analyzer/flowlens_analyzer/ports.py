"""A compact table of well-known ports (IANA service names) for the wording of advisories."""
from __future__ import annotations

# (protocol, port) -> service name; protocol 0 means TCP and UDP alike.
_SERVICES = {
    20: "FTP-data", 21: "FTP", 22: "SSH", 23: "Telnet", 25: "SMTP", 37: "Time", 49: "TACACS", 53: "DNS",
    67: "DHCP", 68: "DHCP", 69: "TFTP", 80: "HTTP", 88: "Kerberos", 110: "POP3", 111: "RPC", 119: "NNTP",
    123: "NTP", 135: "MS-RPC", 137: "NetBIOS-NS", 138: "NetBIOS-DGM", 139: "NetBIOS-SSN", 143: "IMAP",
    161: "SNMP", 162: "SNMP-trap", 179: "BGP", 389: "LDAP", 443: "HTTPS", 445: "SMB", 465: "SMTPS",
    500: "IKE", 512: "rexec", 513: "rlogin", 514: "rsh", 515: "LPD", 520: "RIP", 546: "DHCPv6",
    547: "DHCPv6", 554: "RTSP", 587: "SMTP-submission", 623: "IPMI", 636: "LDAPS", 853: "DNS-over-TLS",
    873: "rsync", 993: "IMAPS", 995: "POP3S", 1194: "OpenVPN", 1433: "MSSQL", 1521: "Oracle",
    1723: "PPTP", 1812: "RADIUS", 1813: "RADIUS-acct", 1883: "MQTT", 1900: "SSDP", 2049: "NFS",
    2055: "NetFlow", 3128: "HTTP-proxy", 3268: "LDAP-GC", 3306: "MySQL", 3389: "RDP", 3478: "STUN",
    4500: "IPsec-NAT", 4739: "IPFIX", 5060: "SIP", 5061: "SIPS", 5222: "XMPP", 5353: "mDNS",
    5432: "PostgreSQL", 5672: "AMQP", 5900: "VNC", 5985: "WinRM", 5986: "WinRM-TLS", 6379: "Redis",
    6443: "Kubernetes-API", 8080: "HTTP-alt", 8443: "HTTPS-alt", 9000: "HTTP-alt", 9092: "Kafka",
    9200: "Elasticsearch", 11211: "memcached", 27017: "MongoDB",
}
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
    return f"port {port}/{proto}" if proto else f"protocol {protocol}"


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
