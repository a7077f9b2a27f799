"""always_sample: samples every trace (a catch-all beside `drop` policies)."""

from __future__ import annotations

from dataclasses import dataclass

from processors.sampling.fields import Fields
from processors.sampling.policy import BuildSub, DecodeSub, Kind, Policy, PolicyConfig, Trace, Vote


@dataclass(frozen=True)
class AlwaysSampleConfig:
    pass


class AlwaysSample(Policy):
    def evaluate(self, trace: Trace, second: int) -> Vote:
        return Vote.SAMPLED


def decode(f: Fields, sub: DecodeSub) -> AlwaysSampleConfig:
    return AlwaysSampleConfig()


def build(pc: PolicyConfig, share: float, sub: BuildSub) -> Policy:
    return AlwaysSample(pc.name)


KIND = Kind("always_sample", frozenset(), decode, build)
