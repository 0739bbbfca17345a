"""The advisories page with acknowledgements and silences: an acknowledged advisory says by whom and
has no form; an open one has its form only for whoever may operate; silences are listed with what
they match, who set them, until when and why; hostile text stays text."""
from lxml import etree

from flowlens_web import views
from flowlens_web.render import Renderer

NOW = 1_764_000_600_000
HOSTILE = "<script>alert('x')</script> & \"quoted\" ]]>"
NS = {"h": "http://www.w3.org/1999/xhtml"}


def render(rows, silences, may_operate):
    text = Renderer().page("advisories.xhtml", title="Advisories", nav="advisories", severities=("CRITICAL",),
                           states=("active",), form={"severity": "", "state": "active", "resolved": False}, rows=rows,
                           error=None, silences=silences, may_operate=may_operate, refresh=0, version="t",
                           account=None, banner=None)
    return etree.fromstring(text.encode())


def test_acknowledged_silenced_and_open_advisories():
    advs = [{"key": "scan:a", "severity": "CRITICAL", "state": "raised", "first_seen": NOW - 1000, "last_seen": NOW,
             "title": "a", "filter": {}},
            {"key": "scan:b", "severity": "CRITICAL", "state": "raised", "first_seen": NOW - 5000, "last_seen": NOW - 1,
             "title": "b", "filter": {}}]
    acks = {"scan:a": {"kind": "ack", "id": "scan:a", "episode": NOW - 1000, "by": "ann", "comment": HOSTILE,
                       "created_at": NOW - 100},
            "scan:b": {"kind": "ack", "id": "scan:b", "episode": NOW - 9999, "by": "old"}}  # an earlier episode
    rows = views.advisory_rows(advs, NOW, acks)
    assert rows[0]["ack"]["by"] == "ann" and rows[1]["ack"] is None
    silences = views.silence_rows([{"kind": "silence", "id": "s1", "address": "10.0.5.20", "by": "bob",
                                    "comment": HOSTILE, "created_at": NOW, "expires_at": NOW + 3_600_000}], NOW)
    root = render(rows, silences, True)
    acked = root.xpath("//h:p[@class='ack']", namespaces=NS)
    assert len(acked) == 1 and "ann" in "".join(acked[0].itertext()) and HOSTILE in "".join(acked[0].itertext())
    forms = root.xpath("//h:form[@action='/advisories/ack']", namespaces=NS)
    assert len(forms) == 1 and forms[0].xpath("string(h:input[@name='key']/@value)", namespaces=NS) == "scan:b"
    cells = root.xpath("//h:tr[@id='silence-s1']/h:td", namespaces=NS)
    assert [c.xpath("string(.)") for c in cells[:4]] == ["address 10.0.5.20", silences[0]["until"], "bob", HOSTILE]
    assert silences[0]["until"] == "17:10:00" and silences[0]["until_exact"].startswith("2025-11-24T17:10:00")
    assert root.xpath("//h:form[@action='/silences']", namespaces=NS)
    viewer = render(rows, silences, False)
    assert not viewer.xpath("//h:form[@method='post']", namespaces=NS)  # a viewer sees them, but no forms
    assert viewer.xpath("//h:tr[@id='silence-s1']", namespaces=NS)
