from processors.sampling import decide
from tests.helpers.spans import make_trace, policies

DROP_HEALTH = {"name": "no-health", "type": "drop", "drop": {"drop_sub_policy": [
    {"name": "h", "type": "string_attribute", "string_attribute": {"key": "http.route", "values": ["/health"]}}]}}


def test_a_drop_match_overrides_every_other_vote() -> None:
    everything = policies({"name": "all", "type": "always_sample"}, DROP_HEALTH)
    assert not decide(everything, make_trace([{"SpanAttributes": {"http.route": "/health"}}]), 0)
    assert decide(everything, make_trace([{"SpanAttributes": {"http.route": "/pay"}}]), 0)
