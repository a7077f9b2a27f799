"""span_count: samples traces with at least `min_spans` spans and, if `max_spans` is set, at most that many."""

from __future__ import annotations

from dataclasses import dataclass

from processors.sampling.fields import Fields
from processors.sampling.policy import BuildSub, DecodeSub, Kind, Policy, PolicyConfig, Trace, Vote


@dataclass(frozen=True)
class SpanCountConfig:
    min_spans: int
    max_spans: int = 0  # 0: no upper bound


class SpanCount(Policy):
    def __init__(self, name: str, config: SpanCountConfig) -> None:
        super().__init__(name)
        self.low, self.high = config.min_spans, config.max_spans

    def evaluate(self, trace: Trace, second: int) -> Vote:
        n = trace.span_count
        return Vote.SAMPLED if n >= self.low and (not self.high or n <= self.high) else Vote.NOT_SAMPLED


def decode(f: Fields, sub: DecodeSub) -> SpanCountConfig:
    return SpanCountConfig(int(f.number("min_spans", minimum=0)), int(f.number("max_spans", 0, minimum=0)))


def build(pc: PolicyConfig, share: float, sub: BuildSub) -> Policy:
    return SpanCount(pc.name, pc.config)


KIND = Kind("span_count", frozenset({"min_spans", "max_spans"}), decode, build)
