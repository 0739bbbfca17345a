"""The rollups' dimensions and their keys: which dimensions are kept at which steps, each
dimension's key as uint64 words whose lexicographic order is the key's byte order (groupby.key_words):
an address is its two big-endian halves, an interface is (exporter high, exporter low, ifIndex); and
the display text of a key. Pure code, no I/O; hists.py re-exports every name.
"""
from __future__ import annotations

import numpy as np

from flowmodel import addr

STEPS = (60_000, 300_000, 3_600_000)  # 1 min, 5 min, 1 h
_S5_H = (300_000, 3_600_000)
# dimension -> the steps (ms, finest first) it is kept at
DIMS: dict[str, tuple[int, ...]] = {
    "exporter": STEPS,
    "dst_prefix": (60_000, 3_600_000),
    "src": _S5_H,
    "dst": _S5_H,
    "self": _S5_H,        # flows with src_addr == dst_addr, by that address: addr = src + dst - self exactly
    "src_port": _S5_H,
    "dst_port": _S5_H,
    "port": _S5_H,        # min(src_port, dst_port): the service side of most flows
    "protocol": _S5_H,
    # 5 min too, so explore charts a day of them from rollups: 0.47 B/flow more on bench.flowgen's
    # site (nearly all AS; interfaces and tos 0.02), against 24 B/flow on disk in all
    "in_if": _S5_H,   # (exporter, input ifIndex)
    "out_if": _S5_H,  # (exporter, output ifIndex)
    "src_as": _S5_H,
    "dst_as": _S5_H,
    "tos": _S5_H,
    # pairs a Sankey draws over days (explore/top by=in_if,out_if and src_as,dst_as): few keys each,
    # so a day of them is read from rollups instead of summed from tens of millions of flows (30 M
    # flows of bench.history's site: 720 -> 730 MB, 0.33 B/flow, nearly all the 5-minute if_pair;
    # its Sankey pages over 24-72 h 0.46-3.1 s -> 110-220 ms p95)
    "if_pair": _S5_H,  # (exporter, input ifIndex, output ifIndex)
    "as_pair": _S5_H,  # (src_as, dst_as)
}
KEY_WIDTH = {"exporter": 2, "dst_prefix": 2, "src": 2, "dst": 2, "self": 2, "in_if": 3, "out_if": 3,
             "if_pair": 4, "as_pair": 2}  # else 1
OTHER_WORD = np.uint64((1 << 64) - 1)  # every word of an "other" row's key
_U64 = np.uint64


def address_words(col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A V16 address column as its big-endian (high, low) uint64 halves."""
    u = np.ascontiguousarray(col).view(">u8").reshape(-1, 2)
    return u[:, 0].astype(_U64), u[:, 1].astype(_U64)


def _top_bits(keep: int) -> np.uint64:
    keep = max(0, min(64, keep))
    return _U64(((1 << 64) - 1) ^ ((1 << (64 - keep)) - 1))


def prefix_words(col: np.ndarray, prefix_v4: int, prefix_v6: int) -> tuple[np.ndarray, np.ndarray]:
    """(high, low) words of each address with its host bits cleared (IPv4-mapped to prefix_v4, IPv6 to
    prefix_v6), as addr.mask_column does on sixteen bytes."""
    hi, lo = address_words(col)
    v4 = (hi == 0) & ((lo >> _U64(32)) == _U64(0xFFFF))
    return (np.where(v4, hi, hi & _top_bits(prefix_v6)),
            np.where(v4, lo & _top_bits(32 + prefix_v4), lo & _top_bits(prefix_v6 - 64)))


def dim_key_words(dim: str, cols: dict, prefix_v4: int, prefix_v6: int) -> tuple[np.ndarray | None, list[np.ndarray]]:
    """(row mask or None for every row, uint64 key words most significant first) of a dimension."""
    if dim in ("src", "dst", "exporter"):
        return None, list(address_words(cols[{"src": "src_addr", "dst": "dst_addr"}.get(dim, dim)]))
    if dim == "dst_prefix":
        return None, list(prefix_words(cols["dst_addr"], prefix_v4, prefix_v6))
    if dim == "self":
        src = np.ascontiguousarray(cols["src_addr"]).view(">u8").reshape(-1, 2)
        dst = np.ascontiguousarray(cols["dst_addr"]).view(">u8").reshape(-1, 2)
        mask = (src[:, 0] == dst[:, 0]) & (src[:, 1] == dst[:, 1])
        return mask, list(address_words(cols["src_addr"]))
    if dim in ("in_if", "out_if"):
        return None, [*address_words(cols["exporter"]), cols["input_if" if dim == "in_if" else "output_if"].astype(_U64)]
    if dim == "if_pair":
        return None, [*address_words(cols["exporter"]), cols["input_if"].astype(_U64), cols["output_if"].astype(_U64)]
    if dim == "as_pair":
        return None, [cols["src_as"].astype(_U64), cols["dst_as"].astype(_U64)]
    if dim == "port":
        return None, [np.minimum(cols["src_port"], cols["dst_port"]).astype(_U64)]
    if dim in ("src_port", "dst_port", "protocol", "src_as", "dst_as", "tos"):
        return None, [cols[dim].astype(_U64)]
    raise ValueError(f"unknown hist dimension {dim!r} (one of {', '.join(DIMS)})")


def key_text(dim: str, words: np.ndarray, other: np.ndarray | None = None,
             prefix_v4: int = 24, prefix_v6: int = 64) -> list[str]:
    """Display text of each key row (an (n, w) uint64 array): addresses as text, dst_prefix as
    'a.b.c.0/24', interfaces as 'exporter ifIndex', pairs as 'exporter in -> out' and 'a -> b', numbers as decimals, an "other" row (``other``
    mask, or every word all ones when not given) as 'other'. Edge use only (pages, CLI lines)."""
    if len(words) == 0:
        return []   # reshape(0, -1) cannot size an empty array
    words = np.asarray(words, dtype=_U64).reshape(len(words), -1)
    if other is None:
        other = (words == OTHER_WORD).all(axis=1)
    out = []
    if dim == "as_pair":
        return ["other" if o else f"{a} -> {b}" for o, (a, b) in zip(other.tolist(), words[:, :2].tolist())]
    if dim in ("src", "dst", "self", "exporter", "dst_prefix", "in_if", "out_if", "if_pair"):
        raw = np.ascontiguousarray(words[:, :2]).astype(">u8").view("V16").ravel().tolist()
        for i, a in enumerate(raw):
            if other[i]:
                out.append("other")
            elif dim == "dst_prefix":
                out.append(addr.prefix_text(a, prefix_v4, prefix_v6))
            elif dim in ("in_if", "out_if"):
                out.append(f"{addr.to_text(a)} {int(words[i, 2])}")
            elif dim == "if_pair":
                out.append(f"{addr.to_text(a)} {int(words[i, 2])} -> {int(words[i, 3])}")
            else:
                out.append(addr.to_text(a))
        return out
    return ["other" if o else str(v) for o, v in zip(other.tolist(), words[:, 0].tolist())]
