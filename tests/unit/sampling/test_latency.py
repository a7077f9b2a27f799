import re

import pytest

from processors.sampling import ConfigError, decide
from tests.helpers.spans import NOW, make_trace, policies

SLOW = make_trace([{"StartNs": NOW, "Duration": 200_000_000}, {"StartNs": NOW + 900_000_000, "Duration": 150_000_000}])


def _latency(**config: float) -> tuple:
    return policies({"name": "l", "type": "latency", "latency": config})


def test_latency_is_first_start_to_last_end_of_the_whole_trace() -> None:
    assert SLOW.latency_ms() == pytest.approx(1050.0)
    assert decide(_latency(threshold_ms=1000), SLOW, 0)
    assert not decide(_latency(threshold_ms=1100), SLOW, 0)


def test_an_upper_threshold_makes_a_half_open_window() -> None:
    assert not decide(_latency(threshold_ms=100, upper_threshold_ms=1000), SLOW, 0)
    assert decide(_latency(threshold_ms=1000, upper_threshold_ms=1050), SLOW, 0)


@pytest.mark.parametrize(("config", "message"), [
    ({"treshold_ms": 1}, "policies[0].latency.treshold_ms: unknown key (did you mean 'threshold_ms'?)"),
    ({"threshold_ms": "fast"}, "policies[0].latency.threshold_ms: expected a finite number, got 'fast'"),
    ({"threshold_ms": 500, "upper_threshold_ms": 100}, "upper_threshold_ms: 100 is not above threshold_ms 500"),
    ({}, "policies[0].latency.threshold_ms: required"),
])
def test_bad_config_names_the_key(config: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        _latency(**config)
