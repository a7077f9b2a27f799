"""rate_limiting: samples traces while the spans sampled in the current second of stream time stay within
`spans_per_second`. Each span partition decides on its own, so each gets its share of the budget.

A trace it samples weighs the effective ratio of the budget: spans offered / spans admitted in the previous
second of stream time (1 when that second was within budget or saw no spans). The current second's ratio is
not known until it ends, so a change of load shows in the weights one second late."""

from __future__ import annotations

from dataclasses import dataclass

from processors.sampling.fields import Fields, per_partition
from processors.sampling.policy import BuildSub, DecodeSub, Kind, Policy, PolicyConfig, Trace, Vote


class SecondBudget:
    """Spans admitted per second of stream time (record timestamps, never the wall clock), and the ratio of
    spans offered to spans admitted in the previous second (`ratio`, the weight of what it admits)."""

    def __init__(self, per_second: float) -> None:
        self.per_second = per_second
        self.second = -1
        self.used = 0
        self.offered = 0
        self.ratio = 1.0

    def admit(self, spans: int, second: int) -> bool:
        if second != self.second:
            if second == self.second + 1 and self.offered:
                # Nothing admitted while spans were offered: at least that many per admitted span.
                self.ratio = self.offered / self.used if self.used else float(self.offered)
            else:
                self.ratio = 1.0
            self.second, self.used, self.offered = second, 0, 0
        self.offered += spans
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

    def weigh(self, trace: Trace, second: int) -> tuple[Vote, float]:
        if self._budget.admit(trace.span_count, second):
            return Vote.SAMPLED, self._budget.ratio
        return Vote.NOT_SAMPLED, 1.0


def decode(f: Fields, sub: DecodeSub) -> RateLimitingConfig:
    return RateLimitingConfig(f.number("spans_per_second", minimum=1))


def build(pc: PolicyConfig, share: float, sub: BuildSub) -> Policy:
    config: RateLimitingConfig = pc.config
    return RateLimiting(pc.name, per_partition(config.spans_per_second, share,
                                               f"{pc.path}.rate_limiting.spans_per_second"))


KIND = Kind("rate_limiting", frozenset({"spans_per_second"}), decode, build)
