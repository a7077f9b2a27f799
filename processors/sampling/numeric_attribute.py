"""numeric_attribute: samples traces where a span (or its resource) has a numeric `key` within
[min_value, max_value] (either bound may be left out); `invert_match` negates."""

from __future__ import annotations

from dataclasses import dataclass

from processors.sampling.fields import Fields
from processors.sampling.policy import BuildSub, DecodeSub, Kind, Policy, PolicyConfig, Trace, Vote, matched


@dataclass(frozen=True)
class NumericAttributeConfig:
    key: str
    min_value: float | None = None
    max_value: float | None = None
    invert_match: bool = False


class NumericAttribute(Policy):
    def __init__(self, name: str, config: NumericAttributeConfig) -> None:
        super().__init__(name)
        self.config = config

    def evaluate(self, trace: Trace, second: int) -> Vote:
        low, high = self.config.min_value, self.config.max_value
        hit = False
        for text in trace.values(self.config.key):
            try:
                number = float(text)
            except ValueError:
                continue
            if (low is None or number >= low) and (high is None or number <= high):
                hit = True
                break
        return matched(hit, self.config.invert_match)


def decode(f: Fields, sub: DecodeSub) -> NumericAttributeConfig:
    low, high = f.number("min_value", None), f.number("max_value", None)
    if low is not None and high is not None and low > high:
        raise f.fail("min_value", f"{low:g} is above max_value {high:g}; no value could match")
    return NumericAttributeConfig(f.text("key"), low, high, f.flag("invert_match"))


def build(pc: PolicyConfig, share: float, sub: BuildSub) -> Policy:
    return NumericAttribute(pc.name, pc.config)


KIND = Kind("numeric_attribute", frozenset({"key", "min_value", "max_value", "invert_match"}), decode, build)
