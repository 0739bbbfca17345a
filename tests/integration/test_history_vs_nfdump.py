"""The history benchmark in small (bench/history.py): 200,000 flows over the last 72 hours sent as
IPFIX over loopback to a real collector + store and to the real nfcapd (one -y file per 5 minutes
of flow time); the store's answers through its query socket must equal nfdump's over the window's
files. Answers only, never timings.

Expected figures come from nfdump, not from FlowLens: its flow count, its top 10 sources and
destination ports with their bytes, its per-file series (-g) and one host's flows per 5 minutes.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import history  # noqa: E402
from bench import nfdumpfiles as nf  # noqa: E402

pytestmark = pytest.mark.skipif(not nf.have_nfcapd(),
                                reason="nfcapd/nfdump are not installed (Debian package nfdump; `make debs` installs it)")

FLOWS = 200_000


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return history.run_once(FLOWS, tmp_path_factory.mktemp("history"), repeat=1, log=lambda *_: None)


def test_every_flow_reaches_both_sides(result):
    checks = result.loaded.checks
    for key in ("store committed", "store rows in partitions", "collector decoded", "nfdump flows"):
        assert checks[key] == FLOWS, key
    for key in ("shed flows", "bus gaps", "kernel drops (collector socket)", "out of range flows"):
        assert checks[key] == 0, key


def test_store_answers_every_question_without_error(result):
    assert [a.question for a in result.answers if a.flowlens_error] == []


@pytest.mark.parametrize("question", [q.name for q in history.QUESTIONS])
def test_answer_equals_nfdumps(result, question):
    (a,) = [a for a in result.answers if a.question == question]
    assert a.flowlens_answer == a.nfdump_answer, a.note


def test_top_lists_are_full(result):
    for a in result.answers:
        if a.question.startswith("top 10"):
            assert len(a.nfdump_answer) == 10, a.question


def test_series_totals_are_the_windows(result):
    (all_hosts,) = [a for a in result.answers if a.question == "bytes per 5 min, 72 h"]
    flows = sum(v[0] for v in all_hosts.flowlens_answer.values())
    nbytes = sum(v[1] for v in all_hosts.flowlens_answer.values())
    assert (flows, nbytes) == (FLOWS, result.loaded.checks["nfdump bytes"])
    (one_host,) = [a for a in result.answers if a.question == "bytes per 5 min for one host, 72 h"]
    assert 0 < sum(v[0] for v in one_host.flowlens_answer.values()) < FLOWS


def test_flow_page_of_one_host(result):
    (a,) = [a for a in result.answers if a.question == "50 flows of one host, 24 h"]
    assert 0 < a.flowlens_answer == a.nfdump_answer <= 50   # an ordinary host: it may have fewer here


def test_explore_adds_up_and_answers_sealed_days_from_rollups(result):
    got = {(e.by, e.window_ms // history.HOUR_MS): e for e in result.explore}
    assert set(got) == {(by, h) for by in ("src", "in_if") for h in (1, 24, 72)}
    assert [k for k, e in got.items() if e.error or not e.adds_up] == []
    for by in ("src", "in_if"):  # every partition is sealed: whole hours and 5-minute steps are rollups
        assert got[by, 24].source == "rollups" and got[by, 24].steps == 288
        assert got[by, 72].source == "rollups" and got[by, 72].steps == 72
