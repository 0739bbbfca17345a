"""Shared pieces of the analyzers: the window view they read, the Finding they return, the
inside/outside test from analysis.local_networks, address factorisation and number wording.

An analyzer is a pure function ``analyze(view, ctx, state) -> list[Finding]``: ``view`` holds the
window's columns, ``ctx`` the parsed config, ``state`` a dict the analyzer may keep between runs.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from flowmodel import addr
from flowmodel.schema import ADDR, FlowBatch, rate_factor

# Columns the analyzer keeps in its windows (the rest of the schema is not used by any analyzer).
WINDOW_COLUMNS = ("time_start", "time_end", "src_addr", "dst_addr", "src_port", "dst_port", "protocol",
                  "bytes", "packets", "tcp_flags", "exporter", "input_if", "output_if")
# The address columns a window keeps compact (winbuf): 32 bits for IPv4, else an id into a wide table.
ADDRESS_PAIR = ("src_addr", "dst_addr")
V4_MAPPED = np.uint64(0xFFFF << 32)  # the low 64-bit word of ::ffff:0.0.0.0 (the high one is 0)


def wide_name(name: str) -> str:
    """The bool column saying which rows of a compact address column are not IPv4 ("wide")."""
    return name + "_wide"


def v6_name(name: str) -> str:
    """The 16-byte column holding a compact address column's wide addresses (present only while some are)."""
    return name + "_v6"


@dataclass
class Finding:
    """One condition an analyzer sees in one run; the lifecycle turns findings into advisory events."""

    analyzer: str
    subject: str
    severity: str
    title: str
    description: str
    action: str
    evidence: dict[str, Any]
    filter: dict[str, Any]
    # Figures whose change is "material" (worth an update event); compared with MaterialChange.
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.analyzer}:{self.subject}"


class Context:
    """Config values the analyzers read, parsed once (local networks as byte bounds)."""

    def __init__(self, cfg: Mapping[str, Any]):
        self.cfg = cfg
        bounds = [addr.parse_network(n)[:2] for n in cfg["analysis.local_networks"]]
        self.local_lo = np.frombuffer(b"".join(lo for lo, _ in bounds), dtype=ADDR) if bounds else np.zeros(0, ADDR)
        self.local_hi = np.frombuffer(b"".join(hi for _, hi in bounds), dtype=ADDR) if bounds else np.zeros(0, ADDR)
        # the bounds as (high, low) words and as integers, once: is_local_text runs for every address a
        # finding words
        self._bounds = [tuple(np.uint64(w[i]) for w in (*addr_words(self.local_lo), *addr_words(self.local_hi)))
                        for i in range(len(self.local_lo))]
        self._int_bounds = [(int.from_bytes(lo, "big"), int.from_bytes(hi, "big")) for lo, hi in bounds]

    def __getitem__(self, key: str) -> Any:
        return self.cfg[key]

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self.cfg[key]
        except KeyError:
            return default

    def is_local(self, column: np.ndarray) -> np.ndarray:
        """Boolean mask: address inside one of analysis.local_networks (vectorised 128-bit compare)."""
        out = np.zeros(len(column), dtype=bool)
        if not len(column):
            return out
        hi, lo = addr_words(column)
        for lo_hi, lo_lo, hi_hi, hi_lo in self._bounds:
            above = (hi > lo_hi) | ((hi == lo_hi) & (lo >= lo_lo))
            below = (hi < hi_hi) | ((hi == hi_hi) & (lo <= hi_lo))
            out |= above & below
        return out

    def is_local_text(self, text: str) -> bool:
        value = int.from_bytes(addr.to_bytes(text), "big")
        return any(lo <= value <= hi for lo, hi in self._int_bounds)

    def described(self, address_text: str) -> str:
        """An address as an advisory names it: bare when inside analysis.local_networks, else with
        what it is: a multicast group or a link-local address is on the link, not "outside"."""
        if self.is_local_text(address_text):
            return address_text
        ip = ipaddress.ip_address(address_text)
        what = "multicast" if ip.is_multicast else "link-local" if ip.is_link_local else "outside your networks"
        return f"{address_text} ({what})"


def addr_words(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An ADDR column as two uint64 words (high, low) whose tuple order is the address order."""
    words = np.ascontiguousarray(column).view(">u8").reshape(len(column), 2).astype(np.uint64)
    return words[:, 0], words[:, 1]


class WindowView:
    """The columns of one analysis window [start_ms, end_ms) plus cached derived columns.

    Byte and packet counts are already multiplied by the sampling rate (an estimate of the real
    traffic), since advisories speak of traffic, not of samples.
    """

    def __init__(self, columns: Mapping[str, np.ndarray], start_ms: int, end_ms: int,
                 exporters: np.ndarray | None = None, compact: bool = False):
        self.columns = dict(columns)
        self.start_ms = int(start_ms)
        self.end_ms = int(end_ms)
        self.count = len(self.columns["time_end"]) if "time_end" in self.columns else 0
        # The window's compact form (winbuf): with ``exporters`` (an ADDR table), columns["exporter"] holds
        # ids into it; with ``compact``, src_addr/dst_addr hold IPv4 addresses as uint32, and where their
        # _wide column is true the address is in their _v6 column. view[name], factor(), addresses() and equal() give
        # the same answers in either form; analyzers use factor() and addresses() so that the full
        # 16-byte columns are not built.
        self.exporters = exporters
        self.compact = compact
        self._cache: dict[str, Any] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        compact = (name == "exporter" and self.exporters is not None) or (name in ADDRESS_PAIR and self.compact)
        if not compact:
            return self.columns[name]
        hit = self._cache.get(name)
        if hit is None:
            hit = self._cache[name] = (self.exporters[self.columns[name]] if name == "exporter"
                                       else self.addresses(name))
        return hit

    def addresses(self, name: str, rows: np.ndarray | None = None) -> np.ndarray:
        """An address column (ADDR), or its given rows."""
        col = self.columns[name]
        if not self.compact or name not in ADDRESS_PAIR:
            return self[name] if rows is None else self[name][rows]
        wide, v6 = self.columns[wide_name(name)], self.columns.get(v6_name(name))
        if rows is not None:
            col, wide, v6 = col[rows], wide[rows], None if v6 is None else v6[rows]
        return expand_addresses(col, wide, v6)

    def equal(self, a: str, b: str) -> np.ndarray:
        """Per flow: whether address columns a and b hold the same address."""
        if not self.compact:
            return self.columns[a] == self.columns[b]
        wa, wb = self.columns[wide_name(a)], self.columns[wide_name(b)]
        out = (self.columns[a] == self.columns[b]) & ~wa & ~wb  # two IPv4 addresses: their 32 bits
        both = np.flatnonzero(wa & wb)  # two wide ones: their 16 bytes
        if len(both):
            out[both] = self.columns[v6_name(a)][both] == self.columns[v6_name(b)][both]
        return out

    def __len__(self) -> int:
        return self.count

    @property
    def seconds(self) -> float:
        return max((self.end_ms - self.start_ms) / 1000.0, 1e-3)

    def factor(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids, uniques) of an address column: ids[i] indexes uniques; cached per view."""
        key = "factor:" + name
        hit = self._cache.get(key)
        if hit is None:
            if name == "exporter" and self.exporters is not None:
                hit = _factor_ids(self.columns[name], self.exporters)
            elif (name in ADDRESS_PAIR and self.compact and self.count
                  and not self.columns[wide_name(name)].any()):
                ids, uniq_lo = _factor_lo(self.columns[name].astype(np.uint64) | V4_MAPPED)
                hit = ids, _addresses_of_words(np.uint64(0), uniq_lo)
            else:
                hit = factorize_addr(self[name])
            self._cache[key] = hit
        return hit

    def local(self, name: str, ctx: Context) -> np.ndarray:
        key = "local:" + name
        hit = self._cache.get(key)
        if hit is None:
            ids, uniq = self.factor(name)
            hit = ctx.is_local(uniq)[ids]
            self._cache[key] = hit
        return hit

    def select(self, mask: np.ndarray) -> "WindowView":
        return WindowView({k: v[mask] for k, v in self.columns.items()}, self.start_ms, self.end_ms, self.exporters,
                          self.compact)


def expand_addresses(v4: np.ndarray, wide: np.ndarray, v6: np.ndarray | None) -> np.ndarray:
    """ADDR column of a compact one: IPv4-mapped from the 32 bits, the v6 column's value where wide."""
    out = _addresses_of_words(np.uint64(0), v4.astype(np.uint64) | V4_MAPPED)
    if wide.any():
        out[wide] = v6[wide]
    return out


def _addresses_of_words(hi, lo: np.ndarray) -> np.ndarray:
    out = np.empty((len(lo), 2), dtype=">u8")
    out[:, 0] = hi
    out[:, 1] = lo
    return out.view(ADDR).reshape(len(lo))


def _factor_ids(ids: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """factorize_addr of table[ids] without building that column: the ids present, factorised by address."""
    present = np.flatnonzero(np.bincount(ids, minlength=len(table)))
    local, uniq = factorize_addr(table[present])
    remap = np.zeros(len(table), np.int64)
    remap[present] = local
    return remap[ids], uniq


def view_from_batch(batch: FlowBatch, start_ms: int, end_ms: int) -> WindowView:
    """A WindowView of a FlowBatch (tests and the offline `analyze` command), sampling applied."""
    return WindowView(window_columns(batch), start_ms, end_ms)


def window_columns(batch: FlowBatch) -> dict[str, np.ndarray]:
    """The analyzer's columns of a batch, copied, with bytes/packets scaled by the sampling rate."""
    cols = {name: np.array(batch[name]) for name in WINDOW_COLUMNS}
    rate = np.asarray(batch["sampling_rate"])
    if len(rate) and (rate > 1).any():
        rate = rate_factor(rate)
        cols["bytes"] = cols["bytes"] * rate
        cols["packets"] = cols["packets"] * rate
    return cols


def factorize_addr(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer ids for an ADDR column: (ids int64, unique addresses ADDR in address order)."""
    n = len(column)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, ADDR)
    words = np.ascontiguousarray(column).view(">u8").reshape(n, 2)
    hi, lo = words[:, 0], words[:, 1]
    if (hi == hi[0]).all():  # one family/prefix (all IPv4-mapped, typically): one 64-bit key
        ids, uniq_lo = _factor_lo(lo.astype(np.uint64))  # native order: sorting big-endian words is several times slower
        return ids, _addresses_of_words(hi[0], uniq_lo)
    order = np.lexsort((lo, hi))
    shi, slo = hi[order], lo[order]
    start = np.empty(n, dtype=bool)
    start[0] = True
    start[1:] = (shi[1:] != shi[:-1]) | (slo[1:] != slo[:-1])
    group = np.cumsum(start) - 1
    ids = np.empty(n, dtype=np.int64)
    ids[order] = group
    uniq = np.empty((int(start.sum()), 2), dtype=">u8")
    uniq[:, 0] = shi[start]
    uniq[:, 1] = slo[start]
    return ids, uniq.view(ADDR).reshape(len(uniq))


def _factor_lo(lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids int64, sorted unique values) of a non-empty uint64 column."""
    n = len(lo)
    base = int(lo.min())
    span = lo - np.uint64(base)
    key_bits, idx_bits = int(span.max()).bit_length(), max(1, (n - 1).bit_length())
    if key_bits + idx_bits > 64:
        uniq_lo, ids = np.unique(lo, return_inverse=True)
        return ids.reshape(-1).astype(np.int64, copy=False), uniq_lo
    # the row number in the spare low bits: one plain sort instead of an argsort (IPv4: 32 + 20 bits)
    s = np.sort((span << np.uint64(idx_bits)) | np.arange(n, dtype=np.uint64))
    order = (s & np.uint64((1 << idx_bits) - 1)).astype(np.intp)
    sk = s >> np.uint64(idx_bits)
    start = np.empty(n, dtype=bool)
    start[0] = True
    np.not_equal(sk[1:], sk[:-1], out=start[1:])
    ids = np.empty(n, dtype=np.int64)
    ids[order] = np.cumsum(start) - 1
    return ids, sk[start] + np.uint64(base)


def mask_prefix(column: np.ndarray, prefix_v4: int, prefix_v6: int) -> np.ndarray:
    """Each address with its host bits cleared (IPv4-mapped to prefix_v4, IPv6 to prefix_v6), done on
    the two 64-bit words (flowmodel.addr.mask_column's per-byte masks cost ~10x more)."""
    n = len(column)
    hi, lo = addr_words(column)
    v4 = (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))
    full = np.uint64(0xFFFFFFFFFFFFFFFF)

    def ones(bits: int) -> np.uint64:  # the top `bits` bits of a 64-bit word set
        return np.uint64(0) if bits <= 0 else (full if bits >= 64 else np.uint64(((1 << bits) - 1) << (64 - bits)))

    v4_mask = np.uint64(0xFFFFFFFF00000000) | (ones(prefix_v4) >> np.uint64(32))
    out_hi = np.where(v4, hi, hi & ones(prefix_v6))
    out_lo = np.where(v4, lo & v4_mask, lo & ones(prefix_v6 - 64))
    out = np.empty((n, 2), dtype=">u8")
    out[:, 0] = out_hi
    out[:, 1] = out_lo
    return out.view(ADDR).reshape(n)


def unique_sorted(values: np.ndarray) -> np.ndarray:
    """Sorted unique values by sort + compare (numpy's hash-based np.unique is slow on wide int keys)."""
    s = np.sort(values)
    if len(s) < 2:
        return s
    keep = np.empty(len(s), dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def unique_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique values, how often each occurs)."""
    s = np.sort(values)
    if not len(s):
        return s, np.zeros(0, np.int64)
    keep = np.empty(len(s), dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    starts = np.flatnonzero(keep)
    return s[starts], np.diff(np.append(starts, len(s)))


def addr_text(value) -> str:
    return addr.to_text(bytes(value))


def flow_filter(view: WindowView, **kv) -> dict[str, Any]:
    """The flow-explorer filter for a finding: the given flows-query arguments plus the window."""
    out = {k: v for k, v in kv.items() if v is not None}
    out["since"] = view.start_ms
    out["until"] = view.end_ms
    return out


def window_evidence(view: WindowView, **kv) -> dict[str, Any]:
    out = dict(kv)
    out["window_start"] = view.start_ms
    out["window_end"] = view.end_ms
    return out
