"""and: samples a trace when every sub-policy samples it (asked in order, until one does not). Its weight is
the product of theirs (each keeps the trace independently of the others)."""

from __future__ import annotations

from dataclasses import dataclass

from processors.sampling.fields import Fields
from processors.sampling.policy import BuildSub, DecodeSub, Kind, Policy, PolicyConfig, Trace, Vote


@dataclass(frozen=True)
class AndConfig:
    and_sub_policy: tuple[PolicyConfig, ...]


class And(Policy):
    def __init__(self, name: str, policies: list[Policy]) -> None:
        super().__init__(name)
        self.policies = policies

    def weigh(self, trace: Trace, second: int) -> tuple[Vote, float]:
        weight = 1.0
        for policy in self.policies:
            vote, policy_weight = policy.weigh(trace, second)
            if vote != Vote.SAMPLED:
                return Vote.NOT_SAMPLED, 1.0
            weight *= policy_weight
        return Vote.SAMPLED, weight


def sub_policies(f: Fields, key: str, sub: DecodeSub) -> tuple[PolicyConfig, ...]:
    return tuple(sub(spec, f"{f.path}.{key}[{n}]") for n, spec in enumerate(f.items(key)))


def decode(f: Fields, sub: DecodeSub) -> AndConfig:
    return AndConfig(sub_policies(f, "and_sub_policy", sub))


def build(pc: PolicyConfig, share: float, sub: BuildSub) -> Policy:
    return And(pc.name, [sub(p, share) for p in pc.config.and_sub_policy])


KIND = Kind("and", frozenset({"and_sub_policy"}), decode, build, combinator=True)
