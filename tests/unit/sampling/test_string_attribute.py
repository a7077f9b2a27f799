import pytest

from processors.sampling import ConfigError, decide
from tests.helpers.spans import make_trace, policies

TAGGED = make_trace([{"SpanAttributes": {"http.route": "/pay"}}, {"ResourceAttributes": {"deployment.environment": "canary"}}])


def _string(**config: object) -> tuple:
    return policies({"name": "s", "type": "string_attribute", "string_attribute": config})


def test_exact_values_on_span_then_resource_attributes() -> None:
    assert decide(_string(key="deployment.environment", values=["canary"]), TAGGED, 0)
    assert decide(_string(key="http.route", values=["/x", "/pay"]), TAGGED, 0)
    assert not decide(_string(key="http.route", values=["/pa"]), TAGGED, 0)


def test_regex_matching_and_invert_match() -> None:
    assert decide(_string(key="deployment.environment", values=["^can"], enabled_regex_matching=True), TAGGED, 0)
    assert not decide(_string(key="deployment.environment", values=["canary"], invert_match=True), TAGGED, 0)
    assert decide(_string(key="missing", values=["x"], invert_match=True), TAGGED, 0)


def test_bad_regex_names_the_value() -> None:
    with pytest.raises(ConfigError, match=r"values\[0\]: '\(unclosed' is not a valid"):
        _string(key="k", values=["(unclosed"], enabled_regex_matching=True)
