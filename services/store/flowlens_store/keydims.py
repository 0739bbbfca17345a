"""The dimensions of top and explore as uint64 key words: which columns a key reads, its words (the
rollups' key order, groupby.key_words), the rollup dimension that holds it, and, at the edge, a
key's display text and the flow filter that selects exactly its flows (a drill-down link).

Pure code: numpy columns in, words out. A key is an (n, w) uint64 array, most significant word
first: an address is its two big-endian halves, a pair four words, an interface (exporter high,
exporter low, ifIndex), the rest one word.
"""
from __future__ import annotations

import numpy as np

from flowmodel import addr, geo
from flowmodel.protocol import TOP_BY, QueryError, protocol_name

from . import planner as P

from .hists import DIMS, address_words, dim_key_words

_U64 = np.uint64

KEY_COLUMNS = {"src": ("src_addr",), "dst": ("dst_addr",), "pair": ("src_addr", "dst_addr"),
               "port": ("src_port", "dst_port"), "src_port": ("src_port",), "dst_port": ("dst_port",),
               "protocol": ("protocol",), "exporter": ("exporter",), "in_if": ("exporter", "input_if"),
               "out_if": ("exporter", "output_if"), "src_as": ("src_as",), "dst_as": ("dst_as",),
               "dscp": ("tos",), "src_country": ("src_country",), "dst_country": ("dst_country",)}
KEY_WIDTH = {"src": 2, "dst": 2, "exporter": 2, "pair": 4, "in_if": 3, "out_if": 3}  # else 1
# the rollup dimension each key is kept in (dscp: by tos, four tos values a DSCP); pair has none
HIST_DIM = {by: by for by in TOP_BY if by in DIMS} | {"dscp": "tos"}
# pairs of dimensions kept in a pair rollup (either order): by's words are the rollup words at these
# indexes (an interface pair's rollup key is (exporter, in, out), by's is both interfaces' whole keys)
PAIR_WORDS = {"in_if,out_if": ("if_pair", (0, 1, 2, 0, 1, 3)), "out_if,in_if": ("if_pair", (0, 1, 3, 0, 1, 2)),
              "src_as,dst_as": ("as_pair", (0, 1)), "dst_as,src_as": ("as_pair", (1, 0))}
# and the rollup words as by's words at these indexes
_HIST_OF_PAIR = {"in_if,out_if": (0, 1, 2, 5), "out_if,in_if": (0, 1, 5, 2), "src_as,dst_as": (0, 1),
                 "dst_as,src_as": (1, 0)}
HIST_DIM |= {by: dim for by, (dim, _at) in PAIR_WORDS.items()}
COUNTRY_KEYS = ("src_country", "dst_country")  # packed codes (flowmodel.geo), shown as code or label

assert set(KEY_COLUMNS) == set(TOP_BY), "every top dimension needs its key columns"

# ``by`` "A,B": the (A, B) pairs of two different dimensions (a Sankey's bands: in_if,out_if), their
# key A's words then B's; those of PAIR_WORDS come from the pair rollups, the others are summed from
# raw flows like "pair"
PAIR_SEP = ","
PAIRABLE = tuple(b for b in TOP_BY if b != "pair")


def by_arg(args: dict, default: str | None) -> str:
    """top's and explore's ``by``: one of TOP_BY, or two different PAIRABLE ones joined by a comma."""
    v = args.get("by", default)
    if isinstance(v, str) and PAIR_SEP in v:
        parts = v.split(PAIR_SEP)
        if len(parts) != 2 or parts[0] == parts[1] or any(p not in PAIRABLE for p in parts):
            raise QueryError(f"by {v[:60]!r} is not two different dimensions joined by a comma (like in_if,out_if)"
                             f" of {', '.join(PAIRABLE)}")
        return v
    return P.choice_arg(args, "by", TOP_BY, default)


def halves(by: str) -> tuple[str, ...]:
    """("A", "B") of a pair of dimensions, (by,) of one."""
    return tuple(by.split(PAIR_SEP))


def columns(by: str) -> tuple[str, ...]:
    """The flow columns a key of ``by`` reads (a pair of dimensions: both's, each once)."""
    return tuple(dict.fromkeys(c for half in halves(by) for c in KEY_COLUMNS[half]))


def width(by: str) -> int:
    return sum(KEY_WIDTH.get(half, 1) for half in halves(by))


def key_words(by: str, cols) -> list[np.ndarray]:
    """The key words (uint64 columns, most significant first) of every row of ``cols``."""
    if PAIR_SEP in by:
        return [w for half in halves(by) for w in key_words(half, cols)]
    if by == "pair":
        return [*address_words(cols["src_addr"]), *address_words(cols["dst_addr"])]
    if by == "dscp":
        return [(np.asarray(cols["tos"]) >> 2).astype(_U64)]
    if by in COUNTRY_KEYS:  # no rollups keep countries: raw rows only
        return [np.asarray(cols[by]).astype(_U64)]
    return list(dim_key_words(by, cols, 24, 64)[1])


def from_hist_words(by: str, k: np.ndarray) -> np.ndarray:
    """Rollup key words (n, w) of HIST_DIM[by] as this dimension's words (dscp: tos >> 2; a pair:
    PAIR_WORDS)."""
    if by in PAIR_WORDS:
        return k[:, list(PAIR_WORDS[by][1])]
    return k >> _U64(2) if by == "dscp" else k


def to_hist_words(by: str, k: np.ndarray) -> np.ndarray:
    """This dimension's key words (n, w) as those of its rollup (not dscp: many tos a DSCP)."""
    if by in PAIR_WORDS:
        return np.asarray(k, _U64).reshape(len(k), width(by))[:, list(_HIST_OF_PAIR[by])]
    return k


def _addresses(k: np.ndarray, first: int) -> list[str]:
    raw = np.ascontiguousarray(k[:, first:first + 2]).astype(">u8").view("V16").ravel().tolist()
    return [addr.to_text(a) for a in raw]


def texts(by: str, k: np.ndarray) -> list[str]:
    """Display text of each key row: addresses as text, a pair 'a -> b', an interface
    'exporter if N', a protocol by name, an AS 'AS64500', numbers in decimal; a pair of dimensions
    'a -> b'."""
    k = np.asarray(k, _U64).reshape(len(k), width(by))
    if PAIR_SEP in by:
        a, b = halves(by)
        return [f"{x} -> {y}" for x, y in zip(texts(a, k[:, :width(a)]), texts(b, k[:, width(a):]))]
    if by in ("src", "dst", "exporter"):
        return _addresses(k, 0)
    if by == "pair":
        return [f"{a} -> {b}" for a, b in zip(_addresses(k, 0), _addresses(k, 2))]
    if by in ("in_if", "out_if"):
        return [f"{e} if {n}" for e, n in zip(_addresses(k, 0), k[:, 2].tolist())]
    if by == "protocol":
        return [protocol_name(v) for v in k[:, 0].tolist()]
    if by in ("src_as", "dst_as"):
        return [f"AS{v}" for v in k[:, 0].tolist()]
    if by in COUNTRY_KEYS:
        return [geo.country_text(v) or "unknown" for v in k[:, 0].tolist()]
    return [str(v) for v in k[:, 0].tolist()]


def filters(by: str, k: np.ndarray) -> list[dict]:
    """The flow filter arguments of each key row, as a flows/top/series/explore request takes them.
    Exact for every dimension but port, whose filter (either side) also takes flows whose other
    port is this one and smaller (the key is the smaller of the two ports). A pair of dimensions:
    both filters in one (an interface pair's exporter is the same on both sides)."""
    k = np.asarray(k, _U64).reshape(len(k), width(by))
    if PAIR_SEP in by:
        a, b = halves(by)
        return [{**x, **y} for x, y in zip(filters(a, k[:, :width(a)]), filters(b, k[:, width(a):]))]
    if by in ("src", "dst", "exporter"):
        return [{by: a} for a in _addresses(k, 0)]
    if by == "pair":
        return [{"src": a, "dst": b} for a, b in zip(_addresses(k, 0), _addresses(k, 2))]
    if by in ("in_if", "out_if"):
        name = "input_if" if by == "in_if" else "output_if"
        return [{"exporter": e, name: n} for e, n in zip(_addresses(k, 0), k[:, 2].tolist())]
    if by in COUNTRY_KEYS:
        return [{by: geo.country_code(v) or "unknown"} for v in k[:, 0].tolist()]
    return [{by: v} for v in k[:, 0].tolist()]
