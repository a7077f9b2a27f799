"""The whole tail_sampling block: top-level keys, policy names and types, as the Collector's YAML has them."""

from typing import Any

import pytest

from processors.sampling import DEFAULT_CONFIG, ConfigError, decode_config


@pytest.mark.parametrize(("config", "message"), [
    ({"policies": [{"name": "a", "type": "latncy"}]}, "policies[0].type: unknown policy type 'latncy' (did you mean 'latency'?)"),
    ({"decision_wait": "soon", "policies": [{"name": "a", "type": "always_sample"}]}, "tail_sampling.decision_wait"),
    ({"num_traces": 10}, "tail_sampling.policies: expected a non-empty list"),
    ({"policies": [{"name": "a", "type": "ottl_condition"}]}, "a Collector policy Maple does not implement"),
    ({"policies": [{"name": "a", "type": "always_sample"}, {"name": "a", "type": "always_sample"}]},
     "duplicate policy names: a"),
    ({"polices": []}, "tail_sampling.polices: unknown key (did you mean 'policies'?)"),
    ({"decision_wait": -5, "policies": [{"name": "a", "type": "always_sample"}]}, "tail_sampling.decision_wait"),
    ({"num_traces": float("inf"), "policies": [{"name": "a", "type": "always_sample"}]},
     "num_traces: expected a finite number"),
    ({"policies": ["errors"]}, "policies[0]: expected a mapping with name and type, got str"),
    ({"policies": [{"name": "a", "type": "latency", "latency": {"threshold_ms": 1}, "status_code": {}}]},
     "policies[0].status_code: unknown key"),
    ({"policies": [{"type": "always_sample"}]}, "policies[0].name: required"),
])
def test_bad_configs_name_the_key(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        decode_config(config)
    assert message in str(error.value)


def test_the_collectors_yaml_block_is_read_as_is() -> None:
    config = decode_config({"tail_sampling": {"decision_wait": "2500ms", "num_traces": 50,
                                              "expected_new_traces_per_sec": 10, "late_span_window": "1m",
                                              "decision_cache": {"sampled_cache_size": 7, "non_sampled_cache_size": 8},
                                              "policies": [{"name": "a", "type": "always_sample"}]}})
    assert (config.decision_wait_ms, config.num_traces, config.sampled_cache_size, config.non_sampled_cache_size,
            config.late_span_window_ms) == (2500, 50, 7, 8, 60_000)
    default = decode_config(DEFAULT_CONFIG)
    assert default.decision_wait_ms == 10_000
    assert [(p.name, p.type) for p in default.policies] == [
        ("errors", "status_code"), ("slow-traces", "latency"), ("probabilistic", "probabilistic")]
