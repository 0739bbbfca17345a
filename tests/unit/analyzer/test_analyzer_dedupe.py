"""Flow batches a collector sends again (confirmed delivery, after the store came back) are counted
once by the analyzer: dropped by (stream, batch_seq), not taken as bus gaps or restarts."""
from flowlens_analyzer.dedupe import SeenBatches
from flowlens_analyzer.service import AnalyzerService
from flowmodel import bus

from flows import batch, config


def test_highest_seq_per_stream_with_a_bounded_memory():
    seen = SeenBatches(max_streams=2)
    assert [seen.is_new("c@a:1/1", s, 10) for s in (1, 2, 3)] == [True, True, True]
    assert [seen.is_new("c@a:1/1", s, 10) for s in (2, 3, 4)] == [False, False, True]  # go-back-N from 2
    assert (seen.duplicate_batches, seen.duplicate_flows) == (2, 20)
    assert seen.is_new(None, 0) and seen.is_new(None, 0)  # a sender without confirmed delivery
    seen.is_new("c@a:2/1", 1)
    seen.is_new("c@a:1/1", 5)  # touched: now the most recent
    seen.is_new("c@a:3/1", 1)  # a third stream: the least recently seen (c@a:2/1) is forgotten
    assert list(seen.last_seq) == ["c@a:1/1", "c@a:3/1"] and seen.forgotten_streams == 1
    assert not seen.is_new("c@a:1/1", 5)


def test_service_counts_a_resent_batch_once_and_sees_no_bus_gap():
    svc = AnalyzerService(config())  # inert: _handle needs no socket
    seq = bus.Sequencer("collector@a:1")
    stream = "collector@a:1/1700000000000"
    bodies = [bus.encode_batch(batch("10.0.0.1", "10.0.0.2", 443, n=n), seq, stream=stream, batch_seq=i,
                               flows_before=100 * (i - 1))
              for i, n in ((1, 100), (2, 100), (3, 50))]
    health = bus.encode_event({"kind": "collector", "collector": "collector@a:1", "counters": {}}, seq)
    for body in bodies + [health] + bodies[1:]:  # the store stopped confirming: 2 and 3 come again
        topic = bus.TOPIC_EXPORTER if body is health else bus.flows_topic(9)
        svc._handle([topic, body])
    after = bus.encode_batch(batch("10.0.0.1", "10.0.0.2", 443, n=7), seq, stream=stream, batch_seq=4,
                             flows_before=250)
    svc._handle([bus.flows_topic(9), after])
    stats = svc.stats()
    assert (stats["batches"], stats["flows"]) == (4, 257)
    assert (stats["duplicate_batches"], stats["duplicate_flows"]) == (2, 150)
    assert svc.gaps.total_gaps == 0 and not svc.gaps.restarts
    assert svc.engine.window.counters["flows"] == 257
