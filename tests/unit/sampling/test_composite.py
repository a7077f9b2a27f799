import pytest

from processors.sampling import ConfigError, decide
from tests.helpers.spans import make_trace, policies


def _composite(**config: object) -> tuple:
    return policies({"name": "c", "type": "composite", "composite": config})


def test_the_first_matching_sub_policy_decides_within_its_share() -> None:
    composite = _composite(
        max_total_spans_per_second=4, policy_order=["errors", "rest"],
        composite_sub_policy=[{"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
                              {"name": "rest", "type": "always_sample"}],
        rate_allocation=[{"policy": "errors", "percent": 50}, {"policy": "rest", "percent": 50}])
    errored = make_trace([{"StatusCode": "Error"}])
    # As in the Collector, error traces use the errors' share (2 spans in second 5) and are not handed on to
    # "rest" once it is spent.
    assert [decide(composite, errored, 5) for _ in range(4)] == [True, True, False, False]
    assert [decide(composite, make_trace([{}]), 6) for _ in range(3)] == [True, True, False]


def test_a_sub_policy_without_allocation_gets_no_share() -> None:
    unallocated = _composite(max_total_spans_per_second=4,
                             composite_sub_policy=[{"name": "a", "type": "always_sample"},
                                                   {"name": "b", "type": "always_sample"}],
                             rate_allocation=[{"policy": "b", "percent": 0}])
    assert not decide(unallocated, make_trace([{}]), 1)  # "a" matches first and has no share


@pytest.mark.parametrize(("config", "message"), [
    ({"policy_order": ["x"]}, "composite.policy_order: names 'x', which is not a composite_sub_policy"),
    ({"rate_allocation": [{"policy": "a", "percent": 60}, {"policy": "b", "percent": 60}]},
     "composite.rate_allocation: percentages add up to more than 100"),
    ({"rate_allocation": [{"policy": "z", "percent": 1}]}, r"rate_allocation\[0\].policy: 'z' is not a composite"),
])
def test_bad_config_names_the_key(config: dict, message: str) -> None:
    subs = [{"name": "a", "type": "always_sample"}, {"name": "b", "type": "always_sample"}]
    with pytest.raises(ConfigError, match=message):
        _composite(max_total_spans_per_second=10, composite_sub_policy=subs, **config)
