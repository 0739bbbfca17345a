"""Restart state (issue 13 item 3): the exporters' sequence numbers saved beside the templates and
continued by the next run, so what an exporter sent while the collector was down is counted as lost;
the collector saves them as of the flows made durable (seqmarks.py).
Units as the decoder counts gaps: v5 flows, v9 export packets, IPFIX data records."""
from __future__ import annotations

import json

from packet_builders import BASIC_V4, EXP, basic_record, ipfix_packet, set_, stats_of, tmpl_ipfix, tmpl_v9, v5_packet, \
    v9_packet
from flowlens_collector.decode import Decoder
from flowlens_collector.service import Collector
from flowlens_collector.templates_file import load_sequences, save_text, sequences_path, sequences_text
from flowmodel.config import load_config

T9 = set_(0, tmpl_v9(300, BASIC_V4))
T10 = set_(2, tmpl_ipfix(300, BASIC_V4))
HOUR_MS = 3_600_000


def _restart(dec: Decoder, now_ms: int, max_age_ms: int = HOUR_MS) -> tuple[Decoder, int]:
    """A new decoder given the old one's templates and sequence state, as a restarted collector is."""
    templates = json.loads(dec.templates_state_text())
    streams = json.loads(sequences_text(dec.sequence_state(), now_ms))["streams"]
    new = Decoder()
    new.load_templates_state(templates, now_ms)
    return new, new.load_sequence_state(streams, now_ms, max_age_ms)


def test_v9_gap_across_a_restart_counts_packets():
    dec = Decoder()
    dec.decode([v9_packet([T9, set_(300, basic_record())], seq=s) for s in (1, 2, 3)], [EXP] * 3, 1000)
    assert dec.sequence_state() == [[EXP[0], EXP[1], 9, 0, 4, 1000, None]]
    new, restored = _restart(dec, 5000)
    assert restored == 1
    # packets 4..10 went while the collector was down; 11 decodes with the template of the last run
    batch = new.decode([v9_packet([set_(300, basic_record(nbytes=777))], seq=11)], [EXP], 6000)
    assert batch.count == 1 and int(batch.columns["bytes"][0]) == 777
    st = stats_of(new)
    assert (st["sequence_lost"], st["sequence_resets"], st["sequence_backward"]) == (7, 0, 0)


def test_ipfix_gap_across_a_restart_counts_records():
    dec = Decoder()
    seq = 0
    for _ in range(3):  # 2 records per message, RFC numbering
        dec.decode([ipfix_packet([T10, set_(300, basic_record() * 2)], seq=seq)], [EXP], 1000)
        seq += 2
    new, restored = _restart(dec, 2000)
    assert restored == 1
    seq += 5 * 2  # five messages of 2 records sent while down
    batch = new.decode([ipfix_packet([set_(300, basic_record() * 2)], seq=seq)], [EXP], 3000)
    assert batch.count == 2
    assert (stats_of(new)["sequence_lost"], stats_of(new)["sequence_resets"]) == (10, 0)


def test_v5_gap_across_a_restart_counts_flows():
    dec = Decoder()
    dec.decode([v5_packet(3, 0), v5_packet(3, 3)], [EXP] * 2, 1000)
    new, _ = _restart(dec, 2000)
    new.decode([v5_packet(3, 6 + 30)], [EXP], 3000)
    assert stats_of(new)["sequence_lost"] == 30


def test_old_state_is_not_continued():
    dec = Decoder()
    dec.decode([v9_packet([T9], seq=s) for s in (1, 2)], [EXP] * 2, 1000)
    new, restored = _restart(dec, 1000 + HOUR_MS, max_age_ms=HOUR_MS)
    assert restored == 0
    new.decode([v9_packet([T9], seq=50)], [EXP], 1000 + HOUR_MS)
    assert stats_of(new)["sequence_lost"] == 0  # a new stream: nothing known to be lost


def test_ipfix_stream_needs_its_saved_numbering():
    """The expected number means nothing under another numbering: without the templates file's
    numbering for the session (or with another one) the stream starts afresh."""
    dec = Decoder()
    dec.decode([ipfix_packet([T10, set_(300, basic_record())], seq=0)], [EXP], 1000)
    streams = dec.sequence_state()
    assert streams[0][6] == "all"
    assert Decoder().load_sequence_state(streams, 2000, HOUR_MS) == 0  # no templates loaded
    streams[0][6] = "inclusive"
    new = Decoder()
    new.load_templates_state(dec.templates_state(), 2000)
    assert new.load_sequence_state(streams, 2000, HOUR_MS) == 0


def test_a_stream_not_heard_from_keeps_its_saved_time():
    """Saved again by the restarted run before the exporter comes back: the time stays the one of
    its last packet, so a collector restarting in a loop does not keep stale numbers alive."""
    dec = Decoder()
    dec.decode([v9_packet([T9], seq=1)], [EXP], 1000)
    new, _ = _restart(dec, 5000)
    assert new.sequence_state() == [[EXP[0], EXP[1], 9, 0, 2, 1000, None]]


def test_malformed_entries_are_skipped():
    good = [EXP[0], EXP[1], 9, 0, 2, 1000, None]
    streams = [None, [], ["x"], [EXP[0], "p", 9, 0, 2, 1000], [EXP[0], 1, 7, 0, 2, 1000], [EXP[0], 1, 9, 0, -1, 1000],
               [EXP[0], 1, 9, 0, 2, 9000], good]
    dec = Decoder()
    assert dec.load_sequence_state(streams, 2000, HOUR_MS) == 1


def test_sequence_file_beside_the_templates(tmp_path):
    assert sequences_path("/d/templates.json") == "/d/templates.sequences.json"
    assert sequences_path("/d/templates") == "/d/templates.sequences.json"
    path = str(tmp_path / "templates.sequences.json")
    assert load_sequences(path) == []
    save_text(path, sequences_text([["a", 1, 9, 0, 2, 1000, None]], 1234))
    assert load_sequences(path) == [["a", 1, 9, 0, 2, 1000, None]]
    save_text(path, '{"format": 99, "streams": []}')
    assert load_sequences(path) == []
    (tmp_path / "templates.sequences.json").write_text("{not json")
    assert load_sequences(path) == []
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temp file left behind


def _collector(tmp_path) -> Collector:
    cfg = load_config(None, env={}, overrides={"collector.template_path": str(tmp_path / "templates.json")})
    return Collector(cfg)  # inert: no sockets until start()


def _restarted(path, committed: dict[str, int]) -> Collector:
    """A collector started again on the files at ``path`` after a crash, the store saying it
    committed ``committed`` (stream -> highest batch_seq) of the previous run."""
    c = _collector(path)
    c.state.load_templates()
    c.state.load_sequences({})
    if c.state.marks.unresolved:
        c.state.resolve_sequences(committed)
    return c


def test_sequence_marks_follow_the_batches_made_durable(tmp_path):
    """Marks are journaled per publication; the sequence file holds only durable ones, and a restart
    after a crash continues from the newest mark whose batch the store committed, not one later."""
    c = _collector(tmp_path)
    c.state.load_templates()
    c.state.load_sequences({})
    c._decode([v9_packet([T9, set_(300, basic_record())], seq=s) for s in (1, 2)], [EXP] * 2)
    c.state.marks.record("run-1", 1, c.decoder)     # batch 1 ends the flows of packets 1-2: expects 3
    c._decode([v9_packet([set_(300, basic_record())], seq=3)], [EXP])
    c.state.marks.record("run-1", 2, c.decoder)     # batch 2: expects 4
    c.state.save()
    c.state.save_thread.join(10)
    assert [s[4] for s in load_sequences(str(tmp_path / "templates.sequences.json"))] == []  # nothing durable yet
    c.state.marks.durable_through("run-1", 1)       # the store confirms batch 1
    c.state.save()
    c.state.save_thread.join(10)
    assert [s[4] for s in load_sequences(str(tmp_path / "templates.sequences.json"))] == [3]
    assert sorted(p.name for p in tmp_path.glob("*.journal")) == ["templates.sequences.2.journal"]
    # a crash here: batch 2 went out; whether the store committed it decides where the count goes on
    last_seen = c.decoder.exporter_stats()[0]["last_seen"]
    for committed, lost in (({"run-1": 2}, 4), ({"run-1": 1}, 5), ({}, 5)):
        copy = tmp_path / f"copy-{len(committed)}-{committed.get('run-1')}"
        copy.mkdir()
        for f in tmp_path.glob("templates*"):
            (copy / f.name).write_bytes(f.read_bytes())
        again = _restarted(copy, committed)
        assert again.counters["sequences_loaded"] == 1
        batch = again.decoder.decode([v9_packet([set_(300, basic_record())], seq=8)], [EXP], last_seen + 10)
        assert batch.count == 1 and stats_of(again.decoder)["sequence_lost"] == lost, committed
        # the resolved state is saved at once, the previous run's journals gone
        assert [p.name for p in copy.glob("*.journal")] == ["templates.sequences.3.journal"]


def test_spooled_batches_are_durable_without_an_ack(tmp_path):
    c = _collector(tmp_path)
    c.state.load_sequences({})
    c._decode([v5_packet(3, 10)], [EXP])
    c.state.marks.record("run-1", 1, c.decoder)
    assert not c.state.marks.durable
    again = _collector(tmp_path)
    again.state.load_sequences({"run-1": 1})  # the spool holds batch 1: no ack needed
    assert not again.state.marks.unresolved and again.counters["sequences_loaded"] == 1


def test_without_a_template_path_nothing_is_saved_or_journaled(tmp_path):
    cfg = load_config(None, env={}, overrides={"collector.template_path": ""})
    c = Collector(cfg)
    c.state.load_sequences({"run-0": 3})
    c._decode([v5_packet(3, 10)], [EXP])
    c.state.marks.record("run-1", 1, c.decoder)
    c.state.marks.durable_through("run-1", 1)
    c.state.close()
    assert not c.state.marks.pending and c.counters["sequence_saves"] == 0


def test_pending_marks_past_their_bound_are_merged_oldest_first(tmp_path):
    cfg = load_config(None, env={}, overrides={"collector.template_path": str(tmp_path / "templates.json")})
    c = Collector(cfg)
    c.state.load_sequences({})
    c.state.marks.pending_max_bytes = 1  # every new mark folds the one before it in
    c._decode([v5_packet(3, 10)], [EXP])
    c.state.marks.record("run-1", 1, c.decoder)
    c._decode([v5_packet(3, 13)], [("192.0.2.9", 2055)])
    c.state.marks.record("run-1", 2, c.decoder)
    assert len(c.state.marks.pending) == 1 and c.counters["sequence_marks_merged"] == 1
    c.state.marks.durable_through("run-1", 1)
    assert not c.state.marks.durable  # batch 1's mark went into batch 2's
    c.state.marks.durable_through("run-1", 2)
    assert sorted(e[4] for e in c.state.marks.durable.values()) == [13, 16]  # both exporters' streams
