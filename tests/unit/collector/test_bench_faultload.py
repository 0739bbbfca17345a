"""The fault benchmark's traffic (bench/faultload.py) decodes as its accounting assumes: each valid
flood datagram is RECORDS flows on its own, in any order; fuzzed noise never becomes a flow but is
counted as errors or held data; a round of scans is scanners x ports flows with no sequence gap."""
from __future__ import annotations

import random
import sys
import time
from pathlib import Path

from flowlens_collector.decode import Decoder

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from bench import faultload  # noqa: E402

NOW_MS = int(time.time() * 1000)


def test_valid_flood_datagrams_decode_alone_in_any_order():
    template_set = faultload._v9_template_set()
    datagrams = [faultload.valid_v9(1 + d, 0, faultload._v9_data_set(faultload.RECORDS, d), template_set,
                                    faultload.RECORDS) for d in range(40)]
    random.Random(3).shuffle(datagrams)
    decoder = Decoder()
    batch = decoder.decode(datagrams, [("127.1.0.1", 5000)] * len(datagrams), NOW_MS)
    assert batch.count == 40 * faultload.RECORDS
    stats = decoder.exporter_stats()
    assert not any(s["decode_errors"] or s["pending_sets"] for s in stats), stats


def test_noise_never_decodes_into_flows_and_is_counted():
    rng = random.Random(13)
    noise = [faultload.noise(rng, faultload.NOISE_DOMAIN + i) for i in range(3000)]
    decoder = Decoder()
    batch = decoder.decode(noise, [("127.1.0.2", 5000)] * len(noise), NOW_MS)
    assert batch.count == 0
    stats = decoder.exporter_stats()
    errors = sum(sum(s["decode_errors"].values()) for s in stats)
    held = sum(s["pending_sets"] + sum(s["pending_dropped"].values()) for s in stats)
    assert errors >= 2000 and held > 0, (errors, held)


def test_a_round_of_scans_is_every_probe_once():
    packets = faultload.scan_packets(0, 100, 25, 0) + faultload.scan_packets(1, 100, 25, 2500)
    decoder = Decoder()
    batch = decoder.decode(packets, [("127.3.0.1", 5000)] * len(packets), NOW_MS)
    assert batch.count == 2 * 100 * 25
    assert len(set(bytes(a) for a in batch.columns["src_addr"])) == 200
    (row,) = decoder.exporter_stats()
    assert row["sequence_lost"] == 0 and not row["decode_errors"]
