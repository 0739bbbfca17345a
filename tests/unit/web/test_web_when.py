"""parse_when's range (review 5, finding 4): a time outside 1970..2^62 ms is a QueryError in words,
never an int that overflows later (msgpack, SQLite, datetime) and turns into a 500."""
import pytest

from flowmodel.protocol import WHEN_MAX_MS, QueryError, parse_when

NOW = 1_800_000_000_000


@pytest.mark.parametrize("value,words", [
    ("99999999999999999999", "too far in the future"), ("999999999999d", "before 1970"),
    ("-9223372036854775809", "before 1970"), ("-1", "before 1970"), (-1, "before 1970"),
    (2**64, "too far in the future"), (float("inf"), "is not a time"), (float("nan"), "is not a time"),
    ("9" * 400 + "w", "before 1970"), ("9" * 400, "too many digits"), ("0001-01-01T00:00", "before 1970"),
    ("57d", None), ("0", None), (WHEN_MAX_MS, None),
])
def test_parse_when_range(value, words):
    if words is None:
        assert 0 <= parse_when(value, NOW, name="since") <= WHEN_MAX_MS
        return
    with pytest.raises(QueryError, match=words) as e:
        parse_when(value, NOW, name="since")
    assert str(e.value).startswith("since ")
