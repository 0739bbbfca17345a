"""Live exporter end to end: the real softflowd (Debian package, installed by `make debs`) reads an
input capture from tests/data/ and exports it as NetFlow v9 or IPFIX over loopback to a real
collector; what reaches the real store is read back through StoreClient.

Expected figures come from two independent places, never from our own decoder:
* softflowd's own summary, printed when it exits after the pcap (`-r`): "Flows exported: N",
  "Packets processed: N" and the per-protocol Octets/Packets table;
* the input pcap itself, read here with a few lines of struct (IP lengths per family).
"""
from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from support.e2e import wait_for_flows
from support.services import ServiceStack, wait_until

DATA = Path(__file__).resolve().parents[1] / "data"
SOFTFLOWD = shutil.which("softflowd") or next(
    (p for p in ("/usr/sbin/softflowd", "/usr/local/sbin/softflowd") if Path(p).is_file()), None)

pytestmark = pytest.mark.skipif(
    SOFTFLOWD is None, reason="softflowd is not installed (Debian package softflowd; `make debs` installs it)")

ALL_TIME = {"since": 0, "until": 4_000_000_000_000}  # the captures are old: ask for every stored flow


def pcap_sums(path: Path) -> dict[str, tuple[int, int]]:
    """Per IP family (v4, v6): (packets, octets as IP total length) of an Ethernet pcap.
    softflowd counts octets as the IP length, so these must equal the exported sums."""
    raw = path.read_bytes()
    magic = raw[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack(endian + "I", raw[20:24])[0]
    assert linktype == 1, f"{path.name}: expected Ethernet link type, got {linktype}"
    sums = {"v4": [0, 0], "v6": [0, 0]}
    off = 24
    while off + 16 <= len(raw):
        incl = struct.unpack(endian + "I", raw[off + 8:off + 12])[0]
        frame = raw[off + 16:off + 16 + incl]
        off += 16 + incl
        ethertype = struct.unpack("!H", frame[12:14])[0]
        if ethertype == 0x0800:
            fam, length = "v4", struct.unpack("!H", frame[16:18])[0]
        elif ethertype == 0x86DD:
            fam, length = "v6", 40 + struct.unpack("!H", frame[18:20])[0]
        else:
            continue
        sums[fam][0] += 1
        sums[fam][1] += length
    return {k: (v[0], v[1]) for k, v in sums.items()}


def softflowd_report(text: str) -> dict:
    """softflowd's exit summary: flows exported, packets processed, per-protocol octet/packet sums."""
    exported = re.search(r"Flows exported: (\d+) \((\d+) records\) in (\d+) packets \((\d+) failures\)", text)
    processed = re.search(r"Packets processed: (\d+)", text)
    assert exported and processed, f"softflowd printed no summary:\n{text}"
    per_proto = re.findall(r"^\s*\S+ \((\d+)\):\s+(\d+)\s+(\d+)\s", text, re.M)
    assert per_proto, f"softflowd printed no per-protocol table:\n{text}"
    return {"flows": int(exported[1]), "records": int(exported[2]), "export_packets": int(exported[3]),
            "failures": int(exported[4]), "packets_processed": int(processed[1]),
            "octets": sum(int(o) for _p, o, _n in per_proto), "packets": sum(int(n) for _p, _o, n in per_proto)}


def family(addr: str) -> str:
    return "v6" if ":" in addr and not addr.lower().startswith("::ffff:") else "v4"


@pytest.mark.parametrize("capture", ["dns", "dual"])
@pytest.mark.parametrize("version", [9, 10], ids=["netflow-v9", "ipfix"])
def test_softflowd_export_reaches_the_store(tmp_path, version, capture):
    pcap = DATA / f"{capture}.pcap"
    truth = pcap_sums(pcap)
    with ServiceStack(tmp_path, ["store", "collector"], store={"sqlite_retention": "3650d"},
                      collector={"stats_interval": "0.2s"}) as stack:
        port = stack.netflow_port if version == 9 else stack.ipfix_port
        # -d: stay in the foreground; with -r softflowd exits at the end of the file after
        # flushing every flow; -c none: no control socket; -a: flow times from the pcap.
        cmd = [SOFTFLOWD, "-d", "-r", str(pcap), "-n", f"127.0.0.1:{port}", "-p", str(tmp_path / "softflowd.pid"),
               "-c", "none", "-v", str(version), "-a"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=15, cwd=tmp_path)
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"softflowd exited {done.returncode}:\n{output}"
        report = softflowd_report(output)
        # softflowd's own accounting agrees with the input capture before we look at FlowLens
        assert report["failures"] == 0 and report["records"] == report["flows"] > 0
        assert report["packets_processed"] == report["packets"] == truth["v4"][0] + truth["v6"][0]
        assert report["octets"] == truth["v4"][1] + truth["v6"][1]

        client = stack.client()
        try:
            rows = wait_for_flows(client, report["flows"], timeout_s=10, **ALL_TIME)
            assert len(rows) == report["flows"]
            assert sum(r["bytes"] for r in rows) == report["octets"]
            assert sum(r["packets"] for r in rows) == report["packets"]
            assert {r["flow_version"] for r in rows} == {version}
            for fam in ("v4", "v6"):
                mine = [r for r in rows if family(r["src_addr"]) == fam]
                assert all(family(r["dst_addr"]) == fam for r in mine)
                assert (sum(r["packets"] for r in mine), sum(r["bytes"] for r in mine)) == truth[fam], fam
            if capture == "dual":
                # softflowd's summary has no per-family split; the corpus ground truth for this very
                # command (local/softflowd_v9_dual.totals.json and softflowd_ipfix_dual.totals.json,
                # ip_families) says 76 IPv6 and 10 IPv4 flows
                assert sum(family(r["src_addr"]) == "v6" for r in rows) == 76
                assert truth["v6"][0] > 0
            else:
                assert truth["v6"] == (0, 0)

            def exporter_row():
                rep = client.exporters()
                found = [e for e in rep["exporters"] if e.get("exporter") == "127.0.0.1" and e.get("collector")]
                return found if found and found[0].get("flows", 0) >= report["flows"] else None

            found = wait_until(exporter_row, timeout_s=10, interval_s=0.2)
            assert len(found) == 1, found
            stats = found[0]
            assert stats["version"] == version
            assert stats["flows"] == report["flows"]
            assert stats["packets"] == report["export_packets"]
            assert sum((stats.get("decode_errors") or {}).values()) == 0, stats
            assert stats["pending_sets"] == 0 and stats["pending_expired"] == 0 and not stats["pending_dropped"], stats
            assert stats["store_flows"] == report["flows"]
            sequence = (stats["sequence_lost"], stats["sequence_backward"])
            assert sequence == (0, 0), stats
        finally:
            client.close()
    codes = stack.stop()
    assert all(rc == 0 for rc in codes.values()), codes
