"""rate_limiting: samples traces while the spans sampled in the current second of stream time stay within
`spans_per_second`. Each span partition decides on its own, so each gets its share of the budget."""

from __future__ import annotations

from dataclasses import dataclass

from processors.sampling.fields import Fields, per_partition
from processors.sampling.policy import BuildSub, DecodeSub, Kind, Policy, PolicyConfig, Trace, Vote


class SecondBudget:
    """Spans admitted per second of stream time (record timestamps, never the wall clock)."""

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


@dataclass(frozen=True)
class RateLimitingConfig:
    spans_per_second: float


class RateLimiting(Policy):
    def __init__(self, name: str, spans_per_second: float) -> None:
        super().__init__(name)
        self._budget = SecondBudget(spans_per_second)

    def evaluate(self, trace: Trace, second: int) -> Vote:
        return Vote.SAMPLED if self._budget.admit(trace.span_count, second) else Vote.NOT_SAMPLED


def decode(f: Fields, sub: DecodeSub) -> RateLimitingConfig:
    return RateLimitingConfig(f.number("spans_per_second", minimum=1))


def build(pc: PolicyConfig, share: float, sub: BuildSub) -> Policy:
    config: RateLimitingConfig = pc.config
    return RateLimiting(pc.name, per_partition(config.spans_per_second, share,
                                               f"{pc.path}.rate_limiting.spans_per_second"))


KIND = Kind("rate_limiting", frozenset({"spans_per_second"}), decode, build)
