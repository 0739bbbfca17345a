"""Well-known ports and their service names (IANA names, as engineers write them), shared by the
analyzer's wording and the web's tables so both name a port the same way."""
from __future__ import annotations

# port -> service name, TCP and UDP alike (443/UDP is QUIC: see service_name callers).
SERVICE_NAMES: dict[int, str] = {
    20: "FTP-data", 21: "FTP", 22: "SSH", 23: "Telnet", 25: "SMTP", 37: "Time", 49: "TACACS",
    53: "DNS", 67: "DHCP", 68: "DHCP", 69: "TFTP", 80: "HTTP", 88: "Kerberos", 110: "POP3",
    111: "RPC", 119: "NNTP", 123: "NTP", 135: "MS-RPC", 137: "NetBIOS-NS", 138: "NetBIOS-DGM",
    139: "NetBIOS-SSN", 143: "IMAP", 161: "SNMP", 162: "SNMP-trap", 179: "BGP", 389: "LDAP",
    443: "HTTPS", 445: "SMB", 465: "SMTPS", 500: "IKE", 512: "rexec", 513: "rlogin", 514: "rsh",
    515: "LPD", 520: "RIP", 546: "DHCPv6", 547: "DHCPv6", 554: "RTSP", 587: "SMTP-submission",
    623: "IPMI", 636: "LDAPS", 853: "DNS-over-TLS", 873: "rsync", 993: "IMAPS", 995: "POP3S",
    1080: "SOCKS", 1194: "OpenVPN", 1433: "MSSQL", 1521: "Oracle", 1701: "L2TP", 1723: "PPTP",
    1812: "RADIUS", 1813: "RADIUS-acct", 1883: "MQTT", 1900: "SSDP", 2049: "NFS", 2055: "NetFlow",
    2379: "etcd", 3128: "HTTP-proxy", 3268: "LDAP-GC", 3306: "MySQL", 3389: "RDP", 3478: "STUN",
    4500: "IPsec-NAT", 4739: "IPFIX", 5060: "SIP", 5061: "SIPS", 5222: "XMPP", 5353: "mDNS",
    5432: "PostgreSQL", 5671: "AMQPS", 5672: "AMQP", 5900: "VNC", 5985: "WinRM", 5986: "WinRM-TLS",
    6343: "sFlow", 6379: "Redis", 6443: "Kubernetes-API", 6514: "syslog-TLS", 8080: "HTTP-alt",
    8443: "HTTPS-alt", 8883: "MQTTS", 9000: "HTTP-alt", 9092: "Kafka", 9100: "JetDirect",
    9200: "Elasticsearch", 11211: "memcached", 27017: "MongoDB", 51820: "WireGuard",
}
