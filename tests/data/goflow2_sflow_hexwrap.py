"""Wrap the sFlow datagrams of goflow2's decoders/sflow/sflow_test.go into pcap files (hexwrap).

    python3 tests/data/goflow2_sflow_hexwrap.py sflow_test.go OUT_DIR

Each ``data := []byte{...}`` of a test function is one sFlow datagram (UDP payload, unchanged),
wrapped in synthetic Ethernet/IPv4/UDP headers 192.0.2.10:40000 -> 192.0.2.20:6343 (the corpus's
hexwrap operation); ``TestX`` goes to goflow2_sflow_X.pcap, the three drop-sample tests to one file.
"""
from __future__ import annotations

import re
import struct
import sys


def _udp_frame(payload: bytes) -> bytes:
    udp = struct.pack(">HHHH", 40000, 6343, 8 + len(payload), 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, bytes([192, 0, 2, 10]),
                     bytes([192, 0, 2, 20]))
    total = sum(struct.unpack(">10H", ip)) 
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    ip = ip[:10] + struct.pack(">H", ~total & 0xFFFF) + ip[12:]
    return b"\x02\x00\x00\x00\x00\x20" + b"\x02\x00\x00\x00\x00\x10" + b"\x08\x00" + ip + udp


def write_pcap(path: str, payloads: list[bytes]) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, p in enumerate(payloads):
            frame = _udp_frame(p)
            f.write(struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)) + frame)


def main() -> None:
    src, out = sys.argv[1], sys.argv[2]
    text = open(src).read()
    groups: dict[str, list[bytes]] = {}
    for name, body in re.findall(r"func Test(\w+)\(t \*testing\.T\) \{\s*data := \[\]byte\{(.*?)\}", text, re.S):
        data = bytes(int(x, 16) for x in re.findall(r"0x([0-9a-fA-F]{2})", body))
        key = {"SFlowDecode": "flow", "ExpandedSFlowDecode": "expanded"}.get(name, "drops")
        groups.setdefault(key, []).append(data)
    for key, payloads in groups.items():
        write_pcap(f"{out}/goflow2_sflow_{key}.pcap", payloads)
        print(key, len(payloads), [len(p) for p in payloads])


if __name__ == "__main__":
    main()
