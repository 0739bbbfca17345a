"""A reply over query.max_reply_bytes goes out as an error reply in words, and is counted."""
import msgpack

from flowmodel.config import load_config
from flowlens_store.service import StoreService


def test_a_reply_over_the_bound_becomes_an_error_reply():
    svc = StoreService(load_config(overrides={"query.max_reply_bytes": "1MiB"}))
    small = msgpack.unpackb(svc.queries.pack({"ok": True, "rows": [1, 2, 3]}), raw=False)
    assert small == {"ok": True, "rows": [1, 2, 3]} and svc.queries.replies_too_big == 0
    raw = svc.queries.pack({"ok": True, "columns": {"bytes": b"\0" * (2 << 20)}})
    reply = msgpack.unpackb(raw, raw=False)
    assert len(raw) < 1024 and reply["ok"] is False
    assert "query.max_reply_bytes" in reply["error"] and "2,097," in reply["error"]
    assert svc.queries.replies_too_big == 1
