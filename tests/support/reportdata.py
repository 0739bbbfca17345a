"""Two days of history a week apart for the daily report's tests: flows dated yesterday (UTC, hours
0-20 only, so the exporter "stops" at 21:00) and the same day a week before, sent as IPFIX over
loopback to a real collector (absolute flowStart/EndMilliseconds, as the history tests send theirs;
samplingInterval in each record, 1 or 10), and advisories raised and resolved that day sent to the
store's events socket. ``expected`` holds what the report must say, computed from the flows here."""
from __future__ import annotations

import datetime as dt
import struct

import numpy as np

from support.notify import Injector
from support.services import send_udp, wait_until

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
# (name, IPFIX IE, big-endian type): what each test record carries
FIELDS = [("src", 8, ">u4"), ("dst", 12, ">u4"), ("src_port", 7, ">u2"), ("dst_port", 11, ">u2"),
          ("protocol", 4, "u1"), ("packets", 2, ">u8"), ("bytes", 1, ">u8"), ("start", 152, ">u8"),
          ("end", 153, ">u8"), ("sampling", 34, ">u4")]
RECORD = np.dtype([(n, t) for n, _ie, t in FIELDS])
TEMPLATE_ID, DOMAIN, PER_DATAGRAM = 300, 7, 20


def day_flows(day_start_ms: int, hours: int, per_hour: int, seed: int) -> np.ndarray:
    """``per_hour`` flows in each of the day's first ``hours`` hours: five inside hosts to a few
    outside ones over https, dns and ssh; every third flow sampled 1 in 10."""
    rng = np.random.default_rng(seed)
    n = hours * per_hour
    rec = np.zeros(n, RECORD)
    hour = np.repeat(np.arange(hours), per_hour)
    rec["end"] = day_start_ms + hour * HOUR_MS + rng.integers(1_000, HOUR_MS - 60_000, n)
    rec["start"] = rec["end"] - rng.integers(0, 30_000, n)
    rec["src"] = (10 << 24) + 1 + rng.choice(5, n, p=[0.4, 0.25, 0.15, 0.12, 0.08])
    rec["dst"] = (192 << 24 | 2 << 8) + 1 + rng.integers(0, 8, n)
    kind = rng.integers(0, 3, n)
    rec["protocol"] = np.where(kind == 1, 17, 6)
    rec["dst_port"] = np.array([443, 53, 22])[kind]
    rec["src_port"] = 40_000 + rng.integers(0, 20_000, n)
    rec["packets"] = rng.integers(1, 40, n)
    rec["bytes"] = rec["packets"] * rng.integers(60, 1400, n)
    rec["sampling"] = np.where(np.arange(n) % 3 == 0, 10, 1)
    return rec


def datagrams(rec: np.ndarray, seq0: int) -> list[bytes]:
    """A template datagram, then the records PER_DATAGRAM at a time (IPFIX, export time now)."""
    import time

    now_s = int(time.time())
    spec = struct.pack(">HH", TEMPLATE_ID, len(FIELDS)) + b"".join(
        struct.pack(">HH", ie, np.dtype(t).itemsize) for _n, ie, t in FIELDS)
    tset = struct.pack(">HH", 2, 4 + len(spec)) + spec
    out = [struct.pack(">HHIII", 10, 16 + len(tset), now_s, seq0, DOMAIN) + tset]
    raw = rec.tobytes()
    for i in range(0, len(rec), PER_DATAGRAM):
        chunk = raw[i * RECORD.itemsize:(i + PER_DATAGRAM) * RECORD.itemsize]
        dset = struct.pack(">HH", TEMPLATE_ID, 4 + len(chunk)) + chunk
        out.append(struct.pack(">HHIII", 10, 16 + len(dset), now_s, seq0 + i, DOMAIN) + dset)
    return out


def totals(rec: np.ndarray) -> dict:
    rate = rec["sampling"].astype(np.int64)
    return {"bytes": int((rec["bytes"].astype(np.int64) * rate).sum()),
            "packets": int((rec["packets"].astype(np.int64) * rate).sum()), "flows": len(rec)}


def top_sources(rec: np.ndarray) -> list[tuple[str, int]]:
    sums: dict[str, int] = {}
    for s, b, r in zip(rec["src"].tolist(), rec["bytes"].tolist(), rec["sampling"].tolist()):
        key = f"10.0.0.{s & 0xFF}"
        sums[key] = sums.get(key, 0) + b * r
    return sorted(sums.items(), key=lambda kv: -kv[1])


def advisory(key: str, severity: str, state: str, first: int, last: int, title: str) -> dict:
    subject = key.split(":", 1)[1]
    return {"key": key, "analyzer": key.split(":")[0], "subject": subject, "severity": severity, "state": state,
            "first_seen": first, "last_seen": last, "title": title, "description": f"{title}.",
            "action": "Look.", "evidence": {}, "filter": {"src": subject}}


def load(cfg: dict, client) -> dict:
    """Send the two days; wait until the store committed and sealed them. Returns what to expect."""
    today = dt.datetime.now(dt.timezone.utc).date()
    day = today - dt.timedelta(days=1)
    t0 = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp() * 1000)
    this = day_flows(t0, hours=21, per_hour=60, seed=1)
    before = day_flows(t0 - 7 * DAY_MS, hours=24, per_hour=40, seed=2)
    port = cfg["collector"]["ipfix_port"]
    n = 0
    for rec in (before, this):
        for i in range(0, len(rec), 200):  # a few datagrams at a time: nothing lost on loopback
            send_udp(port, datagrams(rec[i:i + 200], n + i))
            committed = n + i + len(rec[i:i + 200])
            wait_until(lambda c=committed: client.status()["flows_committed"] >= c, 30)
        n += len(rec)
    wait_until(lambda: (parts := client.status()["sqlite"]["partitions"]) and all(p["sealed"] for p in parts),
               180, 0.5)
    inject = Injector(cfg)
    try:
        inject.send([advisory("scan:10.0.0.9", "CRITICAL", "raised", t0 + 3 * HOUR_MS, t0 + DAY_MS + 60_000,
                              "Port scan from 10.0.0.9"),
                     advisory("scan:10.0.0.8", "CRITICAL", "raised", t0 + 5 * HOUR_MS, t0 + 6 * HOUR_MS,
                              "Port scan from 10.0.0.8"),
                     advisory("dns:10.0.0.7", "WARNING", "resolved", t0 - DAY_MS, t0 + 7 * HOUR_MS,
                              "DNS errors from 10.0.0.7"),
                     advisory("dns:10.0.0.6", "INFO", "resolved", t0 - 3 * DAY_MS, t0 - 2 * DAY_MS,
                              "An older day's advisory")])
    finally:
        inject.close()
    return {"day": day, "since": t0, "until": t0 + DAY_MS, "totals": totals(this), "previous": totals(before),
            "top_src": top_sources(this), "flows": n}
