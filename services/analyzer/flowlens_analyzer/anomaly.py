"""Anomaly detection: traffic per destination prefix (/24, /64 by default) and per exporter against
a baseline; spikes and drops.

The baseline is the same hour of the week (or of the day) when enough history exists, else a robust
short-term one (median and MAD of the recent per-minute bytes). History is a bounded per-minute ring
per key kept in memory, fed by the flows the analyzer sees; minutes leaving the ring are folded into
hour-of-day and hour-of-week profiles. At start the profiles are seeded from the store's hourly sums
(fold_hours) and the ring from its per-minute rollups of the last hour or two (seed).
"""
from __future__ import annotations

import numpy as np

from flowmodel import addr
from flowmodel.schema import ADDR

from .common import Context, mask_prefix, Finding, WindowView, addr_text, factorize_addr, flow_filter, window_evidence
from .wording import fmt_pct, fmt_rate_bps, fmt_time

NAME = "anomaly"
KINDS = ("dst_prefix", "exporter")
MINUTE_MS = 60_000
SEASONAL_MIN_SAMPLES = 120  # minute samples in an hour slot (two days or weeks of that hour)
# so the hour-of-day profile is ready after 2 days of history, the hour-of-week one only after 2 weeks
MAD_K = 3.0 * 1.4826  # a change must also exceed 3 robust standard deviations (short-term baseline)


class MinuteHistory:
    """Per-key bytes per minute: a ring of ``minutes`` columns and hour-of-day/week profiles."""

    def __init__(self, minutes: int, max_keys: int):
        self.M, self.K = int(minutes), int(max_keys)
        self.rows: dict[bytes, int] = {}
        self.keys = np.zeros(self.K, dtype=ADDR)
        self.used = np.zeros(self.K, dtype=bool)
        self.hist = np.zeros((self.K, self.M))
        self.col_minute = np.full(self.M, -1, dtype=np.int64)
        self.hod_sum = np.zeros((self.K, 24))
        self.hod_n = np.zeros((self.K, 24), np.int32)  # minutes counted: whole numbers (half the bytes of float64)
        self.how_sum = np.zeros((self.K, 168))
        self.how_n = np.zeros((self.K, 168), np.int32)
        self.replaced = 0

    def _column(self, minute: int) -> int | None:
        c = minute % self.M
        have = int(self.col_minute[c])
        if have == minute:
            return c
        if have > minute:
            return None  # older than the ring: too late to count
        if have >= 0:  # fold the minute leaving the ring into the profiles (zeros included)
            hour = have // 60
            rows = self.used
            self.hod_sum[rows, hour % 24] += self.hist[rows, c]
            self.hod_n[rows, hour % 24] += 1
            self.how_sum[rows, hour % 168] += self.hist[rows, c]
            self.how_n[rows, hour % 168] += 1
        self.hist[:, c] = 0
        self.col_minute[c] = minute
        return c

    def add(self, minute: int, keys: np.ndarray, values: np.ndarray, admit_floor: float, replace: bool = True) -> None:
        """Bytes of one minute for keys (ADDR array); new keys need at least admit_floor bytes and, when
        every row is taken, replace the smallest keys (not with replace=False: seeding keeps the keys
        whose profiles it has already loaded)."""
        c = self._column(int(minute))
        if c is None or not len(keys):
            return
        new_keys, new_vals = [], []
        for k, v in zip(keys.tolist(), values.tolist()):
            row = self.rows.get(k)
            if row is not None:
                self.hist[row, c] += v
            elif v >= admit_floor:
                new_keys.append(k)
                new_vals.append(v)
        if not new_keys:
            return
        order = np.argsort(-np.asarray(new_vals), kind="stable")
        free = list(np.flatnonzero(~self.used)[::-1])
        totals = None
        for i in order.tolist():
            if free:
                row = int(free.pop())
            else:
                if not replace:
                    break
                if totals is None:  # replace the smallest keys, smallest first
                    totals = self.hist.sum(1)
                    victims = list(np.argsort(totals, kind="stable")[::-1])
                if not victims or totals[victims[-1]] >= new_vals[i]:
                    break
                row = int(victims.pop())
                del self.rows[bytes(self.keys[row])]
                self._clear(row)
                self.replaced += 1
            self.rows[new_keys[i]] = row
            self.keys[row] = np.frombuffer(new_keys[i], dtype=ADDR)[0]
            self.used[row] = True
            self.hist[row, c] = new_vals[i]

    def fold_hours(self, hours: np.ndarray, keys: np.ndarray, sums: np.ndarray) -> int:
        """Hourly byte sums (hour numbers since the epoch, ADDR keys, bytes) into the hour-of-day and
        hour-of-week profiles, as if the 60 minutes of each hour had left the ring: a slot gets the
        hour's sum and 60 samples, the quiet minutes inside it counting as zeros. An hour in which no key
        has a row (the store saw nothing: it or the exporters were down) is not counted; a key counts the
        hours from its first one on, zeros included, as a key admitted live does. Keys are admitted
        (biggest total first) while rows are free; returns the rows that took hours."""
        if not len(hours):
            return 0
        hour_u, h_idx = np.unique(np.asarray(hours, np.int64), return_inverse=True)
        keys = np.ascontiguousarray(keys).view(ADDR)
        _u, first_at, k_idx = np.unique(keys.view("S16"), return_index=True, return_inverse=True)
        key_u = keys[first_at]  # (S16 sorts as the bytes do, but drops trailing zero bytes: keep ADDR)
        sums = np.asarray(sums, np.float64)
        grid = np.bincount(k_idx * len(hour_u) + h_idx, weights=sums,
                           minlength=len(key_u) * len(hour_u)).reshape(len(key_u), len(hour_u))
        present = np.zeros(grid.shape, bool)
        present[k_idx, h_idx] = True
        first = present.argmax(1)  # each key's first hour (every key has one)
        rows = np.full(len(key_u), -1, np.int64)
        free = list(np.flatnonzero(~self.used)[::-1])
        for i in np.argsort(-grid.sum(1), kind="stable").tolist():
            k = bytes(key_u[i])
            row = self.rows.get(k)
            if row is None:
                if not free:
                    continue
                row = int(free.pop())
                self.rows[k] = row
                self.keys[row] = np.frombuffer(k, dtype=ADDR)[0]
                self.used[row] = True
            rows[i] = row
        take = np.flatnonzero(rows >= 0)
        if not len(take):
            return 0
        counted = (np.arange(len(hour_u))[None, :] >= first[take, None]).astype(np.float64) * 60
        for slots, total, n in ((24, self.hod_sum, self.hod_n), (168, self.how_sum, self.how_n)):
            onehot = np.zeros((len(hour_u), slots))
            onehot[np.arange(len(hour_u)), hour_u % slots] = 1
            total[rows[take]] += grid[take] @ onehot
            n[rows[take]] += (counted @ onehot).astype(n.dtype)  # whole minutes (60 an hour)
        return len(take)

    def _clear(self, row: int) -> None:
        self.hist[row] = 0
        self.hod_sum[row] = self.hod_n[row] = 0
        self.how_sum[row] = self.how_n[row] = 0

    def baseline(self, before_minute: int, hour: int, min_history: int):
        """Per row: (baseline bytes/minute, MAD, seasonal flag); None when history is too short."""
        cols = np.flatnonzero((self.col_minute >= max(before_minute - self.M, 0)) & (self.col_minute < before_minute))
        how_ok = self.how_n[:, hour % 168] >= SEASONAL_MIN_SAMPLES
        hod_ok = self.hod_n[:, hour % 24] >= SEASONAL_MIN_SAMPLES
        seasonal = how_ok | hod_ok
        with np.errstate(invalid="ignore", divide="ignore"):
            season = np.where(how_ok, self.how_sum[:, hour % 168] / self.how_n[:, hour % 168],
                              self.hod_sum[:, hour % 24] / self.hod_n[:, hour % 24])
        if len(cols) >= min_history:
            h = self.hist[:, cols]
            med = np.median(h, axis=1)
            mad = np.median(np.abs(h - med[:, None]), axis=1)
        else:
            med = np.zeros(self.K)
            mad = np.zeros(self.K)
            if not seasonal.any():
                return None
        base = np.where(seasonal, season, med)
        judged = self.used & (seasonal | (len(cols) >= min_history))
        return np.nan_to_num(base), mad, seasonal, judged, len(cols)


def _state(state: dict, ctx: Context) -> dict:
    if "history" not in state:
        state["history"] = {k: MinuteHistory(ctx["analysis.anomaly_history_minutes"], ctx["analysis.anomaly_max_keys"])
                            for k in KINDS}
        state["last_end"] = None
    return state


def _keys(view: WindowView, ctx: Context, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(per-flow key id, unique keys) for a kind: masked destination prefix or exporter."""
    if kind == "exporter":
        return view.factor("exporter")
    dst_ids, dst_u = view.factor("dst_addr")
    masked = mask_prefix(dst_u, ctx["analysis.anomaly_prefix_v4"], ctx["analysis.anomaly_prefix_v6"])
    pid, pref_u = factorize_addr(masked)
    return pid[dst_ids], pref_u


def seed(state: dict, ctx: Context, kind: str, minutes: np.ndarray, keys: np.ndarray, values: np.ndarray) -> None:
    """Load per-minute history (e.g. store rollups): minutes (int, minute numbers), keys ADDR, bytes.
    Minutes that leave the ring on the way are folded into the profiles; keys already tracked (e.g. by
    seed_hours) are kept, new ones only fill free rows."""
    hist = _state(state, ctx)["history"][kind]
    order = np.argsort(minutes, kind="stable")
    minutes, keys, values = minutes[order], keys[order], values[order]
    bounds = np.flatnonzero(np.diff(minutes)) + 1
    for lo, hi in zip(np.r_[0, bounds].tolist(), np.r_[bounds, len(minutes)].tolist()):
        hist.add(int(minutes[lo]), np.array([bytes(k) for k in keys[lo:hi]], dtype=object),
                 values[lo:hi].astype(np.float64), 0.0, replace=False)


def seed_hours(state: dict, ctx: Context, kind: str, hours: np.ndarray, keys: np.ndarray, values: np.ndarray) -> int:
    """Load hourly sums (the store's step=3600 rollups; hour numbers since the epoch, ADDR keys, bytes)
    into the hour-of-day/week profiles; returns the keys that took them."""
    return _state(state, ctx)["history"][kind].fold_hours(hours, keys, values)


def analyze(view: WindowView, ctx: Context, state: dict) -> list[Finding]:
    st = _state(state, ctx)
    findings = []
    window_minutes = view.seconds / 60.0
    min_bytes = ctx["analysis.anomaly_min_bytes"]
    admit_floor = min_bytes / max(window_minutes, 1.0) / 10.0
    start_minute = view.start_ms // MINUTE_MS
    hour = view.end_ms // 3_600_000
    last_end = st["last_end"]
    for kind in KINDS:
        hist: MinuteHistory = st["history"][kind]
        ids, uniq = _keys(view, ctx, kind) if view.count else (np.zeros(0, np.int64), np.zeros(0, ADDR))
        b = view["bytes"].astype(np.float64)
        window_bytes = np.bincount(ids, weights=b, minlength=len(uniq))
        found = hist.baseline(start_minute, hour, ctx["analysis.anomaly_min_history"])
        if found is not None:
            base, mad, seasonal, judged, ncols = found
            cur = np.zeros(hist.K)
            rows = np.flatnonzero(judged)
            if len(uniq) and len(rows):
                pos = np.searchsorted(uniq.view("S16"), hist.keys[rows].view("S16"))
                pos = np.minimum(pos, len(uniq) - 1)
                match = uniq[pos].view("S16") == hist.keys[rows].view("S16")
                cur[rows[match]] = window_bytes[pos[match]]
            cur_rate = cur / window_minutes
            big = base * window_minutes >= min_bytes
            spread = MAD_K * mad
            spike = judged & big & (cur_rate >= ctx["analysis.anomaly_spike_factor"] * base) & (seasonal | (cur_rate > base + spread))
            drop = judged & big & (cur_rate <= (1 - ctx["analysis.anomaly_drop_fraction"]) * base) & (seasonal | (cur_rate < base - spread))
            for row in np.flatnonzero(spike | drop).tolist():
                findings.append(_finding(view, ctx, kind, hist.keys[row], float(cur_rate[row]), float(base[row]),
                                         bool(spike[row]), bool(seasonal[row]), ncols))
        # Feed the history with the flows this run has not counted yet.
        if view.count:
            new = view["time_end"] >= last_end if last_end is not None else np.ones(view.count, bool)
            if new.any():
                minute = view["time_end"][new] // MINUTE_MS
                m0 = int(minute.min())
                span = int(minute.max()) - m0 + 1
                flat = (minute - m0) * len(uniq) + ids[new]
                per = np.bincount(flat, weights=b[new], minlength=span * len(uniq)).reshape(span, len(uniq))
                for off in range(span):
                    nz = np.flatnonzero(per[off])
                    keys = np.array([bytes(k) for k in uniq[nz]], dtype=object)
                    hist.add(m0 + off, keys, per[off, nz], admit_floor)
    st["last_end"] = view.end_ms
    return findings


def _finding(view, ctx, kind, key, cur_rate, base, spike, seasonal, ncols) -> Finding:
    p4, p6 = ctx["analysis.anomaly_prefix_v4"], ctx["analysis.anomaly_prefix_v6"]
    if kind == "exporter":
        subject = f"exporter {addr_text(key)}"
        what = f"Traffic exported by {addr_text(key)}"
        flt = flow_filter(view, exporter=addr_text(key))
    else:
        prefix = addr.prefix_text(bytes(key), p4, p6)
        subject = prefix
        inside = ctx.is_local_text(addr_text(key))
        what = f"Traffic to {prefix}" + ("" if inside else " (outside your networks)")
        flt = flow_filter(view, dst=prefix)
    how = "the usual level at this hour" if seasonal else f"the median of the previous {ncols} minutes"
    at = fmt_time(view.end_ms)
    cur_bps, base_bps = cur_rate * 8 / 60, base * 8 / 60
    if spike:
        factor = cur_rate / base if base > 0 else float("inf")
        desc = (f"{what} rose to {factor:.1f}x {how} at {at} ({fmt_rate_bps(cur_bps)} vs {fmt_rate_bps(base_bps)})"
                f" — possible attack, backup job or misbehaving host")
        action = "Look at the top sources of this traffic in the flow explorer; rate-limit or block it if unexpected"
        title = f"Traffic spike: {subject}"
        severity = "WARNING"
    else:
        fall = 1 - cur_rate / base if base > 0 else 0.0
        desc = (f"{what} dropped {fmt_pct(fall)} at {at} ({fmt_rate_bps(cur_bps)} vs {fmt_rate_bps(base_bps)}, "
                f"{how}) — possible link failure" + (" or exporter problem" if kind == "exporter" else ""))
        action = ("Check the links and routes towards this prefix, and the exporter's health"
                  if kind != "exporter" else "Check the exporter, its interfaces and its flow export configuration")
        title = f"Traffic drop: {subject}"
        severity = "CRITICAL" if fall >= 0.99 else "WARNING"
    return Finding(
        NAME, subject, severity, title, desc, action,
        window_evidence(view, kind=kind, bytes_per_minute=round(cur_rate), baseline_bytes_per_minute=round(base),
                        baseline="seasonal" if seasonal else f"median of {ncols} minutes",
                        change="spike" if spike else "drop", window_bytes=round(cur_rate * view.seconds / 60)),
        flt,
        figures={"rate": round(cur_rate, -3), "spike": float(spike)})
