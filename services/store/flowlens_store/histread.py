"""Answering from the rollups (hists.py): which rollup rows and which raw time ranges a window needs.

A window is cut per partition: a partition whose rollups are complete (sealed, or pruned with its
rollups kept) is answered from them, with the coarsest step whose buckets lie wholly inside the
window and the partition (1 h, then 5 min, then 1 min at the edges); what no bucket covers, and
every partition not yet sealed, is left as a raw time range for the caller to read from the ring or
the flows. Once a partition's raw flows are pruned its edges cannot be read raw: buckets that start
inside the window are taken whole then (the window is rounded to the rollup step), said in the plan.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from . import groupby as G
from .hists import DIMS, KEY_WIDTH, OTHER_WORD, decode_hist
from .keymerge import KeyMerge

VALUE_NAMES = ("bytes", "packets", "flows", "sbytes", "spackets")


@dataclass
class HistPlan:
    pieces: list = field(default_factory=list)  # (start_ms, end_ms, step_ms, t_lo, t_hi): buckets t_lo <= t < t_hi
    raw: list = field(default_factory=list)     # (lo, hi): time_end ranges to read raw
    rounded: bool = False                       # some edge was rounded to a rollup step (raw flows pruned)


def plan(db, dim: str, since: int, until: int, steps: tuple[int, ...] | None = None) -> HistPlan:
    """The pieces of [since, until) for ``dim``; ``steps`` limits the rollup steps used (a series
    needs steps that divide its own)."""
    steps = tuple(sorted(steps if steps is not None else DIMS[dim], reverse=True))
    out = HistPlan()
    parts = {(s, e): sealed for s, e, sealed in db.execute(
        "SELECT start_ms, end_ms, sealed FROM partitions WHERE end_ms > ? AND start_ms < ?", (since, until))}
    rolled = {(s, e) for s, e in db.execute(
        "SELECT DISTINCT start_ms, end_ms FROM hists WHERE dim = ? AND end_ms > ? AND start_ms < ?",
        (dim, since, until))}
    for (ps, pe), sealed in sorted(parts.items()):
        a, b = max(ps, since), min(pe, until)
        if sealed and (ps, pe) in rolled and steps:
            _cover(out, ps, pe, a, b, steps, raw_ok=True)
        else:
            out.raw.append((a, b))
    for ps, pe in sorted(rolled - set(parts)):  # raw flows pruned, rollups kept
        if steps:
            _cover(out, ps, pe, max(ps, since), min(pe, until), steps, raw_ok=False)
    out.raw = _merge(out.raw)
    return out


def _cover(out: HistPlan, ps: int, pe: int, a: int, b: int, steps: tuple[int, ...], raw_ok: bool) -> None:
    if a >= b:
        return
    if not steps:
        if raw_ok:
            out.raw.append((a, b))
        return
    s = steps[0]
    lo = a if a == ps or a % s == 0 else -(-a // s) * s
    hi = b if b == pe or b % s == 0 else (b // s) * s
    if not raw_ok and len(steps) == 1:  # the finest step kept: take every bucket starting inside
        out.pieces.append((ps, pe, s, (a // s) * s if a == ps else -(-a // s) * s, b))
        out.rounded = out.rounded or a % s != 0 or b % s != 0
        return
    if lo < hi:
        out.pieces.append((ps, pe, s, (lo // s) * s, hi))
        _cover(out, ps, pe, a, lo, steps[1:], raw_ok)
        _cover(out, ps, pe, hi, b, steps[1:], raw_ok)
    else:
        _cover(out, ps, pe, a, b, steps[1:], raw_ok)


def _merge(ranges: list) -> list:
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if lo >= hi:
            continue
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(lo, hi) for lo, hi in out]


class DecodedRollups:
    """Decoded rollup blobs of one query worker, least recently used out first, at most ``max_bytes``
    (blob plus arrays). Keyed by the blob itself: a partition sealed again gets new blobs, so nothing
    stale is ever served. Only blobs up to an eighth of the bound are kept: a series over days reads
    the same few small blobs again and again, a top over days reads large ones once."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = self.misses = 0
        self._entries: OrderedDict[bytes, tuple[dict, int]] = OrderedDict()

    def decode(self, blob: bytes) -> dict[str, np.ndarray]:
        blob = bytes(blob)
        got = self._entries.get(blob)
        if got is not None:
            self._entries.move_to_end(blob)
            self.hits += 1
            return got[0]
        self.misses += 1
        h = decode_hist(blob)
        size = len(blob) + sum(v.nbytes for v in h.values())
        if size <= self.max_bytes // 8:
            self._entries[blob] = (h, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _blob, (_h, old) = self._entries.popitem(last=False)
                self.bytes -= old
        return h


REGROUP_ROWS = 1 << 16  # rollup rows gathered before a fold merges them again (bounds a query's memory)


def gather(db, dim: str, pieces: list, check=lambda: None, host: bytes | None = None,
           fold=None, fold_at_end: bool = True, cache: DecodedRollups | None = None) -> dict[str, np.ndarray]:
    """The rollup rows of the pieces: 't', 'k' (n, w), 'other' and the VALUE_NAMES sums; with
    ``host`` (a 16-byte address) only that key's rows, read from the one key-range chunk holding it.
    ``fold`` (rows -> fewer rows, e.g. summed per key) is applied whenever REGROUP_ROWS rows have
    gathered and at the end (unless the caller groups the result itself: ``fold_at_end=False``), so
    memory follows the distinct keys, not the hours read."""
    width = KEY_WIDTH.get(dim, 1)
    got: list[dict] = []
    gathered = 0
    limit = REGROUP_ROWS  # twice what the last fold kept, at least REGROUP_ROWS: each row is folded O(1) times
    blobs: dict = {}
    sql = "SELECT data FROM hists WHERE dim = ? AND step_ms = ? AND start_ms = ? AND end_ms = ?"
    extra: tuple = ()
    if host is not None:
        sql += " AND key_lo <= ? AND key_hi >= ?"
        extra = (bytes(host), bytes(host))
        want = np.frombuffer(bytes(host), ">u8").astype(np.uint64)
    for ps, pe, step, t_lo, t_hi in pieces:
        check()
        key = (ps, pe, step)
        if key not in blobs:
            if blobs and next(iter(blobs))[0] != ps:
                blobs.clear()  # pieces come partition by partition: keep one partition's blobs at most
            decode = cache.decode if cache is not None else decode_hist
            parts = [decode(r[0]) for r in db.execute(sql, (dim, step, ps, pe, *extra))]
            h = None
            if parts:
                h = {name: np.concatenate([q[name] for q in parts]) for name in parts[0] if name != "k"}
                h["k"] = np.concatenate([q["k"].reshape(len(q["t"]), width) for q in parts])
                del parts  # the decoded blobs, now copied into h: not held beside it until the next partition
                if host is not None:
                    m = (h["k"][:, 0] == want[0]) & (h["k"][:, 1] == want[1])
                    if "other" in h:
                        m &= ~h["other"]
                    h = {name: v[m] for name, v in h.items()}
            blobs[key] = h
        h = blobs[key]
        if h is None or not len(h["t"]):
            continue
        m = (h["t"] >= t_lo) & (h["t"] < t_hi)
        if m.any():
            part = dict(h) if m.all() else {k: v[m] for k, v in h.items()}  # a whole partition: no copy
            part["k"] = part["k"].reshape(len(part["t"]), width)
            if "other" not in part:
                part["other"] = np.zeros(len(part["t"]), bool)
            got.append(part)
            gathered += len(part["t"])
            if fold is not None and gathered > limit:
                got = [fold(_concat(got, width))]
                gathered = len(got[0]["t"])
                limit = max(REGROUP_ROWS, 2 * gathered)
    out = _concat(got, width)
    return fold(out) if fold is not None and fold_at_end and len(got) else out


MEMO_KEYS = 128  # a piece's largest keys key_totals remembers for explore's second pass


def key_totals(db, dim: str, pieces: list, names: tuple[str, ...], check=lambda: None,
               memo: dict | None = None, cache: "SealedTotals | None" = None) -> dict[str, np.ndarray]:
    """The sums ``names`` per key over the pieces, as gather with a per-key fold would give them ('t'
    0, 'k', 'other', the sums; the capped "other" rows as one row), merged piece by piece (keymerge:
    an hour's keys come sorted) and decoding only those sums: the first pass of a top over days.

    ``memo`` (one sum only): filled with piece -> (keys, sums, bucket, complete), the MEMO_KEYS keys
    with the largest sum of each one-bucket piece (every key when it has no more; ``complete``), so a
    second pass that wants the top keys' sums per piece need not decode it again (memo_rows).

    ``cache`` (without ``memo``): the totals of the hourly pieces of each UTC day and those of the
    finer edge pieces are taken from it, or merged once and kept there, apart: a whole day's hours
    are the same run in every window that holds them (any window over days merges at most two part
    days' hours and the cached whole days'), a window ending now keeps its part days for an hour and
    its 5-minute edges for 5 minutes."""
    width = KEY_WIDTH.get(dim, 1)
    if cache is not None and memo is None and pieces:
        edges = [p for p in pieces if p[2] < HOUR_STEP]
        runs = day_runs([p for p in pieces if p[2] >= HOUR_STEP]) + ([edges] if edges else [])
        parts = [cache.totals(db, dim, run, names, lambda run=run: key_totals(db, dim, run, names, check))
                 for run in runs]
        return dict(parts[0]) if len(parts) == 1 else merge_totals(parts, width, names)
    acc = KeyMerge(width, len(names))
    other = np.zeros(len(names), np.uint64)
    seen_other = False
    sql = "SELECT data FROM hists WHERE dim = ? AND step_ms = ? AND start_ms = ? AND end_ms = ?"
    last = None
    for ps, pe, step, t_lo, t_hi in pieces:
        check()
        if last is None or last[0] != (ps, pe, step):
            last = ((ps, pe, step), [decode_hist(bytes(r[0]), names) for r in db.execute(sql, (dim, step, ps, pe))])
        for h in last[1]:
            t = h["t"]
            m = (t >= t_lo) & (t < t_hi)
            if not m.any():
                continue
            mine = m & ~h["other"]
            many = not m.all() or h["other"].any() or (len(t) and t[0] != t[-1])
            k = h["k"].reshape(len(t), width)
            if many:  # a piece of several buckets (or "other" rows): its keys repeat or are not alone
                seen_other = seen_other or bool((m & h["other"]).any())
                other += np.array([int(h[n][m & h["other"]].sum(dtype=np.uint64)) for n in names], np.uint64)
                acc.add(k[mine], [h[n][mine] for n in names])
            else:
                acc.add(k, [h[n] for n in names])
                if memo is not None and len(names) == 1 and len(last[1]) == 1:
                    memo[(ps, pe, step, t_lo, t_hi)] = _largest(k, h[names[0]], int(t[0]) if len(t) else 0)
    keys, sums = acc.result()
    has_other = seen_other
    if has_other:
        keys = np.concatenate([keys, np.full((1, width), OTHER_WORD)])
        sums = [np.append(s, o) for s, o in zip(sums, other)]
    flags = np.zeros(len(keys), bool)
    flags[len(keys) - 1:] = has_other
    return {"t": np.zeros(len(keys), np.int64), "k": keys, "other": flags, **dict(zip(names, sums))}


def merge_totals(parts: list[dict], width: int, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """key_totals' results of disjoint pieces as one: the keys' sums added, the "other" rows too."""
    acc = KeyMerge(width, len(names))
    other = [0] * len(names)
    has_other = False
    for part in parts:
        k = part["k"].reshape(len(part["t"]), width)
        flag = part["other"]
        acc.add(k[~flag], [part[n][~flag] for n in names])
        if flag.any():
            has_other = True
            other = [o + int(part[n][flag].sum(dtype=np.uint64)) for o, n in zip(other, names)]
    keys, sums = acc.result()
    if has_other:
        keys = np.concatenate([keys, np.full((1, width), OTHER_WORD)])
        sums = [np.append(s, np.uint64(o)) for s, o in zip(sums, other)]
    flags = np.zeros(len(keys), bool)
    flags[len(keys) - 1:] = has_other
    return {"t": np.zeros(len(keys), np.int64), "k": keys, "other": flags, **dict(zip(names, sums))}


HOUR_STEP = 3_600_000  # pieces at this step: a window's whole hours, cached apart from its edges
DAY_MS = 86_400_000


def day_runs(pieces: list) -> list[list]:
    """``pieces`` (in time order) cut at UTC midnights, by the day their buckets start in."""
    runs: dict[int, list] = {}
    for p in pieces:
        runs.setdefault(p[3] // DAY_MS, []).append(p)
    return list(runs.values())


class SealedTotals:
    """key_totals of recent tops' rollup pieces (all from sealed partitions: immutable), shared by the
    query workers (a lock), least recently used out first, at most ``max_bytes`` of arrays. A
    dashboard asks the same pieces again at every refresh, and a ``range=72h`` window moves its raw
    edges every second but its pieces only every 5 minutes (hours: every hour); merging 72 hours of
    sources takes ~90-140 ms, a hit a few. An entry is keyed by the pieces and by the rowid and size of
    every blob they read and by their partitions' row counts, so blobs rewritten by a new seal or
    dropped by pruning are never answered from an old entry."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = self.misses = 0
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple, tuple[dict, int]] = OrderedDict()

    def totals(self, db, dim: str, pieces: list, names: tuple[str, ...], compute) -> dict[str, np.ndarray]:
        parts = {(p[0], p[1], p[2]) for p in pieces}
        lo, hi = min(p[0] for p in pieces), max(p[1] for p in pieces)
        steps = sorted({p[2] for p in pieces})
        blobs = sorted(r for r in db.execute(
            "SELECT start_ms, end_ms, step_ms, rowid, length(data) FROM hists WHERE dim = ? AND step_ms "
            f"IN ({', '.join('?' * len(steps))}) AND start_ms >= ? AND end_ms <= ?", (dim, *steps, lo, hi))
            if r[:3] in parts)
        # late flows unseal a partition and grow its row count; the reseal's blobs may reuse the old
        # rowids (SQLite hands out max + 1 again) and sizes, its row count cannot come back
        spans = {(p[0], p[1]) for p in pieces}
        counts = sorted(r for r in db.execute("SELECT start_ms, end_ms, rows FROM partitions WHERE start_ms >= ? "
                                              "AND end_ms <= ?", (lo, hi)) if r[:2] in spans)
        key = (dim, tuple(names), tuple(pieces), tuple(blobs), tuple(counts))
        with self._lock:
            got = self._entries.get(key)
            if got is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return got[0]
            self.misses += 1
        rows = compute()
        for v in rows.values():
            v.flags.writeable = False  # handed to every later caller: none may add into it
        size = sum(v.nbytes for v in rows.values())
        if size <= self.max_bytes:
            with self._lock:
                if key not in self._entries:
                    self._entries[key] = (rows, size)
                    self.bytes += size
                while self.bytes > self.max_bytes:
                    _key, (_rows, old) = self._entries.popitem(last=False)
                    self.bytes -= old
        return rows


def _largest(k: np.ndarray, v: np.ndarray, bucket: int) -> tuple:
    if len(v) <= MEMO_KEYS:
        return k.copy(), v.copy(), bucket, True
    top = np.argpartition(v, len(v) - MEMO_KEYS)[len(v) - MEMO_KEYS:]
    return k[top], v[top], bucket, False


def memo_rows(memo: dict, pieces: list, chosen: np.ndarray, name: str) -> tuple[dict, list]:
    """The rows of the ``chosen`` keys (rollup words) that ``memo`` (key_totals) answers, as gather
    gives them (one sum, ``name``), and the pieces it cannot answer: not remembered, or not complete
    and missing a chosen key (that key's sum there is unknown, not 0)."""
    width = chosen.shape[1] if chosen.ndim == 2 else 1
    got, unread = [], []
    for piece in pieces:
        kept = memo.get(piece)
        if kept is None:
            unread.append(piece)
            continue
        k, v, bucket, complete = kept
        hit = np.zeros(len(k), bool)
        missing = False
        for key in chosen.reshape(-1, width):
            m = (k == key).all(axis=1)
            hit |= m
            missing = missing or not m.any()
        if missing and not complete:
            unread.append(piece)
            continue
        n = int(hit.sum())
        got.append({"t": np.full(n, bucket, np.int64), "k": k[hit], "other": np.zeros(n, bool), name: v[hit]})
    out = _concat(got, width) if got else {"t": np.zeros(0, np.int64), "k": np.zeros((0, width), np.uint64),
                                            "other": np.zeros(0, bool), name: np.zeros(0, np.uint64)}
    return out, unread


def _concat(got: list[dict], width: int) -> dict[str, np.ndarray]:
    if not got:
        empty = {n: np.zeros(0, np.uint64) for n in VALUE_NAMES}
        return {"t": np.zeros(0, np.int64), "k": np.zeros((0, width), np.uint64), "other": np.zeros(0, bool), **empty}
    if len(got) == 1:
        return got[0]
    return {k: np.concatenate([g[k] for g in got]) for k in got[0]}


def fold_by(step_ms: int | None):
    """A gather fold: rows summed per (bucket of ``step_ms``, other, key); per (other, key) when None
    (the bucket then reads 0)."""
    def fold(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(rows["t"])
        if n == 0:
            return rows
        t = (rows["t"] // step_ms) * step_ms if step_ms else np.zeros(n, np.int64)
        k = rows["k"]
        words = ([t.view(np.uint64) ^ np.uint64(1 << 63)] + [k[:, j] for j in range(k.shape[1])]
                 + [rows["other"].astype(np.uint64)])
        rep, sums, _c = G.group_rows(words, *(rows[v] for v in VALUE_NAMES))
        out = {"t": t[rep], "k": k[rep], "other": rows["other"][rep]}
        out.update(zip(VALUE_NAMES, sums))
        return out
    return fold


def words_to_addr(k: np.ndarray) -> list[bytes]:
    """(n, >=2) uint64 key words (big-endian address halves) as 16-byte addresses."""
    two = np.ascontiguousarray(k[:, :2]).astype(">u8")
    return [bytes(v) for v in two.view("V16").ravel().tolist()]
