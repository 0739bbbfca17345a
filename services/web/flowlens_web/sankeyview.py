"""The Explore page's Sankey of any two dimensions (pure): the store's top of a pair of dimensions
(the top op with ``by`` "A,B": each row one (A key, B key) pair, its sums and both keys' filter)
in, the diagram (sankey.py) with named nodes and drill-down links out.

A band is one pair, as thick as the view's metric summed over the range; a left node is an A key,
as tall as its bands, linking to the view narrowed to it by B (where it goes); a right node the
reverse; a band links to the view narrowed to both keys.
"""
from __future__ import annotations

from typing import Any, Mapping

from . import explore as ex
from . import formatters as fmt
from .namebook import NameBook
from .sankey import Pair, Sankey, sankey
from .stackchart import colour

PAIR_SEP = ","  # the store's pair of dimensions: by "A,B", its keys' text "a -> b"
KEY_SEP = " -> "
# the filter keys a dimension's key sets in a pair's filter (the rest are the other side's)
FILTER_KEYS = {"in_if": ("exporter", "input_if"), "out_if": ("exporter", "output_if")}
UNITS = {"bytes": "bytes", "packets": "packets", "flows": "flows"}
# the pairs the store keeps rollups of (its keydims.PAIR_WORDS): a Sankey of days of them is fast;
# every other pair is summed from the flows, seconds over a day (or refused at its time limit)
ROLLUP_PAIRS = (("in_if", "out_if"), ("out_if", "in_if"), ("src_as", "dst_as"), ("dst_as", "src_as"))
DEFAULT_PAIR = ("in_if", "out_if")  # what the picker shows until the URL says otherwise
PICKER_NOTE = ("Input to output interface and source to destination AS (either way round) come from the "
               "store's rollups: fast over any range. Any other pair is summed from the flows: slow over "
               "long ranges (the store gives up past its query time limit).")
CHAR_WIDTH = 6.5   # viewBox units per label character (the labels' 11px sans, explore.css), a little over
LABEL_ROOM = (120, 290)  # least and most room beside the diagram for a side's labels (its width is 900)


def store_args(q: ex.ExploreQuery) -> dict:
    """The store's top request for the Sankey of ``q`` (q.sankey set): the top ``q.top`` pairs by the
    view's metric, scaled like the chart, under the view's filters and range."""
    a, b = q.sankey
    return {"by": f"{a}{PAIR_SEP}{b}", "metric": ex.METRICS[q.metric][0], "limit": q.top, "scaled": True,
            "since": q.range.since_ms, "until": q.range.until_ms, **q.filters}


def picker_choice(form: Mapping[str, str], asked: bool) -> tuple[str, str]:
    """The (from, to) the form's Sankey picker shows: the URL's when it names either (empty: none),
    else DEFAULT_PAIR, a pair the rollups answer (drawn once the form is sent)."""
    if asked:
        return str(form.get("sankey_from") or ""), str(form.get("sankey_to") or "")
    return DEFAULT_PAIR


def from_rollups(pair: tuple[str, str]) -> bool:
    return tuple(pair) in ROLLUP_PAIRS


def side_filter(by: str, flt: Mapping[str, Any]) -> dict[str, Any]:
    return {k: flt[k] for k in FILTER_KEYS.get(by, (by,)) if k in flt}


def amount(metric: str, value: float) -> str:
    """'1.50 MB (1,572,864 bytes)': the sum a band stands for, rounded and exact."""
    rounded = fmt.human_bytes(value) if metric == "bytes" else fmt.human_count(value)
    return f"{rounded} ({fmt.exact(value)} {UNITS[metric]})"


def caption(q: ex.ExploreQuery) -> str:
    a, b = q.sankey
    return f"{ex.DIMENSIONS[a]} to {ex.DIMENSIONS[b].lower()}"


def pair_sankey(q: ex.ExploreQuery, reply: Mapping, names: NameBook) -> Sankey:
    """The diagram of a top reply of the pair ``q.sankey`` (store_args)."""
    a, b = q.sankey
    metric = ex.METRICS[q.metric][0]
    base = q.params()
    rows = [r for r in reply.get("rows") or [] if isinstance(r, Mapping)]
    filters = [r["filter"] if isinstance(r.get("filter"), Mapping) else {} for r in rows]
    # interfaces of one exporter need not say its name on every node
    with_exporter = len({str(f.get("exporter")) for f in filters}) > 1
    pairs, left, right = [], {}, {}
    for i, (row, flt) in enumerate(zip(rows, filters)):
        key_a, _sep, key_b = str(row.get("key", "")).partition(KEY_SEP)
        fa, fb = side_filter(a, flt), side_filter(b, flt)
        la = ex.series_label(a, key_a, fa, names, with_exporter)
        lb = ex.series_label(b, key_b, fb, names, with_exporter)
        left.setdefault(la, fa)
        right.setdefault(lb, fb)
        value = float(row.get(metric) or 0)
        href = ex.url("/explore", {**base, **{k: str(v) for k, v in flt.items()}}) if flt else None
        pairs.append(Pair(la, lb, value, colour(i), href, f"{la} \u2192 {lb}: {amount(metric, value)}"))
    longest = max((len(label) for label in [*left, *right]), default=0)
    d = sankey(pairs, label_room=int(min(max(longest * CHAR_WIDTH + 12, LABEL_ROOM[0]), LABEL_ROOM[1])))
    plain = {k: v for k, v in base.items() if k != "by"}
    for n in d.sources:
        n.href = ex.url("/explore", {**plain, "by": b, **{k: str(v) for k, v in left[n.label].items()}})
    for n in d.targets:
        n.href = ex.url("/explore", {**plain, "by": a, **{k: str(v) for k, v in right[n.label].items()}})
    return d
