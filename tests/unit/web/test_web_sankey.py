"""The Sankey diagram: each node as tall as its traffic, the links leaving a source fill its box
and so do those reaching a destination; an Explore pair view draws it as well-formed SVG."""
from __future__ import annotations

import pytest
from lxml import etree

from flowlens_web import explore as ex
from flowlens_web import render
from flowlens_web.namebook import NameBook
from flowlens_web.sankey import GAP, Pair, sankey

PAIRS = [Pair("10.0.0.1", "10.1.0.1", 600, "#111"), Pair("10.0.0.1", "10.1.0.2", 200, "#222"),
         Pair("10.0.0.2", "10.1.0.1", 150, "#333"), Pair("10.0.0.3", "10.1.0.3", 50, "#444"),
         Pair("10.0.0.4", "10.1.0.4", 0, "#555")]


def test_links_fill_their_nodes():
    d = sankey(PAIRS, height=400)
    assert [n.label for n in d.sources] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]  # biggest first; zero left out
    assert [n.label for n in d.targets] == ["10.1.0.1", "10.1.0.2", "10.1.0.3"]
    scale = d.sources[0].height / 800
    for nodes, side in ((d.sources, "source"), (d.targets, "target")):
        for n in nodes:
            links = [l for l in d.links if getattr(l, side) == n.label]
            assert sum(l.thickness for l in links) == pytest.approx(n.height)
            assert n.height == pytest.approx(n.value * scale)
    # a column's nodes and gaps fit the height
    col = d.sources
    assert col[-1].y + col[-1].height == pytest.approx(8 + 1000 * scale + GAP * 2)
    assert col[-1].y + col[-1].height <= 400 - 8 + 1e-6
    assert len(d.links) == 4 and all(l.path.startswith("M") and l.path.endswith("Z") for l in d.links)


def test_nothing_to_draw():
    assert sankey([]).empty and sankey([Pair("a", "b", 0, "#000")]).empty


def test_pair_view_draws_the_sankey():
    now = 1_764_950_400_000
    q = ex.parse_query({"by": "pair", "range": "1h"}, now)
    times = [now - 120_000, now - 60_000]
    reply = {"step_ms": 60_000, "times": times, "since": now - 3_600_000, "until": now,
             "series": [{"key": "10.0.0.1 → 10.1.0.1", "filter": {"src": "10.0.0.1", "dst": "10.1.0.1"}, "values": [5, 5]},
                        {"key": "10.0.0.2 → 10.1.0.1", "filter": {"src": "10.0.0.2", "dst": "10.1.0.1"}, "values": [1, 2]}],
             "other": {"values": [0, 0]}}
    view = ex.explore_view(q, reply, NameBook())
    d = view["sankey"]
    assert [n.label for n in d.sources] == ["10.0.0.1", "10.0.0.2"] and [n.label for n in d.targets] == ["10.1.0.1"]
    assert "by=dst" in d.sources[0].href and "src=10.0.0.1" in d.sources[0].href
    html = render.environment().get_template("_sankey.xhtml").render(d=d)
    root = etree.fromstring(f'<div xmlns="http://www.w3.org/1999/xhtml">{html}</div>'.encode())
    ns = {"svg": "http://www.w3.org/2000/svg"}
    assert len(root.xpath("//svg:path[@class='link']", namespaces=ns)) == 2
    assert root.xpath("//svg:text[@class='nlabel']/text()", namespaces=ns) == ["10.0.0.1", "10.0.0.2", "10.1.0.1"]
    assert ex.explore_view(ex.parse_query({"by": "src", "range": "1h"}, now), reply, NameBook())["sankey"] is None


# ------------------------------------------------------------------ any two dimensions (sankeyview.py)

NOW = 1_764_950_400_000


@pytest.mark.parametrize("params,words", [
    ({"sankey_from": "in_if"}, "sankey_to is missing"),
    ({"sankey_to": "out_if"}, "sankey_from is missing"),
    ({"sankey_from": "bogus", "sankey_to": "out_if"}, "sankey_from 'bogus' is not a dimension"),
    ({"sankey_from": "in_if", "sankey_to": "pair"}, "sankey_to 'pair' is not a dimension"),
    ({"sankey_from": "in_if", "sankey_to": "in_if"}, "sankey_to 'in_if' is the same as sankey_from"),
])
def test_a_bad_sankey_pair_names_its_argument(params, words):
    with pytest.raises(ex.FormError, match=words):
        ex.parse_query({"range": "1h", **params}, NOW)


def test_any_two_dimensions_draw_from_the_stores_top_of_their_pairs():
    from flowlens_web import sankeyview as sv

    q = ex.parse_query({"by": "src", "range": "1h", "top": "5", "metric": "pps", "sankey_from": "in_if",
                        "sankey_to": "out_if", "protocol": "udp"}, NOW)
    assert q.sankey == ("in_if", "out_if")
    args = sv.store_args(q)
    assert args == {"by": "in_if,out_if", "metric": "packets", "limit": 5, "scaled": True, "since": NOW - 3_600_000,
                    "until": NOW, "protocol": 17}
    row = lambda i, o, n: {"key": f"192.0.2.1 if {i} -> 192.0.2.1 if {o}", "bytes": 10 * n, "packets": n, "flows": 1,
                           "filter": {"exporter": "192.0.2.1", "input_if": i, "output_if": o}}
    reply = {"ok": True, "rows": [row(1, 5, 700), row(2, 5, 200), row(1, 6, 100)]}
    names = NameBook.from_reply({"interfaces": [{"exporter": "192.0.2.1", "ifindex": 1, "name": "Gi0/1"}]})
    d = sv.pair_sankey(q, reply, names)
    left, right = [n.label for n in d.sources], [n.label for n in d.targets]
    assert len(left) == 2 and "Gi0/1" in left[0] and len(right) == 2
    assert [l.value for l in d.links] == [700, 200, 100]  # packets: the view's metric
    assert d.links[0].title.endswith(": 700 (700 packets)")
    assert "input_if=1" in d.links[0].href and "output_if=5" in d.links[0].href and "sankey_from=in_if" in d.links[0].href
    assert "by=out_if" in d.sources[0].href and "input_if=1" in d.sources[0].href and "output_if" not in d.sources[0].href
    assert "by=in_if" in d.targets[0].href and "output_if=5" in d.targets[0].href
    html = render.environment().get_template("_sankey.xhtml").render(d=d, caption=sv.caption(q))
    root = etree.fromstring(f'<div xmlns="http://www.w3.org/1999/xhtml">{html}</div>'.encode())
    ns = {"svg": "http://www.w3.org/2000/svg"}
    assert len(root.xpath("//svg:path[@class='link']", namespaces=ns)) == 3
    assert root.xpath("//svg:title/text()", namespaces=ns)[0] == "Input interface to output interface"


def test_the_picker_suggests_a_pair_the_store_keeps_rollups_of():
    from flowlens_store import keydims
    from flowlens_web import sankeyview as sv

    # the web cannot import the store: its list of rollup pairs is checked against the store's here
    assert {f"{a},{b}" for a, b in sv.ROLLUP_PAIRS} == set(keydims.PAIR_WORDS)
    assert sv.from_rollups(sv.DEFAULT_PAIR) and not sv.from_rollups(("src", "dst_port"))
    assert sv.picker_choice({}, asked=False) == ("in_if", "out_if")
    assert sv.picker_choice({"sankey_from": "", "sankey_to": ""}, asked=True) == ("", "")
    assert sv.picker_choice({"sankey_from": "exporter", "sankey_to": "protocol"}, asked=True) == ("exporter", "protocol")
