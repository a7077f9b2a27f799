"""latency: samples traces whose duration (earliest span start to latest span end) is at least
`threshold_ms`, or, with `upper_threshold_ms`, lies in (threshold_ms, upper_threshold_ms]."""

from __future__ import annotations

from dataclasses import dataclass

from processors.sampling.fields import Fields
from processors.sampling.policy import BuildSub, DecodeSub, Kind, Policy, PolicyConfig, Trace, Vote


@dataclass(frozen=True)
class LatencyConfig:
    threshold_ms: float
    upper_threshold_ms: float = 0.0  # 0: no upper bound


class Latency(Policy):
    def __init__(self, name: str, config: LatencyConfig) -> None:
        super().__init__(name)
        self.low, self.high = config.threshold_ms, config.upper_threshold_ms

    def evaluate(self, trace: Trace, second: int) -> Vote:
        latency = trace.latency_ms()
        if self.high:
            return Vote.SAMPLED if self.low < latency <= self.high else Vote.NOT_SAMPLED
        return Vote.SAMPLED if latency >= self.low else Vote.NOT_SAMPLED


def decode(f: Fields, sub: DecodeSub) -> LatencyConfig:
    low = f.number("threshold_ms", minimum=0)
    high = f.number("upper_threshold_ms", 0, minimum=0)
    if high and high <= low:
        raise f.fail("upper_threshold_ms", f"{high:g} is not above threshold_ms {low:g}; no trace could match")
    return LatencyConfig(low, high)


def build(pc: PolicyConfig, share: float, sub: BuildSub) -> Policy:
    return Latency(pc.name, pc.config)


KIND = Kind("latency", frozenset({"threshold_ms", "upper_threshold_ms"}), decode, build)
