"""Tail-sampling policies: the Collector tail_sampling processor's policy types, read from the same YAML.

One module per policy type (its typed config, how it decodes its YAML block, the policy), as in the
Collector's `internal/sampling/`; `decode.py` reads the whole block once into a typed `SamplingConfig`,
and each partition sampler builds its own policies from it with `build_policies`.
"""

from processors.sampling.config import DEFAULT_CONFIG, SamplingConfig
from processors.sampling.decode import build_policies, decode_config
from processors.sampling.policy import ConfigError, Policy, PolicyConfig, Trace, Vote, decide, decide_weight
from processors.sampling.probabilistic import fnv1a64

__all__ = ["DEFAULT_CONFIG", "ConfigError", "Policy", "PolicyConfig", "SamplingConfig", "Trace", "Vote",
           "build_policies", "decide", "decide_weight", "decode_config", "fnv1a64"]
