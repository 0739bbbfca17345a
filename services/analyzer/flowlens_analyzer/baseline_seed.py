"""Seeding the anomaly baseline from the store at start, so the analyzer need not learn a day of
traffic again: the hour-of-day/week profiles from hourly rollups, the per-minute ring from the
recent minutes' rollups (anomaly.seed_hours, anomaly.seed). ``rollup_rows`` reads a rollups reply
into the columns those take; a reply it cannot read costs rows, never the start.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from flowmodel import addr, bus
from flowmodel.client import StoreError
from flowmodel.logs import fields

from . import anomaly

log = logging.getLogger(__name__)
SEED_BUDGET_S = 30.0  # no baseline request starts later than this after seeding began
MINUTE_MS, HOUR_MS = 60_000, 3_600_000


def seed_baseline(engine, cfg, client, budget_s: float = SEED_BUDGET_S) -> dict[str, Any]:
    """Seed ``engine``'s anomaly baseline from the store, per kind: the hour-of-day/week profiles from
    hourly sums (step=3600) over the full hours of [now - anomaly_baseline_window, the recent minutes), the
    per-minute ring (short-term median/MAD) from per-minute rows of the recent minutes (the last
    anomaly_history_minutes, from the start of their first hour). Scaled bytes (times the sampling
    rate, as the analyzer counts them), only the anomaly_max_keys keys with most bytes. Each reply is
    at most the store's cap of rows (storage.query_max_rows x 100): a span that would need more is
    shortened, oldest hours first. No request starts after budget_s. A store error reply skips that
    part (logged); StoreUnavailable (no answer in time) ends the seeding and is raised to the caller.
    Returns what was loaded: rows per part, keys, seconds."""
    t0 = time.monotonic()
    now = bus.now_ms()
    top = int(cfg["analysis.anomaly_max_keys"])
    cap_rows = int(cfg["storage.query_max_rows"]) * 100
    since = now - int(cfg["analysis.anomaly_baseline_window"] * 1000)
    recent = max(since, (now - cfg["analysis.anomaly_history_minutes"] * MINUTE_MS) // HOUR_MS * HOUR_MS)
    hours_until = recent // HOUR_MS * HOUR_MS
    recent = max(recent, now - (cap_rows // top) * MINUTE_MS)  # (a ring longer than the cap allows: its oldest minutes)
    hours_since = max(-(-since // HOUR_MS) * HOUR_MS, hours_until - (cap_rows // top) * HOUR_MS)
    hourly = hours_until > hours_since
    report: dict[str, Any] = {"hourly_rows": 0, "minute_rows": 0, "profiled_keys": 0, "errors": [],
                              "hours": (hours_until - hours_since) // HOUR_MS if hourly else 0,
                              "minutes": -(-(now - recent) // MINUTE_MS)}
    state = engine.states[anomaly.NAME]
    parts = [(kind, step) for kind in anomaly.KINDS for step in ((3600, 60) if hourly else (60,))]
    for kind, step in parts:
        if time.monotonic() - t0 > budget_s:
            report["errors"].append(f"{kind} step {step}: seeding budget of {budget_s:g} s spent")
            break
        lo, hi = (hours_since, hours_until) if step == 3600 else (recent, now)
        try:
            reply = client.rollups(kind, since=lo, until=hi, step=step, top=top, scaled=True)
        except StoreError as e:
            report["errors"].append(f"{kind} step {step}: {e}")
            log.warning("no baseline part from the store", extra=fields(kind=kind, step=step, reason=str(e)))
            continue
        minutes, keys, values = rollup_rows(reply, cfg)
        if step == 3600:
            report["profiled_keys"] += anomaly.seed_hours(state, engine.ctx, kind, minutes // 60, keys, values)
            report["hourly_rows"] += len(minutes)
        else:
            if len(minutes):
                anomaly.seed(state, engine.ctx, kind, minutes, keys, values)
            report["minute_rows"] += len(minutes)
    report["seconds"] = round(time.monotonic() - t0, 3)
    return report


def rollup_rows(reply: dict, cfg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The store's rollups reply as (minute numbers, ADDR keys, bytes). Rows may be a map of columns,
    maps or lists (in the order of reply["columns"], else minute, key, bytes, packets, flows); minutes may be ms,
    s or minute numbers; keys an address, a prefix text of our prefix length, or 16 raw bytes. Rows whose
    key cannot be read (or is a prefix of another length) are skipped."""
    rows = reply.get("rows") or []
    if isinstance(rows, dict):  # columns of equal length: {"minute": [...], "key": [...], ...}: each key parsed once
        try:
            n = len(rows["minute"])
            key_texts = rows["key"]
            minute = np.asarray(rows["minute"], dtype=np.int64)
            values = np.asarray(rows["bytes"], dtype=np.float64)
            if len(key_texts) != n or len(values) != n:
                raise ValueError("columns of unequal length")
        except (KeyError, TypeError, ValueError, OverflowError):
            return _no_rows()
        parsed: dict = {}
        idx = np.empty(n, np.int64)
        for i, k in enumerate(key_texts):
            j = parsed.get(k)
            if j is None:
                j = parsed[k] = len(parsed)
            idx[i] = j
        table = [_key_bytes(k, cfg) for k in parsed]
        ok_key = np.array([kb is not None for kb in table], dtype=bool)
        if not ok_key.any():
            return _no_rows()
        key_arr = np.frombuffer(b"".join(kb if kb is not None else bytes(16) for kb in table), dtype="V16")
        keep = ok_key[idx]
        return _minute_numbers(minute[keep]), key_arr[idx[keep]].copy(), values[keep]
    columns = reply.get("columns") or ["minute", "key", "bytes", "packets", "flows"]
    minutes, keys, values = [], [], []
    for row in rows:
        r = row if isinstance(row, dict) else dict(zip(columns, row))
        try:
            m = int(r["minute"])
            kb = _key_bytes(r["key"], cfg)
            if kb is None:
                continue
            minutes.append(m)
            keys.append(kb)
            values.append(float(r["bytes"]))
        except (KeyError, TypeError, ValueError):
            continue
    if not minutes:
        return _no_rows()
    return (_minute_numbers(np.array(minutes, np.int64)), np.frombuffer(b"".join(keys), dtype="V16").copy(),
            np.array(values))


def _no_rows():
    return np.zeros(0, np.int64), np.zeros(0, "V16"), np.zeros(0)


def _minute_numbers(m: np.ndarray) -> np.ndarray:
    """ms, s or minute numbers (told apart by size) as minute numbers."""
    return np.where(m > 10**11, m // 60_000, np.where(m > 10**8, m // 60, m))


def _key_bytes(k, cfg) -> bytes | None:
    if isinstance(k, (bytes, bytearray)):
        return bytes(k) if len(k) == 16 else None
    try:
        text = str(k)
        return _prefix_key(text, cfg) if "/" in text else addr.parse_network(text)[0]
    except (TypeError, ValueError):
        return None


def _prefix_key(text: str, cfg) -> bytes | None:
    lo, _hi, plen = addr.parse_network(text)
    want = cfg["analysis.anomaly_prefix_v4"] if lo[:12] == addr.V4_MAPPED_PREFIX else cfg["analysis.anomaly_prefix_v6"]
    return lo if plen == want else None
