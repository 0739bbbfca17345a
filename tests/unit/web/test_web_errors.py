"""An unexpected exception in a page: the 500 page in words, logged once (Starlette's own error
middleware used to re-raise it after our handler, so the server logged it a second time)."""
import logging

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from flowlens_web import metrics
from flowlens_web.app import TimingMiddleware


def boom(request):
    raise RuntimeError("page bug")


def test_unexpected_exception_is_one_500_and_one_log_line(caplog):
    histogram = metrics.LatencyHistogram()
    app = Starlette(routes=[Route("/", boom)])
    app.add_middleware(TimingMiddleware, histogram=histogram,
                       error_page=lambda: PlainTextResponse("Something went wrong", status_code=500))
    with caplog.at_level(logging.DEBUG), TestClient(app, raise_server_exceptions=True) as client:
        resp = client.get("/")  # raise_server_exceptions: a re-raised exception would fail the test here
    assert resp.status_code == 500 and resp.text == "Something went wrong"
    failures = [r for r in caplog.records if r.exc_info]
    assert len(failures) == 1 and failures[0].getMessage() == "page failed"
    assert str(failures[0].exc_info[1]) == "page bug"
    assert histogram.snapshot()[("/", "5xx")][-1] == 1
