import pytest

from processors.sampling import ConfigError, decide
from tests.helpers.spans import make_trace, policies


def test_a_budget_per_second_of_stream_time() -> None:
    limited = policies({"name": "r", "type": "rate_limiting", "rate_limiting": {"spans_per_second": 3}})
    assert decide(limited, make_trace([{}, {}, {}]), 10)
    assert not decide(limited, make_trace([{}]), 10)  # the budget of second 10 is spent
    assert decide(limited, make_trace([{}]), 11)      # a new second, a new budget


def test_each_partition_gets_its_share_and_at_least_one_span_per_second() -> None:
    spec = {"name": "r", "type": "rate_limiting", "rate_limiting": {"spans_per_second": 12}}
    half = policies(spec, rate_share=0.5)
    assert decide(half, make_trace([{}] * 6), 1) and not decide(half, make_trace([{}]), 1)
    small = {"name": "r", "type": "rate_limiting", "rate_limiting": {"spans_per_second": 5}}
    with pytest.raises(ConfigError) as error:
        policies(small, rate_share=1 / 6)
    assert ("policies[0].rate_limiting.spans_per_second: 5 spans/s over 6 span partitions leaves less than 1 "
            "per partition; use at least 6") in str(error.value)
