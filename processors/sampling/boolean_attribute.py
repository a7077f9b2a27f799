"""boolean_attribute: samples traces where a span (or its resource) has `key` equal to `value`
(true/false, case-insensitive as stored); `invert_match` negates."""

from __future__ import annotations

from dataclasses import dataclass

from processors.sampling.fields import Fields
from processors.sampling.policy import BuildSub, DecodeSub, Kind, Policy, PolicyConfig, Trace, Vote, matched


@dataclass(frozen=True)
class BooleanAttributeConfig:
    key: str
    value: bool
    invert_match: bool = False


class BooleanAttribute(Policy):
    def __init__(self, name: str, config: BooleanAttributeConfig) -> None:
        super().__init__(name)
        self.key, self.invert = config.key, config.invert_match
        self.wanted = "true" if config.value else "false"

    def evaluate(self, trace: Trace, second: int) -> Vote:
        return matched(any(v.lower() == self.wanted for v in trace.values(self.key)), self.invert)


def decode(f: Fields, sub: DecodeSub) -> BooleanAttributeConfig:
    return BooleanAttributeConfig(f.text("key"), f.flag("value"), f.flag("invert_match"))


def build(pc: PolicyConfig, share: float, sub: BuildSub) -> Policy:
    return BooleanAttribute(pc.name, pc.config)


KIND = Kind("boolean_attribute", frozenset({"key", "value", "invert_match"}), decode, build)
