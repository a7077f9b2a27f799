"""Tail-sampling policies: the Collector tail_sampling processor's policy types, read from the same YAML.

A policy looks at a whole trace (every span gathered during `decision_wait`) and votes. The votes combine
as in the Collector: a `drop` match wins; otherwise the trace is sampled when any policy samples it.
`invert_match` negates one attribute policy's vote (the Collector's current meaning, not its legacy veto).

Everything here is deterministic given the trace and the stream clock: probabilistic sampling hashes the
trace id, and rate limits count spans per second of *stream* time (record timestamps), so re-deciding a
trace after a restart gives the same answer (see topologies/sampler docs in docs/traces.md).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class Vote(IntEnum):
    NOT_SAMPLED = 0
    SAMPLED = 1
    DROPPED = 2


class ConfigError(ValueError):
    """A sampling configuration problem; the message names the key path."""


@dataclass
class Trace:
    """A trace's spans as (columns, row) references into the span batches they came in."""

    trace_id: str
    spans: list[tuple[dict[str, list[Any]], int]] = field(default_factory=list)

    @property
    def span_count(self) -> int:
        return len(self.spans)

    def latency_ms(self) -> float:
        first = min(cols["StartNs"][i] for cols, i in self.spans)
        last = max(cols["StartNs"][i] + cols["Duration"][i] for cols, i in self.spans)
        return (last - first) / 1e6

    def values(self, key: str) -> list[str]:
        """The attribute's values over all spans: span attributes, else the span's resource attributes."""
        out = []
        for cols, i in self.spans:
            value = cols["SpanAttributes"][i].get(key)
            if value is None:
                value = cols["ResourceAttributes"][i].get(key)
            if value is not None:
                out.append(value)
        return out


class Policy:
    name: str = ""

    def evaluate(self, trace: Trace, second: int) -> Vote:
        raise NotImplementedError


# -- leaf policies ------------------------------------------------------------------------------------

class AlwaysSample(Policy):
    def evaluate(self, trace: Trace, second: int) -> Vote:
        return Vote.SAMPLED


@dataclass
class Latency(Policy):
    threshold_ms: float
    upper_threshold_ms: float = 0.0

    def evaluate(self, trace: Trace, second: int) -> Vote:
        latency = trace.latency_ms()
        if self.upper_threshold_ms:
            return Vote.SAMPLED if self.threshold_ms < latency <= self.upper_threshold_ms else Vote.NOT_SAMPLED
        return Vote.SAMPLED if latency >= self.threshold_ms else Vote.NOT_SAMPLED


@dataclass
class StatusCode(Policy):
    codes: frozenset[str]  # as stored: Unset, Ok, Error

    def evaluate(self, trace: Trace, second: int) -> Vote:
        codes = self.codes
        return Vote.SAMPLED if any(cols["StatusCode"][i] in codes for cols, i in trace.spans) else Vote.NOT_SAMPLED


_FNV_OFFSET, _FNV_PRIME, _MASK64 = 0xCBF29CE484222325, 0x100000001B3, 2 ** 64 - 1


def fnv1a64(data: bytes) -> int:
    value = _FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV_PRIME) & _MASK64
    return value


@dataclass
class Probabilistic(Policy):
    """Samples a fixed share of trace ids: FNV-1a 64 over salt + trace id bytes, the Collector's hash, so the
    same salt and percentage pick the same traces as a Collector would."""

    sampling_percentage: float
    hash_salt: str = "default-hash-seed"

    def __post_init__(self) -> None:
        self._threshold = int(min(max(self.sampling_percentage, 0.0), 100.0) / 100.0 * _MASK64)
        self._salt = self.hash_salt.encode()

    def evaluate(self, trace: Trace, second: int) -> Vote:
        try:
            trace_bytes = bytes.fromhex(trace.trace_id)
        except ValueError:
            trace_bytes = trace.trace_id.encode()
        return Vote.SAMPLED if fnv1a64(self._salt + trace_bytes) <= self._threshold else Vote.NOT_SAMPLED


def _matched(hit: bool, invert: bool) -> Vote:
    return Vote.SAMPLED if hit != invert else Vote.NOT_SAMPLED


@dataclass
class StringAttribute(Policy):
    key: str
    values: tuple[str, ...]
    enabled_regex_matching: bool = False
    invert_match: bool = False

    def __post_init__(self) -> None:
        self._patterns = [re.compile(v) for v in self.values] if self.enabled_regex_matching else []  # checked by _regexes
        self._set = frozenset(self.values)

    def evaluate(self, trace: Trace, second: int) -> Vote:
        found = trace.values(self.key)
        if self._patterns:
            hit = any(p.search(v) for v in found for p in self._patterns)
        else:
            hit = any(v in self._set for v in found)
        return _matched(hit, self.invert_match)


@dataclass
class NumericAttribute(Policy):
    key: str
    min_value: float | None = None
    max_value: float | None = None
    invert_match: bool = False

    def evaluate(self, trace: Trace, second: int) -> Vote:
        hit = False
        for text in trace.values(self.key):
            try:
                number = float(text)
            except ValueError:
                continue
            if (self.min_value is None or number >= self.min_value) and (self.max_value is None or number <= self.max_value):
                hit = True
                break
        return _matched(hit, self.invert_match)


@dataclass
class BooleanAttribute(Policy):
    key: str
    value: bool
    invert_match: bool = False

    def evaluate(self, trace: Trace, second: int) -> Vote:
        wanted = "true" if self.value else "false"
        return _matched(any(v.lower() == wanted for v in trace.values(self.key)), self.invert_match)


@dataclass
class SpanCount(Policy):
    min_spans: int
    max_spans: int = 0

    def evaluate(self, trace: Trace, second: int) -> Vote:
        n = trace.span_count
        return Vote.SAMPLED if n >= self.min_spans and (not self.max_spans or n <= self.max_spans) else Vote.NOT_SAMPLED


class _SecondBudget:
    """Spans admitted per second of stream time."""

    def __init__(self, per_second: float) -> None:
        self.per_second = per_second
        self.second = -1
        self.used = 0

    def admit(self, spans: int, second: int) -> bool:
        if second != self.second:
            self.second, self.used = second, 0
        if self.used + spans > self.per_second:
            return False
        self.used += spans
        return True


class RateLimiting(Policy):
    def __init__(self, spans_per_second: float) -> None:
        self.spans_per_second = spans_per_second
        self._budget = _SecondBudget(spans_per_second)

    def evaluate(self, trace: Trace, second: int) -> Vote:
        return Vote.SAMPLED if self._budget.admit(trace.span_count, second) else Vote.NOT_SAMPLED


# -- combinators --------------------------------------------------------------------------------------

class And(Policy):
    """Samples when every sub-policy samples (they are asked in order, until one does not)."""

    def __init__(self, policies: list[Policy]) -> None:
        self.policies = policies

    def evaluate(self, trace: Trace, second: int) -> Vote:
        return Vote.SAMPLED if all(p.evaluate(trace, second) == Vote.SAMPLED for p in self.policies) else Vote.NOT_SAMPLED


class Drop(And):
    """Drops the trace when every sub-policy matches; this overrides any other policy's vote."""

    def evaluate(self, trace: Trace, second: int) -> Vote:
        return Vote.DROPPED if super().evaluate(trace, second) == Vote.SAMPLED else Vote.NOT_SAMPLED


class Composite(Policy):
    """Sub-policies in `policy_order`; the first that samples decides, within its share of the span budget
    (as in the Collector: over its share, the trace is not sampled; later sub-policies are not asked).
    A share is `percent` of max_total_spans_per_second; percent 0 means an equal share of the total; a
    sub-policy without an entry in rate_allocation gets none."""

    def __init__(self, max_total_spans_per_second: float, ordered: list[Policy], allocation: Mapping[str, float]) -> None:
        self.total = _SecondBudget(max_total_spans_per_second)
        self.ordered = ordered
        equal = max_total_spans_per_second / max(len(ordered), 1)
        self.budgets = {p.name: _SecondBudget(
            (max_total_spans_per_second * allocation[p.name] / 100.0 if allocation[p.name] else equal)
            if p.name in allocation else 0.0) for p in ordered}

    def evaluate(self, trace: Trace, second: int) -> Vote:
        spans = trace.span_count
        for policy in self.ordered:
            if policy.evaluate(trace, second) != Vote.SAMPLED:
                continue
            if self.budgets[policy.name].admit(spans, second) and self.total.admit(spans, second):
                return Vote.SAMPLED
            return Vote.NOT_SAMPLED
        return Vote.NOT_SAMPLED


def decide(policies: list[Policy], trace: Trace, second: int) -> bool:
    """The combined decision over all top-level policies (every policy is evaluated, as in the Collector)."""
    sampled = False
    for policy in policies:
        vote = policy.evaluate(trace, second)
        if vote == Vote.DROPPED:
            return False
        sampled = sampled or vote == Vote.SAMPLED
    return sampled


# -- configuration ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SamplingConfig:
    policies: tuple[Policy, ...]
    decision_wait_ms: int = 10_000
    num_traces: int = 100_000
    sampled_cache_size: int = 100_000
    non_sampled_cache_size: int = 100_000
    late_span_window_ms: int = 30_000


# The seed configuration (seed 004): errors, slow traces and a 10% probabilistic share.
DEFAULT_CONFIG = {
    "decision_wait": "10s",
    "num_traces": 100000,
    "policies": [
        {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
        {"name": "slow-traces", "type": "latency", "latency": {"threshold_ms": 1000}},
        {"name": "probabilistic", "type": "probabilistic", "probabilistic": {"sampling_percentage": 10}},
    ],
}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, None: 1000}
_STATUS = {"ERROR": "Error", "OK": "Ok", "UNSET": "Unset"}
_UNSUPPORTED = {"trace_state", "ottl_condition", "bytes_limiting", "trace_flags"}


def _fail(path: str, message: str) -> ConfigError:
    return ConfigError(f"tail sampling config, {path}: {message}")


def _check_keys(block: Any, path: str, allowed: set[str]) -> dict[str, Any]:
    if block is None:
        return {}
    if not isinstance(block, dict):
        raise _fail(path, f"expected a mapping, got {type(block).__name__}")
    for key in block:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            raise _fail(f"{path}.{key}", "unknown key" + (f" (did you mean {hint[0]!r}?)" if hint else
                                                                  f"; accepted: {', '.join(sorted(allowed))}"))
    return block


def _duration_ms(value: Any, path: str) -> int:
    if isinstance(value, bool):
        raise _fail(path, "expected a duration such as 10s or 500ms")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise _fail(path, f"expected a duration of 0 or more, such as 10s or 500ms, got {value!r}")
        return int(value * 1000)
    match = _DURATION.match(str(value))
    if not match:
        raise _fail(path, f"expected a duration such as 10s or 500ms, got {value!r}")
    return int(float(match.group(1)) * _UNITS_MS[match.group(2)])


def _number(block: dict[str, Any], key: str, path: str, default: Any = ..., minimum: float | None = None) -> Any:
    if key not in block:
        if default is ...:
            raise _fail(f"{path}.{key}", "required")
        return default
    value = block[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(f"{path}.{key}", f"expected a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise _fail(f"{path}.{key}", f"must be at least {minimum}, got {value}")
    return value


def _text(block: dict[str, Any], key: str, path: str, default: Any = ...) -> Any:
    if key not in block:
        if default is ...:
            raise _fail(f"{path}.{key}", "required")
        return default
    value = block[key]
    if not isinstance(value, str) or (default is ... and not value):
        raise _fail(f"{path}.{key}", f"expected a non-empty string, got {value!r}")
    return value


def _flag(block: dict[str, Any], key: str, path: str, default: bool = False) -> bool:
    value = block.get(key, default)
    if not isinstance(value, bool):
        raise _fail(f"{path}.{key}", f"expected true or false, got {value!r}")
    return value


def _list(block: dict[str, Any], key: str, path: str) -> list[Any]:
    value = block.get(key)
    if not isinstance(value, list) or not value:
        raise _fail(f"{path}.{key}", "expected a non-empty list")
    return value


_LEAF_KEYS: dict[str, set[str]] = {
    "always_sample": set(),
    "latency": {"threshold_ms", "upper_threshold_ms"},
    "status_code": {"status_codes"},
    "probabilistic": {"sampling_percentage", "hash_salt"},
    "string_attribute": {"key", "values", "enabled_regex_matching", "cache_max_size", "invert_match"},
    "numeric_attribute": {"key", "min_value", "max_value", "invert_match"},
    "boolean_attribute": {"key", "value", "invert_match"},
    "rate_limiting": {"spans_per_second"},
    "span_count": {"min_spans", "max_spans"},
    "and": {"and_sub_policy"},
    "composite": {"max_total_spans_per_second", "policy_order", "composite_sub_policy", "rate_allocation"},
    "drop": {"drop_sub_policy"},
}


def _policy(spec: Any, path: str, nested: bool = False, rate_share: float = 1.0) -> Policy:
    if not isinstance(spec, dict):
        raise _fail(path, f"expected a mapping with name and type, got {type(spec).__name__}")
    kind = _text(spec, "type", path)
    if kind in _UNSUPPORTED:
        raise _fail(f"{path}.type", f"{kind!r} is a Collector policy Maple does not implement")
    if kind not in _LEAF_KEYS or (nested and kind in ("and", "composite", "drop")):
        allowed = sorted(k for k in _LEAF_KEYS if not nested or k not in ("and", "composite", "drop"))
        hint = difflib.get_close_matches(kind, allowed, n=1)
        raise _fail(f"{path}.type", f"unknown policy type {kind!r}" + (f" (did you mean {hint[0]!r}?)" if hint else
                                                                         f"; accepted: {', '.join(allowed)}"))
    _check_keys(spec, path, {"name", "type", kind})
    name = _text(spec, "name", path)
    body = _check_keys(spec.get(kind), f"{path}.{kind}", _LEAF_KEYS[kind])
    where = f"{path}.{kind}"
    policy = _build(kind, body, where, rate_share)
    policy.name = name
    return policy


def _build(kind: str, body: dict[str, Any], where: str, share: float) -> Policy:
    builders: dict[str, Callable[[], Policy]] = {
        "always_sample": AlwaysSample,
        "latency": lambda: _latency(body, where),
        "status_code": lambda: StatusCode(frozenset(_status(c, f"{where}.status_codes")
                                                    for c in _list(body, "status_codes", where))),
        # An empty salt means the default, as in the Collector, so both pick the same traces.
        "probabilistic": lambda: Probabilistic(_number(body, "sampling_percentage", where, minimum=0),
                                               _text(body, "hash_salt", where, "") or "default-hash-seed"),
        "string_attribute": lambda: StringAttribute(_text(body, "key", where), _regexes(body, where),
                                                    _flag(body, "enabled_regex_matching", where),
                                                    _flag(body, "invert_match", where)),
        "numeric_attribute": lambda: _numeric(body, where),
        "boolean_attribute": lambda: BooleanAttribute(_text(body, "key", where), _flag(body, "value", where),
                                                      _flag(body, "invert_match", where)),
        "rate_limiting": lambda: RateLimiting(_per_partition(body, "spans_per_second", where, share)),
        "span_count": lambda: SpanCount(int(_number(body, "min_spans", where, minimum=0)),
                                        int(_number(body, "max_spans", where, 0, minimum=0))),
        "and": lambda: And(_subpolicies(body, "and_sub_policy", where, share)),
        "drop": lambda: Drop(_subpolicies(body, "drop_sub_policy", where, share)),
        "composite": lambda: _composite(body, where, share),
    }
    return builders[kind]()


def _per_partition(body: dict[str, Any], key: str, where: str, share: float) -> float:
    """A spans-per-second budget split over the span partitions; each must get at least one span/s, or
    that partition could never sample a trace under it."""
    total = _number(body, key, where, minimum=1)
    if total * share < 1:
        raise _fail(f"{where}.{key}", f"{total:g} spans/s over {round(1 / share)} span partitions leaves less "
                                      f"than 1 per partition; use at least {math.ceil(1 / share)}")
    return total * share


def _latency(body: dict[str, Any], where: str) -> Policy:
    low = _number(body, "threshold_ms", where, minimum=0)
    high = _number(body, "upper_threshold_ms", where, 0, minimum=0)
    if high and high <= low:
        raise _fail(f"{where}.upper_threshold_ms", f"{high:g} is not above threshold_ms {low:g}; no trace could match")
    return Latency(low, high)


def _numeric(body: dict[str, Any], where: str) -> Policy:
    low, high = _number(body, "min_value", where, None), _number(body, "max_value", where, None)
    if low is not None and high is not None and low > high:
        raise _fail(f"{where}.min_value", f"{low:g} is above max_value {high:g}; no value could match")
    return NumericAttribute(_text(body, "key", where), low, high, _flag(body, "invert_match", where))


def _regexes(body: dict[str, Any], where: str) -> tuple[str, ...]:
    values = tuple(str(v) for v in _list(body, "values", where))
    if body.get("enabled_regex_matching"):
        for n, value in enumerate(values):
            try:
                re.compile(value)
            except re.error as exc:
                raise _fail(f"{where}.values[{n}]", f"{value!r} is not a valid regular expression: {exc}") from None
    return values


def _status(code: Any, path: str) -> str:
    if not isinstance(code, str) or code.upper() not in _STATUS:
        raise _fail(path, f"unknown status code {code!r}; accepted: ERROR, OK, UNSET")
    return _STATUS[code.upper()]


def _subpolicies(body: dict[str, Any], key: str, where: str, share: float) -> list[Policy]:
    return [_policy(spec, f"{where}.{key}[{n}]", nested=True, rate_share=share)
            for n, spec in enumerate(_list(body, key, where))]


def _composite(body: dict[str, Any], where: str, share: float) -> Policy:
    total = _per_partition(body, "max_total_spans_per_second", where, share)
    listed = _subpolicies(body, "composite_sub_policy", where, share)
    subs = {p.name: p for p in listed}
    if len(subs) != len(listed):
        raise _fail(f"{where}.composite_sub_policy", "sub-policy names must be unique")
    order = body.get("policy_order", list(subs))
    if not isinstance(order, list) or not all(isinstance(n, str) for n in order):
        raise _fail(f"{where}.policy_order", "expected a list of sub-policy names")
    for name in order:
        if name not in subs:
            raise _fail(f"{where}.policy_order", f"names {name!r}, which is not a composite_sub_policy")
    allocation: dict[str, float] = {}
    for n, entry in enumerate(body.get("rate_allocation") or []):
        entry = _check_keys(entry, f"{where}.rate_allocation[{n}]", {"policy", "percent"})
        policy = _text(entry, "policy", f"{where}.rate_allocation[{n}]")
        if policy not in subs:
            raise _fail(f"{where}.rate_allocation[{n}].policy", f"{policy!r} is not a composite_sub_policy")
        allocation[policy] = _number(entry, "percent", f"{where}.rate_allocation[{n}]", minimum=0)
    if sum(allocation.values()) > 100:
        raise _fail(f"{where}.rate_allocation", "percentages add up to more than 100")
    return Composite(total, [subs[name] for name in order], allocation)


TOP_KEYS = {"decision_wait", "num_traces", "expected_new_traces_per_sec", "decision_cache", "policies",
            "late_span_window"}


def parse_config(raw: Any, rate_share: float = 1.0) -> SamplingConfig:
    """A SamplingConfig from the Collector's tail_sampling block (optionally wrapped in `tail_sampling:`).

    Policies keep state (rate budgets), so every partition sampler parses its own copy; `rate_share` is its
    part of the spans-per-second budgets (1 / partitions: each partition is decided on its own)."""
    if isinstance(raw, dict) and set(raw) == {"tail_sampling"}:
        raw = raw["tail_sampling"]
    block = _check_keys(raw, "tail_sampling", TOP_KEYS)
    cache = _check_keys(block.get("decision_cache"), "tail_sampling.decision_cache",
                        {"sampled_cache_size", "non_sampled_cache_size"})
    policies = [_policy(spec, f"policies[{n}]", rate_share=rate_share)
                for n, spec in enumerate(_list(block, "policies", "tail_sampling"))]
    names = [p.name for p in policies]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise _fail("policies", f"duplicate policy names: {', '.join(duplicates)}")
    _number(block, "expected_new_traces_per_sec", "tail_sampling", 0, minimum=0)  # accepted; nothing sized from it
    return SamplingConfig(
        policies=tuple(policies),
        decision_wait_ms=_duration_ms(block.get("decision_wait", "10s"), "tail_sampling.decision_wait"),
        num_traces=int(_number(block, "num_traces", "tail_sampling", 100_000, minimum=1)),
        sampled_cache_size=int(_number(cache, "sampled_cache_size", "tail_sampling.decision_cache", 100_000, minimum=0)),
        non_sampled_cache_size=int(_number(cache, "non_sampled_cache_size", "tail_sampling.decision_cache", 100_000,
                                           minimum=0)),
        late_span_window_ms=_duration_ms(block.get("late_span_window", "30s"), "tail_sampling.late_span_window"),
    )
