"""tshark ground truth of sFlow captures: one JSON line per flow sample, in the flow columns.

    python3 tests/data/sflow_truth.py X.pcap [--port 6343]   # writes X.sflow.jsonl next to it

Runs ``TZ=UTC tshark -r X.pcap -d udp.port==PORT,sflow -T pdml`` and walks the PDML tree: each
flow sample (sample type 1 or 3) becomes one line with the values Wireshark's dissector shows,
mapped to FlowLens columns by the rules below (the decoder's documented conventions, applied to
tshark's view, not to the decoder's output):

- exporter, observation_domain: agent address, sub-agent id; sequence: the datagram's;
- sampling_rate; input_if/output_if: the ifIndex when the format is 0 and the value is not
  0x3FFFFFFF or (expanded samples, per the sFlow v5 erratum) 0xFFFFFFFF (the agent itself), else 0;
- bytes: the raw header's frame length, else the sampled Ethernet length, else the sampled IP length;
- addresses, protocol, ports, TCP flags, TOS: from a sampled IPv4/IPv6 record, else from the first
  IP header tshark dissected inside the raw header (ports only for TCP/UDP/SCTP, ICMP type/code
  only for ICMP/ICMPv6, not from the packet an ICMP error quotes); vlan: the extended switch's
  input VLAN, else the last 802.1Q tag of the header;
- next_hop, src_mask, dst_mask: extended router (next hop from extended gateway without it);
  src_as: gateway source AS, else the router's AS; dst_as: the last AS of the path, else the router's.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import xml.etree.ElementTree as ET

LOCAL = 0x3FFFFFFF           # the agent itself, compact encoding
LOCAL_EXPANDED = 0xFFFFFFFF  # the same, expanded encoding (sFlow v5 erratum)


def _fields(elem, name):
    return [e for e in elem.iter("field") if e.get("name") == name]


def _first(elem, name, default=None):
    for e in elem.iter("field"):
        if e.get("name") == name:
            return e.get("show")
    return default


def _int(text, default=0):
    if text is None:
        return default
    return int(text, 16) if text.startswith("0x") else int(text)


def _children_named(elem, name):
    return [c for c in elem if c.get("name") == name]


def _header_fields(header) -> dict:
    """Fields of the packet tshark dissected inside a raw header record."""
    out = {}
    protos = [p for p in header.iter("proto")]
    vlans = [e for p in protos if p.get("name") == "vlan" for e in _children_named(p, "vlan.id")]
    if vlans:
        out["vlan"] = _int(vlans[-1].get("show"))
    ip = next((p for p in protos if p.get("name") in ("ip", "ipv6")), None)
    if ip is None or _first(ip, "ip.src", _first(ip, "ipv6.src")) is None:
        return out  # no IP header, or none captured (a sampled header of 0 bytes)
    if ip.get("name") == "ip":
        out["src_addr"] = _first(ip, "ip.src")
        out["dst_addr"] = _first(ip, "ip.dst")
        out["protocol"] = _int(_first(ip, "ip.proto"))
        out["tos"] = _int(_first(ip, "ip.dsfield"))
        later = _int(_first(ip, "ip.frag_offset")) != 0
    else:
        out["src_addr"] = _first(ip, "ipv6.src")
        out["dst_addr"] = _first(ip, "ipv6.dst")
        nxt = [e.get("show") for e in ip.iter("field") if e.get("name", "").endswith(".nxt")]
        out["protocol"] = _int(nxt[-1])
        out["tos"] = _int(_first(ip, "ipv6.tclass"))
        later = _int(_first(ip, "ipv6.fragment.offset"), 0) != 0
    after = protos[protos.index(ip) + 1:]
    l4 = after[0] if after else None
    if l4 is None or later:
        return out
    name = l4.get("name")
    if name in ("tcp", "udp", "sctp") and out["protocol"] in (6, 17, 132):
        out["src_port"] = _int(_first(l4, f"{name}.srcport"))
        out["dst_port"] = _int(_first(l4, f"{name}.dstport"))
        if name == "tcp":
            out["tcp_flags"] = _int(_first(l4, "tcp.flags")) & 0xFF
    elif name in ("icmp", "icmpv6") and out["protocol"] in (1, 58):
        out["icmp_type"] = _int(_first(l4, f"{name}.type"))
        out["icmp_code"] = _int(_first(l4, f"{name}.code"))
    return out


def _flow_sample(sample, datagram: dict) -> dict:
    expanded = _first(sample, "sflow_245.sampletype") == "3"
    row = dict(datagram)
    row["sampling_rate"] = _int(_first(sample, "sflow.flow_sample.sampling_rate"))
    if expanded:
        in_fmt = _int(_first(sample, "sflow.flow_sample.input_interface_format"))
        in_val = _int(_first(sample, "sflow.flow_sample.input_interface_value"))
        out_fmt = _int(_first(sample, "sflow.flow_sample.output_interface.format"))
        out_val = _int(_first(sample, "sflow.flow_sample.output_interface_value"))
    else:
        raw_in = _int(_first(sample, "sflow.flow_sample.input_interface"))
        raw_out = _int(_first(sample, "sflow.flow_sample.output_interface"))
        in_fmt, in_val, out_fmt, out_val = raw_in >> 30, raw_in & LOCAL, raw_out >> 30, raw_out & LOCAL
    row["input_if"] = in_val if in_fmt == 0 and in_val not in (LOCAL, LOCAL_EXPANDED) else 0
    row["output_if"] = out_val if out_fmt == 0 and out_val not in (LOCAL, LOCAL_EXPANDED) else 0
    records = [c for c in sample if c.tag == "field" and _first(c, "sflow_245.flow_record_format") is not None]
    by_format = {}
    for rec in records:
        by_format.setdefault(_int(_first(rec, "sflow_245.flow_record_format")), rec)
    raw, eth = by_format.get(1), by_format.get(2)
    ipv4, ipv6 = by_format.get(3), by_format.get(4)
    if raw is not None:
        row["bytes"] = _int(_first(raw, "sflow_245.header.frame_length"))
        header = _fields(raw, "sflow_245.header")
        if header:
            row.update(_header_fields(header[0]))
    elif eth is not None:
        row["bytes"] = _int(_first(eth, "sflow_245.ethernet.length"))
    for rec, version in ((ipv4, 4), (ipv6, 6)):
        if rec is None:
            continue
        row.setdefault("bytes", _int(_first(rec, "sflow_245.ip.length")))
        row["src_addr"] = _first(rec, f"sflow_245.ipv{version}_src")
        row["dst_addr"] = _first(rec, f"sflow_245.ipv{version}_dst")
        row["protocol"] = _int(_first(rec, "sflow.ip_protocol"))
        row["src_port"] = _int(_first(rec, "sflow_245.ip.source_port"))
        row["dst_port"] = _int(_first(rec, "sflow.ip.destination_port"))
        flags = ("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr")
        row["tcp_flags"] = sum(_int(_first(rec, f"sflow_245.ip.tcp_flag.{f}")) << i for i, f in enumerate(flags))
        for icmp in ("icmp_type", "icmp_code"):
            row.pop(icmp, None)
        if version == 4:
            row["tos"] = (_int(_first(rec, "sflow_245.ipv4_precedence_type")) << 5
                          | _int(_first(rec, "sflow_245.ipv4_delay")) << 4
                          | _int(_first(rec, "sflow_245.ipv4_throughput")) << 3
                          | _int(_first(rec, "sflow_245.ipv4_reliability")) << 2
                          | _int(_first(rec, "sflow_245.ipv4_cost")) << 1)
        else:
            row["tos"] = _int(_first(rec, "sflow_245.ipv6_priority"))
    switch = by_format.get(1001)
    if switch is not None and _int(_first(switch, "sflow_245.vlan.in")) < 4096:
        row["vlan"] = _int(_first(switch, "sflow_245.vlan.in"))
    router, gateway = by_format.get(1002), by_format.get(1003)
    if router is not None:
        row["next_hop"] = _first(router, "sflow_245.nexthop")
        row["src_mask"] = _int(_first(router, "sflow_245.nexthop.src_mask"))
        row["dst_mask"] = _int(_first(router, "sflow_245.nexthop.dst_mask"))
    if gateway is not None:
        if router is None:
            row["next_hop"] = _first(gateway, "sflow_245.nexthop")
        router_as = _int(_first(gateway, "sflow_245.as"))
        row["src_as"] = _int(_first(gateway, "sflow_245.srcAS")) or router_as
        path = [_int(e.get("show")) for seg in _children_named(gateway, "sflow.as_type")
                for e in _children_named(seg, "sflow_245.dstAS")]
        row["dst_as"] = path[-1] if path else router_as
    return row


def truth(pcap: str, port: int) -> list[dict]:
    xml = subprocess.run(["tshark", "-r", pcap, "-d", f"udp.port=={port},sflow", "-T", "pdml"],
                         check=True, capture_output=True, env={**os.environ, "TZ": "UTC"}).stdout
    rows = []
    for packet in ET.fromstring(xml):
        frame = _int(_first(packet, "frame.number"))
        for proto in packet.iter("proto"):
            if proto.get("name") != "sflow":
                continue
            datagram = {"frame": frame, "exporter": _first(proto, "sflow_245.agent"),
                        "observation_domain": _int(_first(proto, "sflow_245.sub_agent_id")),
                        "sequence": _int(_first(proto, "sflow_245.sequence_number"))}
            for sample in proto:
                kind = _first(sample, "sflow_245.sampletype") if sample.tag == "field" else None
                if kind in ("1", "3"):
                    rows.append(_flow_sample(sample, datagram))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pcap")
    ap.add_argument("--port", type=int, default=6343)
    args = ap.parse_args()
    rows = truth(args.pcap, args.port)
    out = args.pcap[:-len(".pcap")] + ".sflow.jsonl"
    with open(out, "w") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    print(f"{out}: {len(rows)} flow samples")


if __name__ == "__main__":
    main()
