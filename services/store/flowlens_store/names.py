"""Exporter and interface names (issue 15): what collectors (options data), the SNMP poller and the
``exporters:`` config say of each exporter's interfaces, and the exporters' names, sites and reverse
DNS names, answered by the ``names`` query op.

``NameBook`` holds the newest row per (exporter, ifindex, source) in memory, bounded by
names.max_interfaces per exporter and source and names.max_rows in all (the least recently learnt
go first); each accepted event becomes a ``persist`` record the writer saves in SQLite (``save``)
in its event transaction, so names outlive a restart (``load`` at start). Config rows come from the
config at each start and are never stored. ``ReverseDns`` resolves addresses on its own thread into
a bounded cache; a query only reads the cache.
"""
from __future__ import annotations

import collections
import logging
import queue
import socket
import sqlite3
import threading
import time
from typing import Callable, Iterable

from flowmodel.events import INTERFACE_NAME_MAX, INTERFACE_SOURCES, INTERFACES_PER_EVENT
from flowmodel.namesconf import exporter_text

log = logging.getLogger(__name__)

NAMES_DDL = ("CREATE TABLE IF NOT EXISTS interface_names (exporter TEXT NOT NULL, ifindex INTEGER NOT NULL, "
             "source TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL, speed_bps INTEGER NOT NULL, "
             "learnt_at INTEGER NOT NULL, PRIMARY KEY (exporter, ifindex, source))")
SOURCE_RANK = {s: i for i, s in enumerate(INTERFACE_SOURCES)}  # options 0 (first) ... config last
SPEED_MAX_BPS = 1 << 62
IFINDEX_MAX = 0xFFFFFFFF


def _text(value, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text, got {type(value).__name__}")
    return value.strip()[:INTERFACE_NAME_MAX]


def check_event(msg: dict) -> dict:
    """An interfaces event (flowmodel.events.INTERFACE_EVENT_FIELDS) checked and normalised;
    ValueError naming the field otherwise."""
    try:
        exporter = exporter_text(msg.get("exporter"))
    except ValueError:
        raise ValueError(f"exporter {msg.get('exporter')!r} is not an address") from None
    source = msg.get("origin")  # the envelope's "source" is the sender's id (events.INTERFACE_EVENT_FIELDS)
    if source not in SOURCE_RANK:
        raise ValueError(f"origin {source!r} is not one of {', '.join(INTERFACE_SOURCES)}")
    rows = msg.get("interfaces")
    if not isinstance(rows, list) or len(rows) > INTERFACES_PER_EVENT:
        raise ValueError(f"interfaces must be a list of at most {INTERFACES_PER_EVENT} maps")
    learnt_at = msg.get("learnt_at")
    if isinstance(learnt_at, bool) or not isinstance(learnt_at, int) or learnt_at < 0:
        raise ValueError(f"learnt_at {learnt_at!r} is not a time in ms")
    interfaces = {}
    for row in rows:
        if not isinstance(row, dict):
            raise ValueError("each interface must be a map")
        ifindex, speed = row.get("ifindex"), row.get("speed_bps", 0) or 0
        if isinstance(ifindex, bool) or not isinstance(ifindex, int) or not 0 <= ifindex <= IFINDEX_MAX:
            raise ValueError(f"ifindex {ifindex!r} is not an integer 0-{IFINDEX_MAX}")
        if isinstance(speed, bool) or not isinstance(speed, int) or not 0 <= speed <= SPEED_MAX_BPS:
            raise ValueError(f"speed_bps {speed!r} of ifindex {ifindex} is not a speed in bits/s")
        interfaces[ifindex] = (_text(row.get("name"), "name"), _text(row.get("description"), "description"), speed)
    return {"exporter": exporter, "source": source, "complete": bool(msg.get("complete")),
            "learnt_at": learnt_at, "interfaces": interfaces}


def config_rows(exporters: Iterable[dict]) -> dict[tuple[str, int], tuple[str, str, int]]:
    """(exporter, ifindex) -> (name, description, speed_bps) of the ``exporters:`` config list."""
    return {(e["address"], ifindex): (i["name"], i["description"], i["speed_bps"])
            for e in exporters for ifindex, i in e["interfaces"].items()}


class NameBook:
    def __init__(self, max_interfaces: int, max_rows: int, exporters: list[dict] = ()):
        self.max_interfaces = max_interfaces
        self.max_rows = max_rows
        self.exporters = {e["address"]: e for e in exporters}  # config: name, site
        self.config = config_rows(exporters)
        # (exporter, ifindex, source) -> (name, description, speed_bps, learnt_at); least recently learnt first
        self.rows: collections.OrderedDict[tuple, tuple] = collections.OrderedDict()
        self.per_table: collections.Counter = collections.Counter()  # (exporter, source) -> rows
        self.refused = 0   # rows over names.max_interfaces for their exporter and source
        self.evicted = 0   # rows dropped at names.max_rows
        self.events = 0
        self._lock = threading.Lock()
        self._interfaces_reply: list[dict] | None = None  # built once per change

    def _put(self, key: tuple, value: tuple) -> bool:
        if key in self.rows:
            self.rows.move_to_end(key)
        elif self.per_table[key[0], key[2]] >= self.max_interfaces:
            self.refused += 1
            return False
        else:
            self.per_table[key[0], key[2]] += 1
        self.rows[key] = value
        return True

    def _drop(self, key: tuple) -> None:
        if self.rows.pop(key, None) is not None:
            self.per_table[key[0], key[2]] -= 1
            if not self.per_table[key[0], key[2]]:
                del self.per_table[key[0], key[2]]

    def load(self, rows: Iterable[tuple]) -> int:
        """Rows from SQLite (``load``), least recently learnt first; returns how many were kept."""
        with self._lock:
            for exporter, ifindex, source, name, description, speed, learnt_at in rows:
                self._put((exporter, ifindex, source), (name, description, speed, learnt_at))
            while len(self.rows) > self.max_rows:
                self._drop(next(iter(self.rows)))
            self._interfaces_reply = None
            return len(self.rows)

    def apply(self, msg: dict) -> dict:
        """One interfaces event from the bus (ValueError if it is not one): the rows it brings replace
        those of its (exporter, ifindex, source); a complete table also drops the ifindexes it no
        longer lists. Returns what the writer persists: {exporter, source, complete, rows, dropped}."""
        ev = check_event(msg)
        exporter, source, learnt_at = ev["exporter"], ev["source"], ev["learnt_at"]
        with self._lock:
            self.events += 1
            dropped = []
            if ev["complete"]:
                dropped = [k for k in self.rows if k[0] == exporter and k[2] == source and k[1] not in ev["interfaces"]]
                for k in dropped:
                    self._drop(k)
            kept = []
            for ifindex, (name, description, speed) in sorted(ev["interfaces"].items()):
                if self._put((exporter, ifindex, source), (name, description, speed, learnt_at)):
                    kept.append((ifindex, name, description, speed))
            while len(self.rows) > self.max_rows:
                oldest = next(iter(self.rows))
                self._drop(oldest)
                dropped.append(oldest)
                self.evicted += 1
            self._interfaces_reply = None
        return {"exporter": exporter, "source": source, "learnt_at": learnt_at, "rows": kept,
                "dropped": [list(k) for k in dropped]}

    def interfaces(self) -> list[dict]:
        """One row per (exporter, ifindex): the name of the first source in INTERFACE_SOURCES that has
        one (its source says which); a description and a speed from the first source that has them."""
        with self._lock:
            if self._interfaces_reply is not None:
                return self._interfaces_reply
            by_key: dict[tuple, list] = {}
            for (exporter, ifindex, source), (name, description, speed, _t) in self.rows.items():
                by_key.setdefault((exporter, ifindex), []).append((SOURCE_RANK[source], source, name, description, speed))
            for (exporter, ifindex), (name, description, speed) in self.config.items():
                by_key.setdefault((exporter, ifindex), []).append((SOURCE_RANK["config"], "config", name, description, speed))
            out = []
            for (exporter, ifindex), cands in sorted(by_key.items()):
                cands.sort()
                named = [c for c in cands if c[2]] or cands
                out.append({"exporter": exporter, "ifindex": ifindex, "name": named[0][2], "source": named[0][1],
                            "description": next((c[3] for c in named + cands if c[3]), ""),
                            "speed_bps": next((c[4] for c in named + cands if c[4]), 0)})
            self._interfaces_reply = out
            return out

    def stats(self, dns: "ReverseDns | None" = None) -> dict:
        """For the status op: rows kept (bus and SQLite), what the bounds dropped, reverse DNS counters."""
        with self._lock:
            out = {"rows": len(self.rows), "max_rows": self.max_rows, "max_interfaces": self.max_interfaces,
                   "config_interfaces": len(self.config), "config_exporters": len(self.exporters),
                   "events": self.events, "refused": self.refused, "evicted": self.evicted}
        out["reverse_dns"] = dns.stats() if dns is not None else None
        return out

    def interface_exporters(self) -> set[str]:
        with self._lock:
            return {k[0] for k in self.rows} | {k[0] for k in self.config}

    def reply(self, seen: Iterable[str], dns: "ReverseDns | None") -> dict:
        """The ``names`` op's reply: exporters (config, seen in flows or health, or naming interfaces)
        with name, site and reverse DNS name ("" until resolved, or when off), and interfaces."""
        interfaces = self.interfaces()
        addresses = set(self.exporters) | self.interface_exporters() | set(seen)
        exporters = []
        for a in sorted(addresses):
            conf = self.exporters.get(a, {})
            exporters.append({"exporter": a, "name": conf.get("name", ""), "site": conf.get("site", ""),
                              "dns": dns.lookup(a) if dns is not None else ""})
        return {"ok": True, "exporters": exporters, "interfaces": interfaces}


# ---------------------------------------------------------------- SQLite (the writer's connection)

def save(db: sqlite3.Connection, persist: dict, received: int) -> None:
    """Inside the writer's event transaction: a NameBook.apply result."""
    db.execute(NAMES_DDL)
    for exporter, ifindex, source in persist["dropped"]:
        db.execute("DELETE FROM interface_names WHERE exporter = ? AND ifindex = ? AND source = ?",
                   (exporter, ifindex, source))
    db.executemany("INSERT OR REPLACE INTO interface_names (exporter, ifindex, source, name, description, speed_bps, "
                   "learnt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   [(persist["exporter"], i, persist["source"], n, d, s, persist["learnt_at"])
                    for i, n, d, s in persist["rows"]])


def load(db: sqlite3.Connection) -> list[tuple]:
    """Every stored row, least recently learnt first (NameBook.load)."""
    db.execute(NAMES_DDL)
    return db.execute("SELECT exporter, ifindex, source, name, description, speed_bps, learnt_at "
                      "FROM interface_names ORDER BY learnt_at, rowid").fetchall()


# ---------------------------------------------------------------- reverse DNS

class ReverseDns:
    """Reverse names of exporter addresses, looked up on a thread of its own (``start``/``stop``):
    ``lookup`` answers from the cache at once ("" when not resolved yet or unresolvable) and queues
    the address when it is missing or older than ``ttl_s``. The cache holds ``cache_size`` names,
    the least recently resolved forgotten first; the queue as many addresses."""

    def __init__(self, cache_size: int, ttl_s: float, resolve: Callable[[str], str] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.cache_size = cache_size
        self.ttl_s = ttl_s
        self.resolve = resolve or (lambda a: socket.gethostbyaddr(a)[0])
        self.clock = clock
        self.cache: collections.OrderedDict[str, tuple[str, float]] = collections.OrderedDict()
        self.lookups = self.failures = self.queue_full = 0
        self._queue: queue.Queue = queue.Queue(maxsize=cache_size)
        self._queued: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def lookup(self, address: str) -> str:
        with self._lock:
            hit = self.cache.get(address)
            if hit is not None and hit[1] > self.clock():
                return hit[0]
            if address not in self._queued:
                try:
                    self._queue.put_nowait(address)
                    self._queued.add(address)
                except queue.Full:
                    self.queue_full += 1
        return hit[0] if hit is not None else ""

    def stats(self) -> dict:
        with self._lock:
            return {"cached": len(self.cache), "cache_size": self.cache_size, "waiting": len(self._queued),
                    "lookups": self.lookups, "failures": self.failures, "queue_full": self.queue_full}

    def start(self) -> "ReverseDns":
        self._thread = threading.Thread(target=self._run, name="reverse-dns", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Safe twice; a lookup under way (the resolver's own timeout) is not waited for."""
        self._stop.set()
        self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                address = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                name = self.resolve(address)
            except (OSError, UnicodeError):
                name = ""
                self.failures += 1
            except Exception:  # counted; the thread must outlive one odd answer
                log.exception("reverse dns lookup failed", extra={"address": address})
                name = ""
                self.failures += 1
            self.lookups += 1
            with self._lock:
                self._queued.discard(address)
                self.cache[address] = (str(name)[:INTERFACE_NAME_MAX * 2], self.clock() + self.ttl_s)
                self.cache.move_to_end(address)
                while len(self.cache) > self.cache_size:
                    self.cache.popitem(last=False)
