import pytest

from processors.sampling import ConfigError, decide
from tests.helpers.spans import make_trace, policies

BOTH = {"name": "both", "type": "and", "and": {"and_sub_policy": [
    {"name": "e", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
    {"name": "l", "type": "latency", "latency": {"threshold_ms": 1000}}]}}


def test_samples_only_when_every_sub_policy_does() -> None:
    assert decide(policies(BOTH), make_trace([{"StatusCode": "Error", "Duration": 2_000_000_000}]), 0)
    assert not decide(policies(BOTH), make_trace([{"StatusCode": "Error"}]), 0)


def test_sub_policies_cannot_nest_combinators() -> None:
    nested = {"name": "n", "type": "and", "and": {"and_sub_policy": [BOTH]}}
    with pytest.raises(ConfigError, match=r"and.and_sub_policy\[0\].type: unknown policy type 'and'"):
        policies(nested)
