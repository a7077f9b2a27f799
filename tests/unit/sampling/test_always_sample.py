from processors.sampling import decide
from tests.helpers.spans import make_trace, policies


def test_samples_every_trace_and_takes_no_keys() -> None:
    assert decide(policies({"name": "all", "type": "always_sample"}), make_trace([{}]), 0)
