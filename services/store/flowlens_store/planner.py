"""Query planning: checked filters as a numpy mask (ring) or an SQL WHERE (SQLite), keyset cursors,
the rule that picks the ring or SQLite, and pro-rated series. The columnar group-by the ops sum
with is in groupby.py.

Rows are ordered newest first by the key (time_end, seq); seq is the store's own per-flow
sequence number, unique across the ring and every SQLite partition, so a cursor is exact.
A window's membership is decided by time_end: since <= time_end < until.
"""
from __future__ import annotations

import base64
import struct
from typing import Any

import numpy as np

from flowmodel.protocol import FLOW_FILTERS, QueryError, normalise_flow_filters

from .rowcodec import REST_DTYPE

ADDR_FILTERS = {"src": ("src_addr",), "dst": ("dst_addr",), "addr": ("src_addr", "dst_addr"), "exporter": ("exporter",)}
PORT_FILTERS = {"port": ("src_port", "dst_port"), "src_port": ("src_port",), "dst_port": ("dst_port",)}
# equality filters on integer columns a partition's rows keep packed in ``rest`` (rowcodec.REST_DTYPE)
WORD_FILTERS = {"input_if": ("input_if",), "output_if": ("output_if",), "src_as": ("src_as",),
                "dst_as": ("dst_as",), "as": ("src_as", "dst_as"), "src_country": ("src_country",),
                "dst_country": ("dst_country",), "country": ("src_country", "dst_country")}


# ------------------------------------------------------------------ arguments

def check_args(op: str, args: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(str(k)[:40] for k in set(args) - set(allowed) - {"op"})
    if unknown:
        named = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise QueryError(f"{op} does not take {named} (it takes {', '.join(sorted(allowed))})")


def parse_filters(args: dict, now_ms: int) -> dict:
    try:
        return normalise_flow_filters({k: args[k] for k in FLOW_FILTERS if k in args}, now_ms)
    except QueryError:
        raise
    except (TypeError, ValueError) as e:  # e.g. an unhashable or odd type from a script
        raise QueryError(f"bad filter: {e}") from None


def int_arg(args: dict, name: str, default: int, lo: int, hi: int | None = None, cap: bool = False) -> int:
    v = args.get(name, default)
    if v is None:
        v = default
    if isinstance(v, bool):
        raise QueryError(f"{name} must be a whole number")
    try:
        n = int(str(v).strip()) if not isinstance(v, int) else v
    except ValueError:
        raise QueryError(f"{name} {v!r} is not a whole number") from None
    if n < lo:
        raise QueryError(f"{name} must be at least {lo}")
    if hi is not None and n > hi:
        if cap:
            return hi
        raise QueryError(f"{name} must be at most {hi}")
    return n


def bool_arg(args: dict, name: str, default: bool) -> bool:
    v = args.get(name, default)
    if v is None or isinstance(v, bool):
        return default if v is None else v
    text = str(v).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise QueryError(f"{name} must be true or false, not {v!r}")


def choice_arg(args: dict, name: str, choices: tuple[str, ...], default: str | None) -> str:
    v = args.get(name, default)
    if v is None:
        raise QueryError(f"{name} is required: one of {', '.join(choices)}")
    if not isinstance(v, str) or v not in choices:
        raise QueryError(f"{name} {v!r} is not one of {', '.join(choices)}")
    return v


# ------------------------------------------------------------------ cursors

_CURSOR = struct.Struct(">qq")


def encode_cursor(time_end: int, seq: int) -> str:
    return base64.urlsafe_b64encode(_CURSOR.pack(int(time_end), int(seq))).decode().rstrip("=")


def decode_cursor(text: Any) -> tuple[int, int]:
    if not isinstance(text, str) or not text:
        raise QueryError("cursor must be the string a previous flows reply gave")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return _CURSOR.unpack(raw)
    except (ValueError, struct.error):
        raise QueryError("cursor is not one this store gave out") from None


# ------------------------------------------------------------------ ring side

def _split16(col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u = np.ascontiguousarray(col).view(">u8").reshape(-1, 2)
    return u[:, 0], u[:, 1]


def addr_in_range(col: np.ndarray, lo: bytes, hi: bytes) -> np.ndarray:
    """Rows of a V16 column whose address lies in [lo, hi] (byte order, as SQLite compares BLOBs)."""
    if lo == hi:  # one host: equality on the machine's own word order, no byte swapping (7 -> 1 ms on 600k)
        u = np.ascontiguousarray(col).view(np.uint64).reshape(-1, 2)
        a, b = np.frombuffer(bytes(lo), np.uint64)
        m = u[:, 1] == b
        m &= u[:, 0] == a
        return m
    h, l = _split16(col)
    lo_h, lo_l = struct.unpack(">QQ", lo)
    hi_h, hi_l = struct.unpack(">QQ", hi)
    ge = (h > lo_h) | ((h == lo_h) & (l >= lo_l))
    le = (h < hi_h) | ((h == hi_h) & (l <= hi_l))
    return ge & le


def ring_mask(cols: dict[str, np.ndarray], f: dict) -> np.ndarray:
    n = len(cols["time_end"])
    mask = np.ones(n, dtype=bool)
    te = cols["time_end"]
    if "since" in f:
        mask &= te >= f["since"]
    if "until" in f:
        mask &= te < f["until"]
    for key, columns in ADDR_FILTERS.items():
        if key in f:
            lo, hi = f[key]
            m = np.zeros(n, dtype=bool)
            for c in columns:
                m |= addr_in_range(cols[c], lo, hi)
            mask &= m
    for key, columns in PORT_FILTERS.items():
        if key in f:
            m = np.zeros(n, dtype=bool)
            for c in columns:
                m |= cols[c] == f[key]
            mask &= m
    if "protocol" in f:
        mask &= cols["protocol"] == f["protocol"]
    for key, columns in WORD_FILTERS.items():
        if key in f:
            m = cols[columns[0]] == f[key]
            for c in columns[1:]:
                m |= cols[c] == f[key]
            mask &= m
    if "dscp" in f:
        mask &= (cols["tos"] >> 2) == f["dscp"]
    return mask


# ------------------------------------------------------------------ SQLite side

def sql_where(f: dict, addr_index: bool = True) -> tuple[str, list]:
    """WHERE clause and parameters. ``addr_index=False`` writes address terms as ``+col`` so SQLite
    walks the time index instead (better when the address range matches most rows)."""
    terms, params = [], []
    if "since" in f:
        terms.append("time_end >= ?")
        params.append(f["since"])
    if "until" in f:
        terms.append("time_end < ?")
        params.append(f["until"])
    plus = "" if addr_index else "+"
    for key, columns in ADDR_FILTERS.items():
        if key in f:
            lo, hi = f[key]
            ors = []
            for c in columns:
                ors.append(f"{plus if c != 'exporter' else '+'}{c} BETWEEN ? AND ?")
                params += [lo, hi]
            terms.append("(" + " OR ".join(ors) + ")")
    for key, columns in PORT_FILTERS.items():
        if key in f:
            terms.append("(" + " OR ".join(f"{c} = ?" for c in columns) + ")")
            params += [f[key]] * len(columns)
    if "protocol" in f:
        terms.append("protocol = ?")
        params.append(f["protocol"])
    # packed columns: compared as little-endian bytes sliced out of rest (BLOBs compare bytewise)
    for key, columns in WORD_FILTERS.items():
        if key in f:
            terms.append("(" + " OR ".join(f"substr(rest, {_REST_AT[c] + 1}, {_REST_WIDTH[c]}) = ?"
                                           for c in columns) + ")")
            params += [int(f[key]).to_bytes(_REST_WIDTH[c], "little") for c in columns]
    if "dscp" in f:
        terms.append(f"substr(rest, {_REST_AT['tos'] + 1}, 1) BETWEEN ? AND ?")
        params += [bytes([f["dscp"] << 2]), bytes([(f["dscp"] << 2) | 3])]
    return (" AND ".join(terms) or "1"), params


_REST_AT = {name: REST_DTYPE.fields[name][1] for name in ("input_if", "output_if", "src_as", "dst_as", "tos",
                                                          "src_country", "dst_country")}
_REST_WIDTH = {name: REST_DTYPE.fields[name][0].itemsize for name in _REST_AT}


def use_ring(f: dict, ring, now_ms: int, ring_duration_ms: int) -> bool:
    """The ring answers when the window starts inside its recent window and it has evicted nothing
    at or after the window start; otherwise SQLite, which holds everything committed, answers alone.
    One source per query, so nothing is counted twice (used by top and series; flows pages split
    at the ring's evicted bound instead, see ``QueryEngine._flows_page``).

    A client asking for "the last ring_duration" computes since on its own clock a few ms before we
    read ours (the dashboard's 10-minute window against the 10-minute ring), so the recent window is
    widened by RING_GRACE_MS; ``ring.covers`` still guarantees nothing the window needs was evicted."""
    since = f.get("since")
    return since is not None and since >= now_ms - ring_duration_ms - RING_GRACE_MS and ring.covers(since)


RING_GRACE_MS = 30_000


# ------------------------------------------------------------------ pro-rated series

class SpreadSeries:
    """Bytes and packets per step with each flow's counters spread evenly over its lifetime (pmacct
    calls this pro-rating): a 60 s flow exported at its end adds a sixth to each of six 10 s steps,
    not a spike to the last. Built from per-step sums, so memory stays O(steps) however many flows are
    folded in (the ring's rows at once, SQLite's in chunks).

    A flow of rate r from s to e adds r * (min(b, e) - s) to the running total at every step edge
    b > s. That is G_s(b) - G_e(b) with G_p(b) = sum over points p < b of r * (b - p) = b * W - WP, where
    W and WP are the sums of r and r * p over the points before b: per-step sums of r and r * p at the
    flows' starts (added) and ends (subtracted) give the totals at every edge with one cumsum. Flows
    with no duration (or no start) fall whole into the step of their end. Times are relative to the
    first edge, so the float sums stay exact to well under a byte."""

    def __init__(self, origin_ms: int, step_ms: int, steps: int, nvalues: int = 2):
        self.origin, self.step, self.steps = origin_ms, step_ms, steps
        # bins: index 0 = before the first edge, 1..steps = the steps, steps + 1 = after the last edge
        self.w = np.zeros((nvalues, steps + 2))
        self.wp = np.zeros((nvalues, steps + 2))

    def bin_of(self, t_ms: np.ndarray) -> np.ndarray:
        """Bin index (0 .. steps + 1) of each time: the step holding it, or one of the two outside bins."""
        k = np.floor_divide(np.asarray(t_ms, dtype=np.int64) - self.origin, self.step) + 1
        return np.clip(k, 0, self.steps + 1).astype(np.intp)

    def add_flows(self, time_start: np.ndarray, time_end: np.ndarray, values: list[np.ndarray]) -> None:
        """The ring's way in: raw per-flow columns. A flow with no duration (or no start) becomes a 1 ms
        ramp from its end, which lies wholly in its end's step: one code path, no masking."""
        te = np.asarray(time_end, dtype=np.int64)
        ts = np.asarray(time_start, dtype=np.int64)
        ramp = (ts > 0) & (ts < te)
        s = np.where(ramp, ts, te)
        e = np.where(ramp, te, te + 1)
        inv = 1.0 / (e - s)
        bs, be = self.bin_of(s), self.bin_of(e)
        ps = (s - self.origin).astype(np.float64)
        pe = (e - self.origin).astype(np.float64)
        size = self.steps + 2
        for j, v in enumerate(values):
            rate = np.asarray(v, dtype=np.float64) * inv
            self.w[j] += np.bincount(bs, rate, size) - np.bincount(be, rate, size)
            self.wp[j] += np.bincount(bs, rate * ps, size) - np.bincount(be, rate * pe, size)

    def totals(self) -> np.ndarray:
        """(nvalues, steps) rounded sums per step."""
        edges = np.arange(self.steps + 1, dtype=np.float64) * self.step
        # points before edge j are the bins 0 .. j (bin 0 is everything before the first edge)
        W = np.cumsum(self.w, axis=1)[:, :self.steps + 1]
        WP = np.cumsum(self.wp, axis=1)[:, :self.steps + 1]
        running = edges * W - WP
        per_step = np.diff(running, axis=1)
        return np.maximum(np.rint(per_step), 0)
