"""Flow times that cannot be real: flows ending over a day after the collector's clock are dropped in
one mask over the batch and counted per exporter and reason (time_in_future, in flows); old times stay."""
import numpy as np

from flowmodel import addr
from flowmodel.schema import FlowBatch
from flowlens_collector import flowtimes
from flowlens_collector.decode import Decoder
from flowlens_collector.exporters import Stats

from packet_builders import BASIC_V4, be, ipfix_packet, set_, tmpl_ipfix

NOW = 1_764_000_000_000
DAY = 86_400_000
FAR_FUTURE_MS = 9_151_314_449_241_600_000  # flowEndMilliseconds of a spoofed IPFIX record
TIMED = BASIC_V4 + [(152, 8), (153, 8)]  # flowStartMilliseconds, flowEndMilliseconds


def _batch(ends, exporters, domains) -> FlowBatch:
    b = FlowBatch.empty(len(ends))
    b.columns["time_end"][:] = ends
    b.columns["time_start"][:] = np.minimum(ends, NOW)
    b.columns["exporter"][:] = addr.from_texts(exporters)
    b.columns["observation_domain"][:] = domains
    b.columns["bytes"][:] = np.arange(len(ends))  # tells the rows apart
    return b


def test_mask_drops_only_flows_over_a_day_ahead_and_counts_them_per_exporter_and_domain():
    ends = [NOW, NOW + DAY, NOW + DAY + 1, FAR_FUTURE_MS, 0, -9_000_000_000_000_000_000, (1 << 63) - 1,
            1_230_000_000_000, FAR_FUTURE_MS]
    exps = ["192.0.2.1", "192.0.2.1", "192.0.2.1", "192.0.2.1", "192.0.2.1", "192.0.2.2", "192.0.2.2",
            "2001:db8::1", "192.0.2.1"]
    doms = [0, 0, 0, 0, 0, 0, 0, 0, 7]
    made: dict[tuple, Stats] = {}

    def stats_of(exporter, domain):
        return made.setdefault((exporter, domain), Stats(exporter, domain, NOW))

    kept = flowtimes.drop_future(_batch(ends, exps, doms), NOW, stats_of)
    # a day ahead exactly, now, 1970, before year 1 and 2008 (a replayed capture) stay, in order
    assert kept.columns["bytes"].tolist() == [0, 1, 4, 5, 7]
    assert {k: s.decode_errors for k, s in made.items()} == {
        ("192.0.2.1", 0): {"time_in_future": 2}, ("192.0.2.2", 0): {"time_in_future": 1},
        ("192.0.2.1", 7): {"time_in_future": 1}}
    assert made[("192.0.2.1", 0)].time_ahead_max_s == (FAR_FUTURE_MS - NOW) // 1000
    assert made[("192.0.2.2", 0)].time_ahead_max_s == ((1 << 63) - 1 - NOW) // 1000
    # nothing ahead: the same batch back, no counter touched
    b = _batch([NOW, 0], ["192.0.2.3"] * 2, [0, 0])
    assert flowtimes.drop_future(b, NOW, stats_of) is b and ("192.0.2.3", 0) not in made


def _record(end_ms: int, src: str = "10.0.0.1") -> bytes:
    from packet_builders import basic_record
    return basic_record(src=src) + be(min(end_ms, NOW), 8) + be(end_ms & ((1 << 64) - 1), 8)


def test_decoder_drops_a_far_future_ipfix_record_and_keeps_one_from_1970():
    dec = Decoder(max_time_ahead_ms=flowtimes.MAX_AHEAD_MS)
    packet = ipfix_packet([set_(2, tmpl_ipfix(300, TIMED)),
                           set_(300, _record(FAR_FUTURE_MS, "10.9.9.9") + _record(1000, "10.1.1.1"))],
                          export_s=NOW // 1000, domain=5)
    b = dec.decode([packet], [("192.0.2.9", 4739)], NOW)
    assert b.count == 1 and b.columns["time_end"].tolist() == [1000]
    assert addr.to_text(bytes(b.columns["src_addr"][0])) == "10.1.1.1"
    (st,) = dec.exporter_stats()
    assert (st["exporter"], st["observation_domain"]) == ("192.0.2.9", 5)
    assert st["decode_errors"] == {"time_in_future": 1}
    assert st["time_ahead_max_s"] == (FAR_FUTURE_MS - NOW) // 1000
    assert st["flows"] == 2  # decoded, then one refused


def test_decoder_without_a_wall_clock_keeps_every_time():
    dec = Decoder()  # tests and benches drive now_ms by hand: no guard unless the service asks for it
    packet = ipfix_packet([set_(2, tmpl_ipfix(300, TIMED)), set_(300, _record(FAR_FUTURE_MS))], export_s=NOW // 1000)
    assert dec.decode([packet], [("192.0.2.9", 4739)], NOW).count == 1
    assert dec.exporter_stats()[0]["decode_errors"] == {}
