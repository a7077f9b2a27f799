from processors.sampling import decide
from tests.helpers.spans import make_trace, policies


def _count(**config: int) -> tuple:
    return policies({"name": "c", "type": "span_count", "span_count": config})


def test_min_and_optional_max() -> None:
    two = make_trace([{}, {}])
    assert decide(_count(min_spans=2, max_spans=2), two, 0)
    assert decide(_count(min_spans=1), two, 0)
    assert not decide(_count(min_spans=3), two, 0)
    assert not decide(_count(min_spans=0, max_spans=1), two, 0)
