"""The flow batch body on the bus: a msgpack map of the envelope, ``count`` and ``columns``
(name -> raw little-endian bytes at the schema's width, or a packed form of the same values for a
batch of PACK_MIN_FLOWS or more: one value, the 4 bytes of IPv4-mapped addresses, or integers in
a narrower width). Encoding writes each column's bytes once into the body; decoding returns raw
columns as read-only views of the body. Callers reach it as ``bus.encode_batch`` / ``bus.decode_batch``.
"""
from __future__ import annotations

from typing import Any, Sequence

import msgpack
import numpy as np

from . import addr
from .bus import CodecError, Envelope, Sequencer, decode_body, envelope_of
from .schema import FLOW_COLUMNS, HINT_CONST, HINT_IPV4, MAX_BATCH_FLOWS, FlowBatch


def encode_batch(batch: FlowBatch | Sequence[FlowBatch], sequencer: Sequencer, **extra: Any) -> bytes:
    """One flow batch body, stamped with the envelope: a msgpack map.

    ``batch`` may be a list of parts (the collector's decoded groups): they go out as one batch
    without being joined first; each column's bytes (or packed bytes) are copied once, into the
    body. Columns of a batch of PACK_MIN_FLOWS or more are packed where that is smaller (see
    ``plan_column``). Kept to a few numpy calls per column: at 16,384 flows per batch, each call
    costs the collector as much as a byte per flow.
    """
    parts = [batch] if isinstance(batch, FlowBatch) else [p for p in batch if p.count]
    count = sum(p.count for p in parts)
    header = sequencer.stamp({"count": count, **extra})
    chunks: list = [_map_header(len(header) + 1)]
    for key, value in header.items():
        chunks.append(_PACK(key))
        chunks.append(_PACK(value))
    chunks.append(_COLUMNS_HEAD)
    pack = count >= PACK_MIN_FLOWS
    for name, (dt, _doc) in FLOW_COLUMNS.items():
        arrays = [p.columns[name] for p in parts]
        hints = [p.hints.get(name) for p in parts]
        # 1- and 2-byte columns are looked at only when their producer vouched they are constant
        # (a column nobody filled, e.g. the countries with enrichment off: 4 bytes a flow saved)
        kind, wire_dt, base = plan_column(arrays, dt, hints) \
            if pack and (dt.itemsize >= 4 or all(h == HINT_CONST for h in hints)) else (_RAW, dt, 0)
        key = _KEYS[name]
        if kind == PACK_CONST:
            first = next(arr for arr in arrays if len(arr))
            chunks.append(key + _CONST_HEAD + _bin_header(dt.itemsize))
            chunks.append(np.ascontiguousarray(first[:1], dtype=dt))
            continue
        nbytes = count * wire_dt.itemsize
        if kind == PACK_IPV4:
            chunks.append(key + _IPV4_HEAD + _bin_header(nbytes))
            chunks.extend(np.ascontiguousarray(arr.view(_ADDR_WORDS)["v4"]) for arr in arrays)
        elif kind == PACK_NARROW:
            chunks.append(key + _NARROW_HEAD + _PACK(wire_dt.itemsize) + _PACK(base) + _bin_header(nbytes))
            for arr in arrays:
                if base:
                    chunks.append(np.subtract(arr, base, out=np.empty(len(arr), wire_dt), casting="unsafe"))
                else:
                    chunks.append(arr.astype(wire_dt))
        else:
            chunks.append(key + _bin_header(nbytes))
            chunks.extend(np.ascontiguousarray(arr, dtype=dt) for arr in arrays)
    return b"".join(chunks)


# Packed columns. Checking a column costs a few numpy reductions, so small batches (a quiet
# exporter's, cut by age) and the 1- and 2-byte columns go raw: there is little to save there.
PACK_MIN_FLOWS = 256
PACK_CONST = "const"   # ["const", one value's raw bytes]: every flow has this value
PACK_IPV4 = "ipv4"     # ["ipv4", n x 4 bytes]: IPv4-mapped addresses, the 4 address bytes of each
PACK_NARROW = "narrow"  # ["narrow", itemsize, base, n x itemsize bytes]: value - base, unsigned little-endian
_RAW = "raw"
_NARROW = {1: np.dtype("u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4")}
_MAPPED = 0xFFFF0000   # bytes 8-11 of ::ffff:a.b.c.d as a little-endian u4
# an address as words: reductions over these fields are several times faster than comparing
# strided slices of a (n, 4) view
_ADDR_WORDS = np.dtype([("hi", "<u8"), ("mid", "<u4"), ("v4", "<u4")])
_ADDR_HALVES = np.dtype([("hi", "<u8"), ("lo", "<u8")])
# one Packer for the small items (a packb call builds a new one each time); its pack() holds the GIL
_PACK = msgpack.Packer(use_bin_type=True).pack
_KEYS = {name: _PACK(name) for name in FLOW_COLUMNS}
_CONST_HEAD = b"\x92" + _PACK(PACK_CONST)            # a 2-array: kind, then the value (bin)
_IPV4_HEAD = b"\x92" + _PACK(PACK_IPV4)              # kind, then the addresses (bin)
_NARROW_HEAD = b"\x94" + _PACK(PACK_NARROW)          # kind, width, base, then the values (bin)


def plan_column(arrays: list[np.ndarray], dt: np.dtype, hints: list | None = None) -> tuple[str, np.dtype, int]:
    """How one column (given as parts) goes on the wire, as (form, wire dtype, base): one value
    when all are equal, the 4 address bytes when all addresses are IPv4-mapped, integers as
    offsets from the minimum (signed columns) or from 0 in the narrowest unsigned width that holds
    them; raw when nothing is smaller. ``hints`` (one per part, FlowBatch.hints) spare the checks
    a producer already vouched for."""
    if hints and hints[0] is not None and all(h == hints[0] for h in hints):
        if hints[0] == HINT_CONST:
            first = arrays[0][:1]
            if all(arr[:1] == first for arr in arrays):  # one value per part; the same in all?
                return (PACK_CONST, dt, 0)
        elif hints[0] == HINT_IPV4 and dt.kind == "V":
            ends = arrays[0].view(_ADDR_WORDS)["v4"][0]
            if not all(arr.view(_ADDR_WORDS)["v4"][0] == ends and arr.view(_ADDR_WORDS)["v4"][-1] == ends
                       for arr in arrays):
                return (PACK_IPV4, np.dtype("<u4"), 0)
            # the ends agree: maybe one address for all (an exporter's next hop), looked at below
    if dt.kind == "V":  # 16-byte addresses
        first = arrays[0].view(_ADDR_HALVES)[0]
        if all(_all_equal(arr.view(_ADDR_HALVES)[half], first[half]) for arr in arrays for half in ("hi", "lo")):
            return (PACK_CONST, dt, 0)  # e.g. the exporter, or a next hop the template does not carry (::)
        for arr in arrays:
            words = arr.view(_ADDR_WORDS)
            if words["hi"].max() != 0 or words["mid"].min() != _MAPPED or words["mid"].max() != _MAPPED:
                return (_RAW, dt, 0)
        return (PACK_IPV4, np.dtype("<u4"), 0)
    first = arrays[0][0]
    if all(_all_equal(arr, first) for arr in arrays):
        return (PACK_CONST, dt, 0)
    hi = max(int(arr.max()) for arr in arrays)
    base = min(int(arr.min()) for arr in arrays) if dt.kind == "i" else 0
    span = hi - base
    for size, narrow in _NARROW.items():
        if size >= dt.itemsize:
            break
        if span >> (8 * size) == 0:
            return (PACK_NARROW, narrow, base)
    return (_RAW, dt, 0)


def _all_equal(arr: np.ndarray, value) -> bool:
    """Every element equals ``value``; the ends are looked at first, as most columns that are not
    constant already differ there."""
    return bool(arr[0] == value and arr[-1] == value and arr.min() == value and arr.max() == value)


def _bin_header(n: int) -> bytes:
    if n < 0x100:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 0x10000:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def _map_header(n: int) -> bytes:
    return bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")


_COLUMNS_HEAD = _PACK("columns") + _map_header(len(FLOW_COLUMNS))


def unpack_column(name: str, value, dt: np.dtype, count: int) -> np.ndarray:
    """The schema column ``name`` from its wire form (raw bytes or a packed list); CodecError on
    anything that does not hold exactly ``count`` values."""
    if isinstance(value, bytes):
        if len(value) % dt.itemsize:
            raise CodecError(f"column {name} is not a whole number of {dt.itemsize}-byte values")
        arr = np.frombuffer(value, dtype=dt)
        if len(arr) != count:
            raise CodecError(f"column {name} has {len(arr)} values, count says {count}")
        return arr
    if not isinstance(value, list) or not value:
        raise CodecError(f"column {name} is neither bytes nor a packed column")
    kind = value[0]
    if kind == PACK_CONST and len(value) == 2 and isinstance(value[1], bytes) and len(value[1]) == dt.itemsize:
        return np.full(count, np.frombuffer(value[1], dtype=dt)[0], dtype=dt)
    if kind == PACK_IPV4 and len(value) == 2 and isinstance(value[1], bytes) and dt.kind == "V":
        if len(value[1]) != 4 * count:
            raise CodecError(f"column {name} holds {len(value[1])} bytes of IPv4 addresses, count says {count}")
        return addr.ipv4_column_from_raw(np.frombuffer(value[1], dtype="<u4"))
    if kind == PACK_NARROW and len(value) == 4 and dt.kind in "iu":
        _kind, size, base, raw = value
        narrow = _NARROW.get(size) if isinstance(size, int) else None
        if narrow is None or size >= dt.itemsize or not isinstance(base, int) or not isinstance(raw, bytes):
            raise CodecError(f"column {name} is packed with a bad width or base")
        if len(raw) != size * count:
            raise CodecError(f"column {name} holds {len(raw)} bytes of {size}-byte values, count says {count}")
        info = np.iinfo(dt)
        if not info.min <= base <= info.max:
            raise CodecError(f"column {name} has a base outside its type")
        values = np.frombuffer(raw, dtype=narrow).astype(dt)
        if base:
            if count and base + int(values.max()) > info.max:
                raise CodecError(f"column {name} has values outside its type")
            values += dt.type(base)
        return values
    raise CodecError(f"column {name} is packed as {str(kind)[:20]!r}, which this reader does not know")


# Columns without which a row is not a flow: a batch lacking any is refused, not stored as zeros at
# epoch 0. The others (sampling, interfaces, AS, extras) may be absent and take their defaults.
REQUIRED_COLUMNS = ("time_start", "time_end", "src_addr", "dst_addr", "src_port", "dst_port", "protocol",
                    "bytes", "packets", "exporter")


def decode_batch(body: bytes) -> tuple[Envelope, FlowBatch]:
    """A msgpack flow batch body as (envelope, batch). Raw columns are read-only views of the body,
    packed ones new arrays at the schema's width. CodecError when a column of REQUIRED_COLUMNS is missing."""
    msg = decode_body(body)
    try:
        count = int(msg["count"])
        if not 0 <= count <= MAX_BATCH_FLOWS:
            raise CodecError(f"count {count} is outside 0-{MAX_BATCH_FLOWS}")
        raw = msg["columns"]
        if not isinstance(raw, dict):
            raise CodecError("columns is not a map")
        missing = [name for name in REQUIRED_COLUMNS if name not in raw]
        if missing:
            raise CodecError(f"flow batch lacks the column(s) {', '.join(missing)}")
        cols = {}
        for name, value in raw.items():
            spec = FLOW_COLUMNS.get(name)
            if spec is None:
                continue  # a newer producer's extra column: ignore, do not fail
            cols[name] = unpack_column(name, value, spec[0], count)
    except (KeyError, TypeError, ValueError, OverflowError) as e:  # OverflowError: a count of float inf
        raise CodecError(f"bad flow batch: {e}") from e
    return envelope_of(msg), FlowBatch(cols, count)
