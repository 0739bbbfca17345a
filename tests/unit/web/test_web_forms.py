"""The pages' urlencoded forms (loginpages.read_form): too many fields or bytes are a FormTooLarge
saying which (413 on the pages), never parse_qs's own ValueError (that was a 500)."""
import anyio
import pytest
from starlette.requests import Request

from flowlens_web.loginpages import MAX_FORM_BYTES, MAX_FORM_FIELDS, FormTooLarge, read_form


def request_with(body: bytes) -> Request:
    chunks = [body[i:i + 1000] for i in range(0, len(body), 1000)] or [b""]

    async def receive():
        return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}
    return Request({"type": "http", "method": "POST", "path": "/silences", "headers": []}, receive)


def read(body: bytes) -> dict:
    return anyio.run(read_form, request_with(body))


def test_a_form_is_read_first_value_each():
    assert read(b"key=a&key=b&comment=%ff%00&empty=") == {"key": "a", "comment": "\ufffd\x00", "empty": ""}


@pytest.mark.parametrize("body, words", [
    (b"&".join(b"k%d=1" % i for i in range(MAX_FORM_FIELDS + 1)), f"more than {MAX_FORM_FIELDS} fields"),
    (b"comment=" + b"x" * MAX_FORM_BYTES, f"larger than {MAX_FORM_BYTES} bytes"),
])
def test_too_many_fields_or_bytes_say_which(body, words):
    with pytest.raises(FormTooLarge, match=words):
        read(body)
