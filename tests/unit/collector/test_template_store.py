"""The v9/IPFIX template store (decoders/template_store.py), on its own: keys, refreshes that keep
the compiled template, the caps and which session each one names for eviction, withdrawals, and
the refresh order that template lifetimes follow."""
from __future__ import annotations

import json

from flowlens_collector.decoders.template_store import TemplateStore
from flowlens_collector.decoders.templates import Template

S1 = ("192.0.2.1", 4000, 10, 0)
S2 = ("192.0.2.1", 4001, 10, 0)
S3 = ("192.0.2.2", 4000, 10, 0)
FIELDS = [(8, 4, 0), (12, 4, 0), (1, 4, 0), (2, 4, 0)]


def _t(tid: int, fields=FIELDS, options=False, scope=0) -> Template:
    return Template(10, tid, fields, options=options, scope_count=scope)


def test_templates_are_keyed_by_session_and_id_and_a_refresh_keeps_the_compiled_one():
    s = TemplateStore(10, 1000, 10)
    first = s.install(S1 + (300,), _t(300), 1)
    s.install(S2 + (300,), _t(300, FIELDS[:2]), 2)  # same id, another port: another template
    assert s.get(S1 + (300,)).record_len == 16 and s.get(S2 + (300,)).record_len == 8
    gen = s.generation
    assert s.install(S1 + (300,), _t(300), 3) is first  # a refresh: nothing recompiled or rewritten
    assert s.generation == gen and list(s.refreshed) == [S2, S1]
    assert json.loads(s.fragments[S1 + (300,)])["fields"] == [list(f) for f in FIELDS]
    assert s.by_stats_key() == {("192.0.2.1", 0): 2} and s.total_fields == 6


def test_caps_name_the_least_recently_refreshed_session_to_evict():
    s = TemplateStore(2, 1000, 2)
    s.install(S1 + (300,), _t(300), 1)
    s.install(S1 + (301,), _t(301), 2)
    assert s.over_cap(S1, S1 + (302,), _t(302)) == (None, "exporter_cap")  # no other session of it
    s.install(S2 + (300,), _t(300), 3)  # (bounds are the caller's: over_cap would have refused)
    assert s.over_cap(S1, S1 + (303,), _t(303)) == (S2, "exporter_cap")
    assert s.over_cap(S3, S3 + (300,), _t(300)) == (S1, "session_cap")  # 2 sessions hold templates
    assert s.over_cap(S1, S1 + (300,), _t(300)) is None  # replacing one it holds adds nothing
    wide = TemplateStore(10, 10, 10)
    wide.install(S1 + (300,), _t(300), 1)
    assert wide.over_cap(S3, S3 + (300,), _t(300, FIELDS * 2)) == (S1, "global_fields")


def test_withdrawals_and_session_drops_release_what_they_held():
    s = TemplateStore(10, 1000, 10)
    s.install(S1 + (300,), _t(300), 1)
    s.install(S1 + (400,), _t(400, [(0x10000 + 1, 4, 0), (34, 4, 0)], options=True, scope=1), 1)
    assert S1 in s.sampling_sessions  # its options template announces a sampling interval
    s.remember_template_set(S1, b"set bytes")
    s.withdraw_all(S1, options=True)
    assert S1 not in s.sampling_sessions and s.get(S1 + (400,)) is None and S1 not in s.template_sets
    s.install(S2 + (300,), _t(300), 2)
    assert s.drop_session(S1) == 1 and len(s) == 1 and s.total_fields == 4
    assert s.oldest_refresh() == (S2, 2) and S1 + (300,) not in s.fragments
    s.drop(S2 + (300,))
    assert len(s) == 0 and s.oldest_refresh() is None and s.total_fields == 0
