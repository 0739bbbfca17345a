"""The queue of data sets waiting for their template (decoders/pending.py), on its own: what it
charges, which bound refuses a set, which queue goes first, and what ages out, each counted on
the exporter a user looks at."""
from __future__ import annotations

from flowlens_collector.accounting import Accounting
from flowlens_collector.decoders.pending import PENDING_QUEUE_OVERHEAD, PENDING_SET_OVERHEAD, PendingSets

A = ("192.0.2.1", 4000, 10, 0)
B = ("192.0.2.2", 4000, 10, 0)


def _pending(max_bytes=10_000, total=20_000, age=1_000):
    acct = Accounting(10, 60_000)
    return acct, PendingSets(acct, max_bytes, total, age)


def test_held_sets_come_back_in_order_and_release_their_charge():
    acct, p = _pending()
    st = acct.stats(A[0], A[3], 0)
    assert p.hold(A + (300,), b"x" * 100, st, 5_000, -1, 10)
    assert p.hold(A + (300,), b"y" * 50, st, 6_000, -1, 20)
    assert p.total == 150 + 2 * PENDING_SET_OVERHEAD + PENDING_QUEUE_OVERHEAD
    assert p.by_stats_key() == {(A[0], A[3]): [2, 150]}
    assert p.take(A + (300,)) == [(b"x" * 100, 5_000, -1, 10), (b"y" * 50, 6_000, -1, 20)]
    assert p.total == 0 and len(p) == 0 and p.take(A + (300,)) == []


def test_the_exporter_bound_refuses_and_counts_on_that_exporter():
    acct, p = _pending(max_bytes=PENDING_QUEUE_OVERHEAD + 2 * (100 + PENDING_SET_OVERHEAD))
    st = acct.stats(A[0], A[3], 0)
    assert p.hold(A + (300,), bytes(100), st, 0, -1, 0) and p.hold(A + (300,), bytes(100), st, 0, -1, 0)
    assert not p.hold(A + (300,), bytes(1), st, 0, -1, 0)
    assert st.pending_dropped == {"exporter_bound": 1}
    other = acct.stats(B[0], B[3], 0)
    assert p.hold(B + (300,), bytes(100), other, 0, -1, 0)  # another exporter has its own budget
    assert other.pending_dropped == {}


def test_the_global_bound_drops_the_oldest_queue_first():
    one = PENDING_QUEUE_OVERHEAD + 100 + PENDING_SET_OVERHEAD
    acct, p = _pending(total=2 * one)
    sa, sb = acct.stats(A[0], 0, 0), acct.stats(B[0], 0, 0)
    assert p.hold(A + (300,), bytes(100), sa, 0, -1, 0)
    assert p.hold(B + (300,), bytes(100), sb, 0, -1, 0)
    assert p.hold(B + (301,), bytes(100), sb, 0, -1, 0)  # A's queue, the oldest, makes room
    assert sa.pending_dropped == {"global_bound": 1} and sb.pending_dropped == {}
    assert set(p.queues) == {B + (300,), B + (301,)} and p.total == 2 * one
    assert not p.hold(A + (302,), bytes(3 * one), sa, 0, -1, 0)  # never fits: nobody else dropped for it
    assert sa.pending_dropped == {"global_bound": 2} and len(p) == 2


def test_sets_older_than_the_age_expire_and_a_session_can_be_dropped_whole():
    acct, p = _pending(age=1_000)
    st = acct.stats(A[0], 0, 0)
    p.hold(A + (300,), bytes(10), st, 0, -1, 0)
    p.hold(A + (300,), bytes(10), st, 0, -1, 900)
    p.hold(A + (301,), bytes(10), st, 0, -1, 950)
    p.expire(1_000)
    assert st.pending_expired == 1 and [len(q) for q in p.queues.values()] == [1, 1]
    p.drop_session(A, "session_evicted", 1_000)
    assert st.pending_dropped == {"session_evicted": 2} and len(p) == 0 and p.total == 0
