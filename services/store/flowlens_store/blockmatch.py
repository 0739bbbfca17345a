"""One host's rows of a block, found on its encoded address columns (blocks.py) without decoding them.

Decoding an address column builds 16 bytes a row from two 64-bit halves (about 0.3 ms per 32,768-row
column) only to compare each with one address. Here each half is compared where it is stored: a
CONST half matches all rows or none; a FOR half holds value - base in 1 to 8 bytes, so the host's
offset is compared byte plane by byte plane (the byte-shuffled layout) and a host outside the
block's range matches nothing; a DICT half looks the host up in its dictionary and compares the
narrow indexes. A DELTA half (never chosen for addresses by the codec, but legal) is left to the
decoder: ``host_rows`` then says None.
"""
from __future__ import annotations

import numpy as np

from .blocks import CONST, DICT, FLAG_SHUFFLE, FOR, _MASK64, _column_head, _decompress, _HEAD, _PART


def host_rows(blobs: dict[str, bytes], name: str, rows: int, host: bytes) -> np.ndarray | None:
    """Rows of the block's V16 column ``name`` equal to the 16-byte ``host``, as a bool mask; None
    when the column's encoding is not one this module reads (decode it instead)."""
    head = _column_head(blobs, name)
    if head is None:
        return None
    blob, codec, flags, heads = head
    if len(heads) != 2 or any(h[0] not in (CONST, FOR, DICT) for h in heads):
        return None
    want = int.from_bytes(bytes(host)[:8], "big"), int.from_bytes(bytes(host)[8:], "big")
    payload = None
    if any(h[0] != CONST for h in heads):
        payload = _decompress(codec, memoryview(blob)[_HEAD.size + len(heads) * _PART.size:])
    shuffle = bool(flags & FLAG_SHUFFLE)
    mask: np.ndarray | bool = True
    pos = 0
    for part, value in zip(heads, want):
        got, pos = _part_equals(part, payload, pos, rows, shuffle, value)
        if got is False:
            return np.zeros(rows, bool)
        if got is not True:
            mask = got if mask is True else mask & got
    return np.ones(rows, bool) if mask is True else mask


def _part_equals(head: tuple, payload, pos: int, rows: int, shuffle: bool, value: int):
    """(rows of the part equal to ``value``: a bool mask, or True / False for all / none; the
    position after the part)."""
    mode, width, vwidth, base, k = head
    offset = (value - base) & _MASK64
    if mode == CONST:
        return offset == 0, pos
    if mode == FOR:
        end = pos + rows * width
        if offset >> (8 * width):
            return False, end
        return _narrow_equals(payload, pos, rows, width, shuffle, offset), end
    # DICT: the sorted distinct offsets, then a narrow index per row
    values = _narrow_values(payload, pos, k, vwidth, shuffle)
    pos += k * vwidth
    end = pos + rows * width
    if offset >> (8 * vwidth):
        return False, end
    at = int(np.searchsorted(values, offset))
    if at == k or int(values[at]) != offset:
        return False, end
    return _narrow_equals(payload, pos, rows, width, shuffle, at), end


def _narrow_equals(payload, pos: int, count: int, width: int, shuffle: bool, value: int) -> np.ndarray:
    """Rows of ``count`` little-endian ``width``-byte values at ``pos`` equal to ``value``."""
    raw = np.frombuffer(payload, np.uint8, count * width, pos)
    if width == 1:
        return raw == value
    if not shuffle:
        return raw.view(f"<u{width}") == value
    planes = raw.reshape(width, count)  # byte i of every value together
    mask = planes[0] == (value & 0xFF)
    for i in range(1, width):
        mask &= planes[i] == ((value >> (8 * i)) & 0xFF)
    return mask


def _narrow_values(payload, pos: int, count: int, width: int, shuffle: bool) -> np.ndarray:
    raw = np.frombuffer(payload, np.uint8, count * width, pos)
    if shuffle and width > 1:
        raw = raw.reshape(width, count).T.copy()
    return raw.view(f"<u{width}").reshape(count).astype(np.uint64)
