"""The one flow schema: every service sees flows as equal-length numpy columns with these names.

A batch is a ``FlowBatch`` (a dict of columns plus a length); nothing on the hot path builds a
Python object per flow. Addresses are 16 raw bytes (IPv6, IPv4 as ::ffff:a.b.c.d) in a ``V16``
column so they can be compared, sorted and masked vectorised (see ``flowmodel.addr``).
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

ADDR = np.dtype("V16")

# name -> (dtype, meaning). Order is the wire and storage order. Each column is documented once here.
FLOW_COLUMNS: dict[str, tuple[np.dtype, str]] = {
    "time_start": (np.dtype("<i8"), "flow start, ms since epoch UTC"),
    "time_end": (np.dtype("<i8"), "flow end, ms since epoch UTC"),
    "src_addr": (ADDR, "source address, IPv6 or IPv4-mapped"),
    "dst_addr": (ADDR, "destination address, IPv6 or IPv4-mapped"),
    "src_port": (np.dtype("<u2"), "source port, 0 where the protocol has none"),
    "dst_port": (np.dtype("<u2"), "destination port, 0 where the protocol has none"),
    "protocol": (np.dtype("u1"), "IANA protocol number"),
    "bytes": (np.dtype("<u8"), "octets as exported (not multiplied by sampling_rate)"),
    "packets": (np.dtype("<u8"), "packets as exported (not multiplied by sampling_rate)"),
    "sampling_rate": (np.dtype("<u4"), "1 in N sampling; 1 = unsampled, 0 = sampled at an unknown rate"),
    "tcp_flags": (np.dtype("u1"), "cumulative TCP flags"),
    "tos": (np.dtype("u1"), "IP type of service / DSCP+ECN byte"),
    "input_if": (np.dtype("<u4"), "SNMP ifIndex in"),
    "output_if": (np.dtype("<u4"), "SNMP ifIndex out"),
    "src_as": (np.dtype("<u4"), "source AS"),
    "dst_as": (np.dtype("<u4"), "destination AS"),
    "exporter": (ADDR, "address the export packet came from"),
    "observation_domain": (np.dtype("<u4"), "v9 source id / IPFIX observation domain id / v5 engine type<<8|id / sFlow sub-agent id"),
    "flow_version": (np.dtype("u1"), "5, 9 or 10 (NetFlow/IPFIX), 105 (sFlow v5)"),
    # Extras carried by real exporters.
    "next_hop": (ADDR, "IP next hop (IPv4-mapped or IPv6), zero when absent"),
    "icmp_type": (np.dtype("u1"), "ICMP/ICMPv6 type, 0 when not ICMP"),
    "icmp_code": (np.dtype("u1"), "ICMP/ICMPv6 code, 0 when not ICMP"),
    "vlan": (np.dtype("<u2"), "802.1Q VLAN id, 0 when absent"),
    "direction": (np.dtype("u1"), "0 ingress, 1 egress, 255 unknown"),
    "src_mask": (np.dtype("u1"), "source prefix length, 0 when absent"),
    "dst_mask": (np.dtype("u1"), "destination prefix length, 0 when absent"),
    # Last, so the store's packed rows of older files are a prefix of today's (layout.migrate).
    "biflow": (np.dtype("u1"), "0 one-way flow record; 1 forward half of an RFC 5103 biflow record, "
                               "2 its reverse half (endpoints swapped), present only when it carried traffic"),
    # Added after biflow, last for the same reason. Filled by the collector's enrichment (flowmodel.geo).
    "src_country": (np.dtype("<u2"), "source country: ISO 3166 code packed in two bytes (flowmodel.geo), "
                                     "a label code for private/documentation/... ranges, 0 unknown"),
    "dst_country": (np.dtype("<u2"), "destination country, as src_country"),
}

COLUMN_NAMES: tuple[str, ...] = tuple(FLOW_COLUMNS)

# The most flows one bus batch may hold (collector.batch_max_flows is capped at it): a reader
# rejects a larger count before allocating, as a packed batch can say "n flows, all equal" in a few bytes.
MAX_BATCH_FLOWS = 1 << 20
ADDRESS_COLUMNS = ("src_addr", "dst_addr", "exporter", "next_hop")

# A structured dtype with every column, for code that wants one record array (e.g. the ring).
RECORD_DTYPE = np.dtype([(name, dt) for name, (dt, _doc) in FLOW_COLUMNS.items()])

# Defaults for columns a decoder did not fill.
COLUMN_DEFAULTS = {"sampling_rate": 1, "direction": 255}


def rate_factor(sampling_rate: np.ndarray) -> np.ndarray:
    """What a sampled flow's bytes and packets are multiplied by to estimate the traffic: its
    sampling rate as uint64, an unknown rate (0) counting as 1."""
    return np.maximum(sampling_rate, 1).astype(np.uint64)


# FlowBatch hints: what a producer knows of a column without looking, so the bus codec need not look
HINT_CONST = "const"   # every value is the same
HINT_IPV4 = "ipv4"     # every address is IPv4-mapped


class FlowBatch:
    """Equal-length columns of the flow schema. Columns may be read-only views (from the wire).

    ``hints`` (column -> HINT_CONST or HINT_IPV4) are promises of the producer, e.g. a decoder that
    filled a column from one header value or from IPv4 fields; the bus codec packs such a column
    without checking it. A column left out is filled with its default and hinted HINT_CONST. Whoever
    changes a hinted column's values afterwards must drop its hint.
    """

    __slots__ = ("columns", "count", "hints")

    def __init__(self, columns: Mapping[str, np.ndarray], count: int | None = None,
                 hints: Mapping[str, str] | None = None):
        cols = dict(columns)
        if count is None:
            count = len(next(iter(cols.values()))) if cols else 0
        for name, arr in cols.items():
            if name not in FLOW_COLUMNS:
                raise ValueError(f"unknown flow column {name!r}")
            if len(arr) != count:
                raise ValueError(f"column {name!r} has {len(arr)} rows, expected {count}")
        self.hints: dict[str, str] = dict(hints) if hints else {}
        for name, (dt, _doc) in FLOW_COLUMNS.items():
            if name not in cols:
                cols[name] = _filled(dt, count, COLUMN_DEFAULTS.get(name, 0))
                self.hints[name] = HINT_CONST  # filled here with one value: the codec sends it once
        self.columns: dict[str, np.ndarray] = cols
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def __repr__(self) -> str:
        return f"FlowBatch(count={self.count})"

    @classmethod
    def empty(cls, count: int = 0) -> "FlowBatch":
        """A zero-filled batch (defaults applied) with writable columns, and no hints: its columns
        are there to be written."""
        batch = cls({}, count)
        batch.hints.clear()
        return batch

    @classmethod
    def from_records(cls, records: np.ndarray) -> "FlowBatch":
        """Columns (views) of a structured array with RECORD_DTYPE-compatible field names."""
        return cls({name: records[name] for name in records.dtype.names if name in FLOW_COLUMNS}, len(records))

    def to_records(self) -> np.ndarray:
        out = np.empty(self.count, dtype=RECORD_DTYPE)
        for name in COLUMN_NAMES:
            out[name] = self.columns[name]
        return out

    def select(self, index) -> "FlowBatch":
        """Rows picked by a boolean mask, index array or slice."""
        cols = {name: arr[index] for name, arr in self.columns.items()}
        return FlowBatch(cols, hints=self.hints)  # a subset keeps both promises

    @staticmethod
    def concat(batches: Iterable["FlowBatch"]) -> "FlowBatch":
        batches = [b for b in batches if b.count]
        if not batches:
            return FlowBatch.empty(0)
        if len(batches) == 1:
            return batches[0]
        # a hint all parts share still holds for the whole, a constant only if it is the same one
        hints = {name: hint for name, hint in batches[0].hints.items()
                 if all(b.hints.get(name) == hint for b in batches[1:])
                 and (hint != HINT_CONST or all(b.columns[name][:1] == batches[0].columns[name][:1] for b in batches))}
        return FlowBatch({name: np.concatenate([b.columns[name] for b in batches]) for name in COLUMN_NAMES},
                         hints=hints)


def _filled(dt: np.dtype, count: int, value: int) -> np.ndarray:
    if dt.kind == "V":
        return np.zeros(count, dtype=dt)
    if value == 0:
        return np.zeros(count, dtype=dt)
    return np.full(count, value, dtype=dt)
