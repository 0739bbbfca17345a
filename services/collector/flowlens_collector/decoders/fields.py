"""Information elements we read (NetFlow v9 field types = IPFIX IANA IE ids for 1-127), and their role.

A role names what the value becomes in the flow schema or in the exporter's state. Fields not listed
here (and every enterprise-specific field) are skipped by their length; enterprise-specific IPFIX fields
are counted per exporter, by name where ENTERPRISE_FIELDS knows them (see enterprise_field_name).
"""
from __future__ import annotations

# ie -> role. Integer roles take any length 1-8 (reduced-size encoding).
ROLES: dict[int, str] = {
    1: "octets", 2: "packets", 85: "octets_total", 86: "packets_total",
    4: "protocol", 5: "tos", 6: "tcp_flags", 7: "src_port", 11: "dst_port",
    8: "src_v4", 12: "dst_v4", 27: "src_v6", 28: "dst_v6",
    9: "src_mask", 13: "dst_mask", 29: "src_mask_v6", 30: "dst_mask_v6",
    10: "input_if", 14: "output_if", 16: "src_as", 17: "dst_as",
    15: "next_hop_v4", 62: "next_hop_v6", 18: "bgp_next_hop_v4", 63: "bgp_next_hop_v6",
    21: "end_uptime", 22: "start_uptime",
    32: "icmp_type_code", 139: "icmp_type_code_v6",
    176: "icmp_type", 177: "icmp_code", 178: "icmp_type_v6", 179: "icmp_code_v6",
    34: "sampling_interval", 35: "sampling_algorithm",
    48: "sampler_id", 49: "sampler_mode", 50: "sampler_interval", 302: "selector_id",
    304: "selector_algorithm", 305: "sampling_packet_interval", 306: "sampling_packet_space",
    309: "sampling_size", 310: "sampling_population",
    58: "vlan", 243: "dot1q_vlan", 61: "direction",
    150: "start_sec", 151: "end_sec", 152: "start_ms", 153: "end_ms",
    154: "start_us", 155: "end_us", 156: "start_ns", 157: "end_ns",
    158: "start_delta_us", 159: "end_delta_us", 160: "system_init_ms",
    # Cisco ASA NSEL
    231: "initiator_octets", 232: "responder_octets", 298: "initiator_packets", 299: "responder_packets",
    323: "event_time_ms", 233: "firewall_event",
}

# RFC 5103 reverse elements (enterprise REVERSE_PEN, the IANA id of the forward element): what the
# reverse half of a biflow record takes from them (decoders/biflow.py). Key fields (addresses,
# ports, protocol, AS numbers, masks) have none: the reverse half swaps the forward ones.
REVERSE_ROLES: dict[int, str] = {
    1: "rev_octets", 2: "rev_packets", 85: "rev_octets_total", 86: "rev_packets_total",
    5: "rev_tos", 6: "rev_tcp_flags", 10: "rev_input_if", 14: "rev_output_if",
    15: "rev_next_hop_v4", 62: "rev_next_hop_v6", 58: "rev_vlan", 243: "rev_dot1q_vlan",
    32: "rev_icmp_type_code", 139: "rev_icmp_type_code_v6",
    21: "rev_end_uptime", 22: "rev_start_uptime", 150: "rev_start_sec", 151: "rev_end_sec",
    152: "rev_start_ms", 153: "rev_end_ms", 154: "rev_start_us", 155: "rev_end_us",
    156: "rev_start_ns", 157: "rev_end_ns", 158: "rev_start_delta_us", 159: "rev_end_delta_us",
}
REVERSE_PREFIX = "rev_"

ADDRESS_ROLES = {"src_v4": 4, "dst_v4": 4, "next_hop_v4": 4, "bgp_next_hop_v4": 4,
                 "src_v6": 16, "dst_v6": 16, "next_hop_v6": 16, "bgp_next_hop_v6": 16}
NTP_ROLES = {"start_us", "end_us", "start_ns", "end_ns"}  # 8-byte NTP timestamps (16 = pmacct timeval)

# Roles an options record may carry that we keep per exporter/sampler.
SAMPLING_ROLES = ("sampling_interval", "sampler_interval", "sampling_packet_interval", "sampling_packet_space",
                  "sampling_size", "sampling_population")
SAMPLER_ID_ROLES = ("sampler_id", "selector_id")

VARIABLE_LENGTH = 0xFFFF
NTP_EPOCH_OFFSET_S = 2_208_988_800  # 1900-01-01 -> 1970-01-01


def base_role(role: str) -> str:
    """The forward role of a reverse one ("rev_octets" -> "octets"); other roles as they are."""
    return role[4:] if role.startswith(REVERSE_PREFIX) else role


def field_ok(role: str, length: int) -> bool:
    """Whether a field of this role and length can be read (else it is skipped like an unknown one)."""
    role = base_role(role)
    if role in ADDRESS_ROLES:
        return length == ADDRESS_ROLES[role]
    if role in NTP_ROLES:
        return length in (8, 16)
    return 1 <= length <= 8


def rate_from(values: dict) -> int | None:
    """A 1-in-N rate from the sampling values of one record, or None if it carries none."""
    size, population = values.get("sampling_size"), values.get("sampling_population")
    if size and population:
        return max(1, population // size)
    interval = values.get("sampling_packet_interval")
    if interval is not None:
        if interval == 0:
            return 1
        return max(1, (interval + values.get("sampling_packet_space", 0)) // interval)
    for role in ("sampling_interval", "sampler_interval"):
        if role in values:
            return values[role] or 1
    return None


# Cisco ASA NSEL firewall event (IE 233, NF_F_FW_EVENT) values, as the ASA NetFlow guide, nfdump and
# Wireshark name them. Create events carry no counters; teardown events carry the connection's totals
# in 231/232; update events carry the counts since the previous update.
NSEL_EVENTS = {0: "ignore", 1: "create", 2: "teardown", 3: "denied", 4: "alert", 5: "update"}
NSEL_CREATE, NSEL_DENIED = 1, 3

# Enterprise-specific IPFIX fields counted by name: PEN -> (vendor, {element id: name}). Only entries
# checked against a public registry (Wireshark's packet-netflow.c, CESNET libfds element files, the
# corpus README); anything else is counted as "PEN/id".
REVERSE_PEN = 29305  # RFC 5103 biflow: the reverse direction of an IANA element (softflowd -b)
ENTERPRISE_FIELDS: dict[int, tuple[str, dict[int, str]]] = {
    9: ("cisco", {4315: "tcpWindowSizeMin", 4316: "tcpWindowSizeMax", 4318: "tcpMaximumSegmentSize",
                  9252: "servicesWaasSegment", 9253: "servicesWaasPassThroughReason",
                  9268: "clientRetransPackets", 9272: "transactionCountDelta", 9292: "numRespsCountDelta",
                  9303: "sumRespTime", 9306: "sumServerRespTime", 9309: "sumTotalRespTime",
                  9313: "sumNwkTime", 9316: "sumClientNwkTime", 9319: "sumServerNwkTime",
                  9357: "appHTTPUriStatistics", 12232: "appCategoryName", 12233: "appSubCategoryName",
                  12234: "appGroupName", 12235: "appHTTPHost", 12236: "clientIPv4Address",
                  12237: "serverIPv4Address", 12240: "clientTransportPort", 12241: "serverTransportPort",
                  12242: "connectionId", 12244: "appBusiness"}),
    2636: ("juniper", {137: "commonPropertiesId"}),
    6876: ("vmware", {880: "tenantProtocol", 881: "tenantSourceIPv4", 882: "tenantDestIPv4",
                      883: "tenantSourceIPv6", 884: "tenantDestIPv6", 886: "tenantSourcePort",
                      887: "tenantDestPort", 888: "egressInterfaceAttr", 889: "vxlanExportRole",
                      890: "ingressInterfaceAttr"}),
    13745: ("plixer", {}),
    35632: ("ntop", {}),
}
# IANA names of the elements exporters send reversed (RFC 5103 names the reverse one "reverse" + name)
_IANA_NAMES = {1: "octetDeltaCount", 2: "packetDeltaCount", 4: "protocolIdentifier", 5: "ipClassOfService",
               6: "tcpControlBits", 7: "sourceTransportPort", 8: "sourceIPv4Address", 10: "ingressInterface",
               11: "destinationTransportPort", 12: "destinationIPv4Address", 14: "egressInterface",
               21: "flowEndSysUpTime", 22: "flowStartSysUpTime", 85: "octetTotalCount",
               86: "packetTotalCount", 136: "flowEndReason", 152: "flowStartMilliseconds",
               153: "flowEndMilliseconds"}


def enterprise_field_name(pen: int, ie: int) -> str:
    """How an enterprise-specific field is counted: "vendor.name", "vendor/id" or "PEN/id"."""
    if pen == REVERSE_PEN:
        name = _IANA_NAMES.get(ie)
        return "reverse" + name[0].upper() + name[1:] if name else f"reverse/{ie}"
    known = ENTERPRISE_FIELDS.get(pen)
    if known is None:
        return f"{pen}/{ie}"
    vendor, names = known
    return f"{vendor}.{names[ie]}" if ie in names else f"{vendor}/{ie}"
