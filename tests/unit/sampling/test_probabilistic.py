import random

import pytest

from processors.sampling import ConfigError, decide, fnv1a64
from tests.helpers.spans import make_trace, policies

IDS = [random.Random(7).randbytes(16).hex() for _ in range(1)] + [random.Random(i).randbytes(16).hex()
                                                                 for i in range(5000)]


def _picked(**config: object) -> list[str]:
    chosen = policies({"name": "p", "type": "probabilistic", "probabilistic": config})
    return [t for t in IDS if decide(chosen, make_trace([{}], t), 0)]


def test_the_collectors_fnv1a_hash() -> None:
    assert fnv1a64(b"") == 0xCBF29CE484222325 and fnv1a64(b"a") == 0xAF63DC4C8601EC8C


def test_keeps_its_share_and_a_re_decision_agrees() -> None:
    picked = _picked(sampling_percentage=20)
    assert 0.17 < len(picked) / len(IDS) < 0.23
    assert picked == _picked(sampling_percentage=20)
    assert picked != _picked(sampling_percentage=20, hash_salt="other")
    assert picked == _picked(sampling_percentage=20, hash_salt="")  # empty salt = the Collector's default


def test_edges_and_bad_values() -> None:
    assert _picked(sampling_percentage=0) == [] and len(_picked(sampling_percentage=100)) == len(IDS)
    with pytest.raises(ConfigError, match="sampling_percentage: must be at least 0"):
        _picked(sampling_percentage=-1)
