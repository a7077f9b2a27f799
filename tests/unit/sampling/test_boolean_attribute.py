import pytest

from processors.sampling import ConfigError, decide
from tests.helpers.spans import make_trace, policies

TAGGED = make_trace([{"SpanAttributes": {"cache.hit": "True"}}])


def _boolean(**config: object) -> tuple:
    return policies({"name": "b", "type": "boolean_attribute", "boolean_attribute": config})


def test_matches_the_stored_text_case_insensitively() -> None:
    assert decide(_boolean(key="cache.hit", value=True), TAGGED, 0)
    assert not decide(_boolean(key="cache.hit", value=False), TAGGED, 0)
    assert not decide(_boolean(key="cache.hit", value=True, invert_match=True), TAGGED, 0)


def test_value_must_be_a_boolean() -> None:
    with pytest.raises(ConfigError, match="boolean_attribute.value: expected true or false, got 'yes'"):
        _boolean(key="cache.hit", value="yes")
