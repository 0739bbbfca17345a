"""Memory bounds of the template state (review of issue 3, findings 1 and 2): held data sets charged
at least a fixed overhead against a per-exporter and a global budget, template fields bounded for
all exporters together, every eviction counted on its exporter with a reason."""
from __future__ import annotations

import json

from flowlens_collector.decode import Decoder
from flowlens_collector.decoders.pending import PENDING_QUEUE_OVERHEAD, PENDING_SET_OVERHEAD
from flowlens_collector.service import Collector
from flowmodel.config import load_config

from packet_builders import EXP, BASIC_V4, basic_record, ipfix_packet, set_ as _set, tmpl_ipfix, v9_packet



def by_exporter(dec: Decoder) -> dict:
    return {s["exporter"]: s for s in dec.exporter_stats()}


def held(dec: Decoder) -> tuple[int, int]:
    """(data sets held, bytes charged for them) as the decoder's own queues say."""
    t = dec._templated
    entries = [e for q in t.pending.queues.values() for e in q]
    return len(entries), (sum(len(e[0]) + PENDING_SET_OVERHEAD for e in entries)
                          + PENDING_QUEUE_OVERHEAD * len(t.pending.queues))


def test_floods_of_empty_and_tiny_data_sets_stay_within_the_exporter_bound():
    budget = 4096
    dec = Decoder(pending_max_bytes=budget)
    empty = v9_packet([_set(300 + i % 1000, b"") for i in range(16000)])  # 64 KB of empty sets
    for _ in range(3):
        dec.decode([empty], [EXP], 0)
    st = dec.exporter_stats()[0]
    assert (st["pending_sets"], st["pending_bytes"], st["pending_dropped"]) == (0, 0, {})
    assert held(dec) == (0, 0)  # nothing waits for a template with no records
    tiny = v9_packet([_set(300 + i % 1000, b"\x01") for i in range(10000)])  # 1-byte sets
    dec.decode([tiny, tiny], [EXP, EXP], 0)
    sets, charged = held(dec)
    # each new template id opens a queue (1 + set + queue overhead) until the next one would not fit;
    # later sets for those ids cost only 1 + set overhead until the budget is spent
    queues = budget // (1 + PENDING_SET_OVERHEAD + PENDING_QUEUE_OVERHEAD)
    more = (budget - queues * (1 + PENDING_SET_OVERHEAD + PENDING_QUEUE_OVERHEAD)) // (1 + PENDING_SET_OVERHEAD)
    assert sets == queues + more and charged <= budget
    st = dec.exporter_stats()[0]
    assert (st["pending_sets"], st["pending_bytes"]) == (sets, sets)
    assert st["pending_dropped"] == {"exporter_bound": 20000 - sets}
    assert st["decode_errors"] == {}


def test_global_pending_bound_drops_the_oldest_queue_and_counts_it():
    per_set = 1400 + PENDING_SET_OVERHEAD
    dec = Decoder(pending_max_bytes=100 * per_set, pending_total_max_bytes=10 * per_set)
    for host in range(6):  # 6 exporters x 3 sets of 1,400 bytes (one queue each): room for two queues
        src = (f"10.0.0.{host + 1}", 2055)
        dec.decode([v9_packet([_set(256, bytes(1400))], seq=k) for k in range(3)], [src] * 3, host)
    sets, charged = held(dec)
    whole_queues = 10 * per_set // (3 * per_set + PENDING_QUEUE_OVERHEAD)
    assert charged == dec._templated.pending.total <= 10 * per_set and sets == 3 * whole_queues == 6
    stats = by_exporter(dec)
    dropped = {h: s["pending_dropped"].get("global_bound", 0) for h, s in stats.items()}
    assert sum(dropped.values()) == 18 - sets
    assert sum(s["pending_sets"] for s in stats.values()) == sets
    # the oldest exporters' queues went first; the newest keep theirs
    assert dropped["10.0.0.1"] == 3 and dropped["10.0.0.2"] == 3 and dropped["10.0.0.6"] == 0
    assert stats["10.0.0.6"]["pending_sets"] == 3
    # the newest exporter's template comes: its held data decodes and the budget is given back
    b = dec.decode([v9_packet([_set(0, b"\x01\x00\x00\x01\x00\x01\x00\x04")], seq=3)], [("10.0.0.6", 2055)], 9)
    assert b.count == 3 * 350 and dec._templated.pending.total == held(dec)[1]


def test_global_template_field_cap_evicts_the_least_recently_refreshed_session():
    fields = [(1000 + i, 4) for i in range(99)] + [(1, 4)]  # 100 fields
    dec = Decoder(template_fields_total_max=300)
    tmpl = _set(2, tmpl_ipfix(300, fields))
    for host in (1, 2, 3):
        dec.decode([ipfix_packet([tmpl])], [(f"10.0.0.{host}", 4739)], host * 1000)
    dec.decode([ipfix_packet([tmpl])], [("10.0.0.1", 4739)], 4000)  # exporter 1 refreshes: 2 is oldest now
    b = dec.decode([ipfix_packet([tmpl, _set(300, bytes(399) + b"\x07")])], [("10.0.0.4", 4739)], 5000)
    assert b["bytes"].tolist() == [7]
    stats = by_exporter(dec)
    assert {h: s["templates"] for h, s in stats.items()} == \
        {"10.0.0.1": 1, "10.0.0.2": 0, "10.0.0.3": 1, "10.0.0.4": 1}
    assert stats["10.0.0.2"]["templates_dropped"] == {"global_fields": 1}
    assert dec._templated.store.total_fields == 300
    # a single template larger than the whole cap is refused, not allowed to evict everyone
    dec.decode([ipfix_packet([_set(2, tmpl_ipfix(301, [(1, 4)] * 301))])], [("10.0.0.5", 4739)], 6000)
    assert by_exporter(dec)["10.0.0.5"]["decode_errors"] == {"template_cap": 1}


def test_templates_file_text_is_the_state_and_changes_only_with_it():
    dec = Decoder()
    t = _set(2, tmpl_ipfix(300, BASIC_V4))
    dec.decode([ipfix_packet([t, _set(300, basic_record())])], [EXP], 1000)
    dec.decode([ipfix_packet([t], seq=1)], [EXP], 1500)  # confirms RFC numbering: saved with the templates
    gen = dec.templates_generation
    text = dec.templates_state_text()
    assert json.loads(text) == dec.templates_state()
    state = json.loads(text)
    assert state["format"] == 2 and [e["template_id"] for e in state["templates"]] == [300]
    assert state["sessions"][0]["refreshed_ms"] == 1500
    assert (state["sessions"][0]["ipfix_sequence"], state["sessions"][0]["ipfix_sequence_confirmed"]) == ("all", True)
    dec.decode([ipfix_packet([t], seq=1)], [EXP], 2000)  # a refresh within the same minute
    assert dec.templates_generation == gen
    dec.decode([ipfix_packet([t], seq=1)], [EXP], 61_000)  # a minute later: worth saving again
    assert dec.templates_generation > gen
    assert json.loads(dec.templates_state_text())["sessions"][0]["refreshed_ms"] == 61_000


# -- the collector's template saves: only when changed, written on a thread ---------------------

def _collector(tmp_path) -> Collector:
    cfg = load_config(None, env={}, overrides={"collector.template_path": str(tmp_path / "t" / "templates.json")})
    return Collector(cfg)  # inert: no sockets until start()


def _wait_save(c: Collector) -> None:
    if c.state.save_thread is not None:
        c.state.save_thread.join(10)


def test_templates_saved_on_a_thread_only_when_changed(tmp_path):
    c = _collector(tmp_path)
    path = tmp_path / "t" / "templates.json"
    c.decoder.decode([ipfix_packet([_set(2, tmpl_ipfix(300, BASIC_V4))])], [EXP], 1000)
    c.state.save()
    assert c.state.save_thread is not None and c.state.save_thread.name == "template-save"
    _wait_save(c)
    assert c.counters["template_saves"] == 1
    assert [e["template_id"] for e in json.loads(path.read_text())["templates"]] == [300]
    c.state.save()  # nothing changed: no thread, no write
    _wait_save(c)
    assert c.counters["template_saves"] == 1
    c.decoder.decode([ipfix_packet([_set(2, tmpl_ipfix(301, BASIC_V4))], seq=0)], [EXP], 2000)
    c.state.save()
    _wait_save(c)
    assert c.counters["template_saves"] == 2
    assert sorted(e["template_id"] for e in json.loads(path.read_text())["templates"]) == [300, 301]
    # at stop: unchanged and on disk, nothing written; removed, written again in place
    c.state.save(force=True)
    assert c.counters["template_saves"] == 2
    path.unlink()
    c.state.save(force=True)
    assert c.counters["template_saves"] == 3 and path.exists() and c.state.save_thread is None
    assert c.counters["template_save_errors"] == 0
