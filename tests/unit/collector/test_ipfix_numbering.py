"""IPFIX sequence numbering per session (decoders/numbering.py), on its own: the guess from the
first message, its confirmation or correction, and the loss each numbering hands to the tracker."""
from __future__ import annotations

import numpy as np

from flowlens_collector.accounting import Accounting
from flowlens_collector.decoders.numbering import IpfixNumbering

S = ("192.0.2.1", 4000, 10, 0)


def _numbering():
    acct = Accounting(10, 60_000)
    return acct, IpfixNumbering(acct, 16), acct.stats(S[0], S[3], 0)


def test_rfc_numbering_counts_records_before_the_message():
    acct, num, st = _numbering()
    for seq, recs in ((100, 5), (105, 7), (112, 3), (125, 2)):  # 10 records lost before 125
        num.observe(S, seq, recs, recs, st)
    assert num.mode(S) == "all" and st.sequence_lost == 10
    assert num.saved(S) == ("all", True)


def test_softflowd_counts_its_own_records_and_not_its_options():
    acct, num, st = _numbering()
    num.observe(S, 4, 5, 4, st)      # seq == flow records of the first message: inclusive_flows
    num.observe(S, 10, 6, 6, st)
    num.observe(S, 13, 3, 3, st)
    assert num.mode(S) == "inclusive_flows" and st.sequence_lost == 0


def test_a_wrong_guess_is_switched_without_counting_a_loss():
    acct, num, st = _numbering()
    num.observe(S, 3, 3, 3, st)       # looks inclusive (seq == records) ...
    assert num.mode(S) == "inclusive"
    num.observe(S, 6, 4, 4, st)       # ... but the next is numbered as RFC 7011 says (3 + 3), not 3 + 4
    num.observe(S, 10, 2, 2, st)
    assert num.mode(S) == "all" and num.saved(S)[1] and st.sequence_lost == 0


def test_a_message_with_held_sets_starts_the_count_afresh():
    acct, num, st = _numbering()
    num.observe(S, 0, 5, 5, st)
    num.unknown(S)
    assert num.known(S) is None
    num.observe(S, 500, 5, 5, st)  # records of the held sets are unknown: no loss counted
    assert st.sequence_lost == 0 and num.known(S) is not None


def test_a_run_confirms_the_numbering_from_its_steps_and_remembers_its_last_message():
    acct, num, st = _numbering()
    num.observe(S, 0, 24, 24, st)
    info = num.known(S)
    before = num.generation
    mode = num.run_mode(S, info, np.array([24, 48, 72], np.int64), np.array([24, 24, 24], np.int64), 0)
    assert mode == "all" and info[1] is False  # equal counts fit both numberings: not yet confirmed
    mode = num.run_mode(S, info, np.array([96, 120], np.int64), np.array([24, 10], np.int64), 0)
    assert mode == "all" and info[1] is True and num.generation > before
    assert info[2:] == [120, 10, 10]


def test_restored_modes_are_checked_and_the_table_is_bounded():
    acct, num, st = _numbering()
    num.restore(S, "inclusive", True)
    assert num.saved(S) == ("inclusive", True) and num.confirmed() == [S]
    for bad in (("192.0.2.1", 4000, 9, 0), S):
        try:
            num.restore(bad, "inclusive" if bad[2] == 9 else "bogus", False)
        except ValueError:
            pass
        else:
            raise AssertionError(f"{bad} accepted")
    for d in range(40):
        num.observe(("192.0.2.9", 1, 10, d), 0, 1, 1, st)
    assert len(num.modes) <= 16
