import pytest

from processors.sampling import ConfigError, decide
from tests.helpers.spans import make_trace, policies

ERRORED = make_trace([{}, {"StatusCode": "Error"}])


def _codes(*codes: object) -> tuple:
    return policies({"name": "e", "type": "status_code", "status_code": {"status_codes": list(codes)}})


def test_one_span_with_a_listed_status_samples_the_trace() -> None:
    assert decide(_codes("ERROR"), ERRORED, 0)
    assert decide(_codes("ok", "unset"), ERRORED, 0)  # the first span is Unset; names are case-insensitive
    assert not decide(_codes("OK"), ERRORED, 0)


def test_unknown_codes_and_empty_lists_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"status_codes\[1\]: unknown status code 'BAD'"):
        _codes("ERROR", "BAD")
    with pytest.raises(ConfigError, match="status_code.status_codes: expected a non-empty list"):
        _codes()
