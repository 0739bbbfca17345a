"""The sFlow producer: a run of sFlow datagrams booked on the decoder's exporter rows and sequences."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from flowlens_collector import sflow_run
from flowlens_collector.decode import Decoder
from flowlens_collector.decoders import sflow
from flowmodel import addr
from flowmodel.pcap import read_datagrams
from sflow_builders import datagram, flow_sample, sampled_ethernet

DATA = Path(__file__).resolve().parents[2] / "data"
NOW = 1_700_000_000_000
SOURCE = ("192.0.2.50", 40000)


def _layout(datagrams: list[bytes], slot: int = 0):
    """The datagrams back to back (slot 0), or each at the start of a ``slot``-byte receive slot."""
    if not slot:
        lengths = np.array([len(d) for d in datagrams], np.int64)
        return b"".join(datagrams), np.cumsum(lengths) - lengths, lengths
    buf = bytearray(slot * len(datagrams))
    for k, d in enumerate(datagrams):
        buf[k * slot:k * slot + len(d)] = d
    return bytes(buf), np.arange(len(datagrams), dtype=np.int64) * slot, np.array([len(d) for d in datagrams])


def _rows(dec: Decoder) -> dict:
    return {(r["exporter"], r["observation_domain"]): r for r in dec.exporter_stats()}


def test_pmacct_capture_booked_per_agent():
    payloads = [d.payload for d in read_datagrams(str(DATA / "pmacct_sflow_dns.pcap"))]
    truth = len((DATA / "pmacct_sflow_dns.sflow.jsonl").read_text().splitlines())
    for slot in (0, 2048):  # copied (unaligned, no room after) and in place (aligned receive slots)
        dec = Decoder()
        batch = sflow_run.decode_run(dec.acct, *_layout(payloads, slot), [SOURCE] * len(payloads), NOW)
        assert len(batch) == truth
        row = _rows(dec)[("127.0.0.1", 7)]
        assert (row["version"], row["packets"], row["flows"]) == (105, len(payloads), truth)
        assert (row["sequence_lost"], row["sequence_backward"], row["decode_errors"]) == (0, 0, {})
        assert set(addr.column_to_text(batch["exporter"])) == {"127.0.0.1"}


def test_lost_datagram_is_counted():
    payloads = [d.payload for d in read_datagrams(str(DATA / "pmacct_sflow_icmp.pcap"))]
    kept = payloads[:5] + payloads[7:]
    dec = Decoder()
    sflow_run.decode_run(dec.acct, *_layout(kept), [SOURCE] * len(kept), NOW)
    assert _rows(dec)[("127.0.0.1", 7)]["sequence_lost"] == 2


def test_bad_datagrams_counted_on_agent_or_source_and_agentless_flows_take_the_source():
    good = datagram([flow_sample([sampled_ethernet(64)])], agent="198.51.100.1", sub_agent=4)
    agentless = datagram([flow_sample([sampled_ethernet(65)])], agent=None)
    bad = good[:30]  # its header names its agent: counted there
    broken = good[:4] + b"\0\0\0\x09" + good[8:]  # an agent address type that does not exist
    other = ("192.0.2.60", 40001)
    dec = Decoder()
    batch = sflow_run.decode_run(dec.acct, *_layout([good, bad, broken, agentless]), [SOURCE, other, other, SOURCE],
                                 NOW)
    rows = _rows(dec)
    assert rows[("192.0.2.60", 0)]["decode_errors"] == {"bad_agent_address": 1}
    assert rows[("198.51.100.1", 4)]["decode_errors"] == {"bad_sample_count": 1}  # 1 sample in 2 bytes
    assert (rows[("198.51.100.1", 4)]["flows"], rows[("198.51.100.1", 4)]["packets"]) == (1, 1)
    assert rows[("192.0.2.50", 0)]["flows"] == 1
    assert addr.column_to_text(batch["exporter"]) == ["198.51.100.1", "192.0.2.50"]
    assert "exporter" not in batch.hints


def test_is_sflow_tells_netflow_apart():
    v5 = bytes([0, 5]) + bytes(22)
    ipfix = bytes([0, 10]) + bytes(14)
    buf, offsets, lengths = _layout([datagram([]), v5, ipfix, b"\0\0\0"])
    assert sflow_run.is_sflow(buf + bytes(8), offsets, lengths).tolist() == [True, False, False, False]
    assert sflow.VERSION == 5


def test_decoder_dispatches_sflow_among_netflow():
    """One group with NetFlow v5, sFlow and IPFIX datagrams: each goes to its decoder, in order."""
    v5 = [d.payload for d in read_datagrams(str(DATA / "softflowd_v5_dns.pcap"))][:2]
    sf = [d.payload for d in read_datagrams(str(DATA / "pmacct_sflow_dual.pcap"))][:3]
    ipfix = [d.payload for d in read_datagrams(str(DATA / "softflowd_ipfix_dns.pcap"))]
    group = v5[:1] + sf[:2] + v5[1:] + sf[2:] + ipfix
    src = ("127.0.0.1", 40000)
    dec = Decoder()
    batch = dec.decode(group, [src] * len(group), NOW)
    alone = Decoder()
    expected_sflow = sum(len(sflow.decode_datagrams([d], NOW).flow_datagram) for d in sf)
    expected_netflow = alone.decode(v5 + ipfix, [src] * (len(v5) + len(ipfix)), NOW).count
    versions = batch["flow_version"]
    assert int((versions == sflow.FLOW_VERSION).sum()) == expected_sflow > 0
    assert int((versions != sflow.FLOW_VERSION).sum()) == expected_netflow > 0
    rows = _rows(dec)
    assert rows[("127.0.0.1", 7)]["packets"] == 3 and rows[("127.0.0.1", 7)]["version"] == 105
    assert all(r["decode_errors"] == {} for r in rows.values())
    # the sFlow stream's sequence is saved and restored like NetFlow's
    saved = [e for e in dec.sequence_state() if e[2] == 105]
    assert saved and saved[0][:4] == ["127.0.0.1", 40000, 105, 7] and saved[0][4] == 4
    again = Decoder()
    assert again.load_sequence_state(saved, NOW, 60_000) == 1
    later = [d.payload for d in read_datagrams(str(DATA / "pmacct_sflow_dual.pcap"))][5:6]  # sequence 6
    again.decode(later, [src], NOW)
    assert _rows(again)[("127.0.0.1", 7)]["sequence_lost"] == 2


def test_if_counters_go_to_the_deltas_keyed_by_agent_or_source():
    from sflow_builders import counter_sample, if_counters
    dec = Decoder()
    polls = [(1, 1000, 100), (2, 21_000, 400)]
    with_agent = [datagram([counter_sample([if_counters(3, octets, 0)], sequence=seq)], sequence=seq, uptime_ms=up)
                  for seq, up, octets in polls]
    agentless = [datagram([counter_sample([if_counters(3, octets * 10, 0)], sequence=seq)], agent=None,
                          sequence=seq, uptime_ms=up) for seq, up, octets in polls]
    for group in (with_agent, agentless):
        for d in group:  # one datagram a run, as polls arrive
            sflow_run.decode_run(dec.acct, *_layout([d]), [SOURCE], NOW, dec.if_counters)
    rows = dec.if_counters.take()
    assert [(r["exporter"], r["ifindex"], r["in_octets"]) for r in rows] == \
        [("192.0.2.1", 3, 300), ("192.0.2.50", 3, 3000)]
    assert dec.if_counters.counters["if_counter_samples"] == 4


def test_decoder_feeds_its_deltas():
    from sflow_builders import counter_sample, if_counters
    dec = Decoder(max_if_counters=1)
    for seq, octets in ((1, 10), (2, 15)):
        d = datagram([counter_sample([if_counters(9, octets, 0)], sequence=seq)], sequence=seq, uptime_ms=seq * 1000)
        dec.decode([d], [SOURCE], NOW)
    assert [r["in_octets"] for r in dec.if_counters.take()] == [5]
