"""drop: drops a trace when every sub-policy matches it; this overrides every other policy's vote."""

from __future__ import annotations

from dataclasses import dataclass

from processors.sampling.and_policy import And, sub_policies
from processors.sampling.fields import Fields
from processors.sampling.policy import BuildSub, DecodeSub, Kind, Policy, PolicyConfig, Trace, Vote


@dataclass(frozen=True)
class DropConfig:
    drop_sub_policy: tuple[PolicyConfig, ...]


class Drop(And):
    def weigh(self, trace: Trace, second: int) -> tuple[Vote, float]:
        matched = super().weigh(trace, second)[0] == Vote.SAMPLED
        return (Vote.DROPPED if matched else Vote.NOT_SAMPLED), 1.0


def decode(f: Fields, sub: DecodeSub) -> DropConfig:
    return DropConfig(sub_policies(f, "drop_sub_policy", sub))


def build(pc: PolicyConfig, share: float, sub: BuildSub) -> Policy:
    return Drop(pc.name, [sub(p, share) for p in pc.config.drop_sub_policy])


KIND = Kind("drop", frozenset({"drop_sub_policy"}), decode, build, combinator=True)
