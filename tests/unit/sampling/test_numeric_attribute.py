import pytest

from processors.sampling import ConfigError, decide
from tests.helpers.spans import make_trace, policies

TAGGED = make_trace([{"SpanAttributes": {"http.status_code": "503"}}, {"SpanAttributes": {"http.status_code": "x"}}])


def _numeric(**config: object) -> tuple:
    return policies({"name": "n", "type": "numeric_attribute", "numeric_attribute": config})


def test_bounds_are_inclusive_and_optional_and_non_numbers_are_skipped() -> None:
    assert decide(_numeric(key="http.status_code", min_value=500), TAGGED, 0)
    assert decide(_numeric(key="http.status_code", min_value=503, max_value=503), TAGGED, 0)
    assert not decide(_numeric(key="http.status_code", max_value=499), TAGGED, 0)
    assert decide(_numeric(key="http.status_code", max_value=499, invert_match=True), TAGGED, 0)


def test_inverted_bounds_are_refused() -> None:
    with pytest.raises(ConfigError, match="min_value: 5 is above max_value 1"):
        _numeric(key="k", min_value=5, max_value=1)
