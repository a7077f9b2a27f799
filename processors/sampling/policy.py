"""What every tail-sampling policy shares: the trace it votes on, its vote, and how votes combine.

A policy looks at a whole trace (every span gathered during `decision_wait`) and votes. The votes combine
as in the Collector: a `drop` match wins; otherwise the trace is sampled when any policy samples it.

A sampled trace also gets a weight, which the sink stores in otel_traces.SampleRate so that counts over
sampled traces can be re-weighted (sum(SampleRate)): 1 / the probability that a trace like it is kept.
A policy that keeps every trace it matches (status code, latency, attributes, ...) weighs 1, a
probabilistic policy at p% 100/p, a rate limit its effective ratio (docs/traces.md). When several
policies sample a trace, the smallest weight counts: the surest reason it was kept.

Everything here is deterministic given the trace and the stream clock (`second`, stream time): re-deciding
a trace after a restart gives the same answer (docs/traces.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class Vote(IntEnum):
    NOT_SAMPLED = 0
    SAMPLED = 1
    DROPPED = 2


class ConfigError(ValueError):
    """A sampling configuration problem; the message names the key path."""


def config_error(path: str, message: str) -> ConfigError:
    return ConfigError(f"tail sampling config, {path}: {message}")


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
    """A built policy: its name from the config, and a vote on a trace at a second of stream time.

    Policies may keep state (rate budgets), so each partition sampler builds its own from the decoded config."""

    def __init__(self, name: str) -> None:
        self.name = name

    def evaluate(self, trace: Trace, second: int) -> Vote:
        return self.weigh(trace, second)[0]

    def weigh(self, trace: Trace, second: int) -> tuple[Vote, float]:
        """The vote and, for a sampled trace, its weight. Policies that keep all they match weigh 1; a
        policy overrides `evaluate` or this (one of them, calling the other never twice: budgets)."""
        return self.evaluate(trace, second), 1.0


def matched(hit: bool, invert: bool) -> Vote:
    """An attribute policy's vote; `invert_match` negates it (the Collector's current meaning)."""
    return Vote.SAMPLED if hit != invert else Vote.NOT_SAMPLED


def decide_weight(policies: Sequence[Policy], trace: Trace, second: int) -> float | None:
    """The combined decision over all top-level policies (every policy is evaluated, as in the Collector):
    None when the trace is not sampled, else its weight (the smallest of the sampling policies')."""
    weight: float | None = None
    for policy in policies:
        vote, policy_weight = policy.weigh(trace, second)
        if vote == Vote.DROPPED:
            return None
        if vote == Vote.SAMPLED:
            weight = policy_weight if weight is None else min(weight, policy_weight)
    return weight


def decide(policies: Sequence[Policy], trace: Trace, second: int) -> bool:
    return decide_weight(policies, trace, second) is not None


@dataclass(frozen=True)
class PolicyConfig:
    """One decoded policy: its name, its type, the type's own typed config, and where it was written (for
    errors found only when the policy is built for a number of span partitions)."""

    name: str
    type: str
    config: Any
    path: str


# How a policy type decodes and builds. `sub` decodes (or builds) a nested policy: only the combinators
# (and, drop, composite) use it.
DecodeSub = Callable[[Any, str], PolicyConfig]
BuildSub = Callable[[PolicyConfig, float], Policy]


@dataclass(frozen=True)
class Kind:
    type: str
    keys: frozenset[str]
    decode: Callable[[Any, DecodeSub], Any]         # (Fields of the type's block, sub) -> the type's config
    build: Callable[[PolicyConfig, float, BuildSub], Policy]  # (config, share of rate budgets, sub) -> Policy
    combinator: bool = False
