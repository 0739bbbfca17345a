"""Write built_sflow_if-counters.pcap (sFlow v5 if-counters samples built field by field) and its
tshark ground truth built_sflow_if-counters.counters.tsv.

    python3 tests/data/make_sflow_if_counters.py

No capture from a real agent with if-counters records is in tests/data (pmacct's sfprobe sends a
counter sample without records), so these datagrams are built from the sFlow v5 structures by
tests/unit/collector/sflow_builders.py: agent 192.0.2.10, ifIndex 3 and 4, four polls 20 s apart
(agent uptime), with a 32-bit packet counter wrap on ifIndex 4 and then its counters cleared (the
octets go down). tshark decodes the pcap independently; its fields are the truth the e2e test
derives the expected deltas from.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "unit" / "collector"))
sys.path.insert(0, str(HERE))
from goflow2_sflow_hexwrap import write_pcap  # noqa: E402
from sflow_builders import counter_sample, datagram, if_counters  # noqa: E402

AGENT = "192.0.2.10"
PCAP = HERE / "built_sflow_if-counters.pcap"
TRUTH = HERE / "built_sflow_if-counters.counters.tsv"
# (agent uptime ms, {ifindex: (in_octets, out_octets, other counters)}) per datagram
POLLS = [
    (10_000, {3: (1_000_000, 500_000, {"in_ucast_pkts": 1000, "in_errors": 1}),
              4: (2**40, 10, {"in_ucast_pkts": 2**32 - 100})}),
    (30_000, {3: (1_600_000, 700_000, {"in_ucast_pkts": 1500, "in_errors": 4, "out_discards": 2}),
              4: (2**40 + 1000, 20, {"in_ucast_pkts": 50})}),
    (50_000, {3: (1_900_000, 800_000, {"in_ucast_pkts": 1800, "in_multicast_pkts": 7, "in_errors": 4,
                                       "out_discards": 2}),
              4: (500, 30, {"in_ucast_pkts": 5})}),
    (70_000, {4: (1500, 40, {"in_ucast_pkts": 15})}),
]
FIELDS = ("frame.number", "sflow_245.sysuptime", "sflow_245.ifindex", "sflow_245.ifspeed", "sflow_245.ifinoct",
          "sflow_245.ifoutoct", "sflow_245.ifinpkt", "sflow_245.ifinmcast", "sflow_245.ifinbcast",
          "sflow_245.ifinerr", "sflow_245.ifindisc", "sflow_245.ifoutpkt", "sflow_245.ifouterr",
          "sflow_245.ifoutdisc")


def datagrams() -> list[bytes]:
    out = []
    for n, (uptime, interfaces) in enumerate(POLLS, 1):
        samples = [counter_sample([if_counters(i, in_o, out_o, speed=10**10, **words)], sequence=n, source_id=i)
                   for i, (in_o, out_o, words) in interfaces.items()]
        out.append(datagram(samples, agent=AGENT, sequence=n, uptime_ms=uptime))
    return out


def main() -> None:
    write_pcap(str(PCAP), datagrams())
    args = ["tshark", "-r", str(PCAP), "-d", "udp.port==6343,sflow", "-T", "fields", "-E", "header=y",
            "-E", "occurrence=a", "-E", "separator=\t", "-E", "aggregator=,"]
    for f in FIELDS:
        args += ["-e", f]
    TRUTH.write_text(subprocess.run(args, check=True, capture_output=True, text=True).stdout)


if __name__ == "__main__":
    main()
