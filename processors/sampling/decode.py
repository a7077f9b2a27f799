"""Decode the Collector's tail_sampling YAML block into a typed SamplingConfig, naming the key path of any
mistake, and build a partition's policies from it. The policy types are the modules of this package."""

from __future__ import annotations

import difflib
from typing import Any

from processors.sampling import (
    always_sample,
    and_policy,
    boolean_attribute,
    composite,
    drop,
    latency,
    numeric_attribute,
    probabilistic,
    rate_limiting,
    span_count,
    status_code,
    string_attribute,
)
from processors.sampling.config import SamplingConfig
from processors.sampling.fields import Fields
from processors.sampling.policy import Kind, Policy, PolicyConfig, config_error

KINDS: dict[str, Kind] = {kind.type: kind for kind in (
    always_sample.KIND, latency.KIND, status_code.KIND, probabilistic.KIND, string_attribute.KIND,
    numeric_attribute.KIND, boolean_attribute.KIND, rate_limiting.KIND, span_count.KIND, and_policy.KIND,
    drop.KIND, composite.KIND)}
# Collector policies Maple does not implement: refused by name rather than as unknown.
UNSUPPORTED = frozenset({"trace_state", "ottl_condition", "bytes_limiting", "trace_flags"})
TOP_KEYS = frozenset({"decision_wait", "num_traces", "expected_new_traces_per_sec", "decision_cache", "policies",
                      "late_span_window", "decision_wait_after_root_received"})


def decode_policy(spec: Any, path: str, nested: bool = False) -> PolicyConfig:
    """One policy mapping (name, type, and the type's block) at `path`; combinators hold no combinators."""
    if not isinstance(spec, dict):
        raise config_error(path, f"expected a mapping with name and type, got {type(spec).__name__}")
    head = Fields(spec, path, set(spec))  # the type says which keys belong: checked below
    kind_name = head.text("type")
    if kind_name in UNSUPPORTED:
        raise head.fail("type", f"{kind_name!r} is a Collector policy Maple does not implement")
    kind = KINDS.get(kind_name)
    if kind is None or (nested and kind.combinator):
        allowed = sorted(k for k, v in KINDS.items() if not (nested and v.combinator))
        hint = difflib.get_close_matches(kind_name, allowed, n=1)
        raise head.fail("type", f"unknown policy type {kind_name!r}" + (
            f" (did you mean {hint[0]!r}?)" if hint else f"; accepted: {', '.join(allowed)}"))
    Fields(spec, path, {"name", "type", kind_name})  # no other type's block beside this one
    name = head.text("name")
    config = kind.decode(Fields(spec.get(kind_name), f"{path}.{kind_name}", kind.keys),
                         lambda sub_spec, sub_path: decode_policy(sub_spec, sub_path, nested=True))
    return PolicyConfig(name, kind_name, config, path)


def decode_config(raw: Any) -> SamplingConfig:
    """A SamplingConfig from the Collector's tail_sampling block (optionally wrapped in `tail_sampling:`)."""
    if isinstance(raw, dict) and set(raw) == {"tail_sampling"}:
        raw = raw["tail_sampling"]
    top = Fields(raw, "tail_sampling", TOP_KEYS)
    cache = top.block_of("decision_cache", {"sampled_cache_size", "non_sampled_cache_size"})
    policies = tuple(decode_policy(spec, f"policies[{n}]") for n, spec in enumerate(top.items("policies")))
    names = [p.name for p in policies]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise config_error("policies", f"duplicate policy names: {', '.join(duplicates)}")
    top.number("expected_new_traces_per_sec", 0, minimum=0)  # accepted for the Collector's YAML; sizes nothing
    decision_wait = top.duration_ms("decision_wait", "10s")
    after_root = (top.duration_ms("decision_wait_after_root_received", "0s")
                  if "decision_wait_after_root_received" in top.block else None)
    if after_root is not None and not 0 <= after_root <= decision_wait:
        raise top.fail("decision_wait_after_root_received",
                       f"{after_root} ms is not between 0 and decision_wait ({decision_wait} ms)")
    return SamplingConfig(
        policies=policies,
        decision_wait_ms=decision_wait,
        decision_wait_after_root_ms=after_root,
        num_traces=int(top.number("num_traces", 100_000, minimum=1)),
        sampled_cache_size=int(cache.number("sampled_cache_size", 100_000, minimum=0)),
        non_sampled_cache_size=int(cache.number("non_sampled_cache_size", 100_000, minimum=0)),
        late_span_window_ms=top.duration_ms("late_span_window", "30s"),
    )


def build_policy(pc: PolicyConfig, share: float) -> Policy:
    return KINDS[pc.type].build(pc, share, build_policy)


def build_policies(config: SamplingConfig, rate_share: float = 1.0) -> tuple[Policy, ...]:
    """Fresh policy instances for one partition sampler; `rate_share` is its part of the spans-per-second
    budgets (1 / span partitions: each partition decides on its own). Raises ConfigError when a budget
    leaves a partition less than one span per second."""
    return tuple(build_policy(pc, rate_share) for pc in config.policies)
