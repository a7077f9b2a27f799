"""string_attribute: samples traces where a span (or its resource) has `key` equal to one of `values`, or
matching one of them as regular expressions with `enabled_regex_matching`; `invert_match` negates."""

from __future__ import annotations

import re
from dataclasses import dataclass

from processors.sampling.fields import Fields
from processors.sampling.policy import BuildSub, DecodeSub, Kind, Policy, PolicyConfig, Trace, Vote, matched


@dataclass(frozen=True)
class StringAttributeConfig:
    key: str
    values: tuple[str, ...]
    enabled_regex_matching: bool = False
    invert_match: bool = False


class StringAttribute(Policy):
    def __init__(self, name: str, config: StringAttributeConfig) -> None:
        super().__init__(name)
        self.key, self.invert = config.key, config.invert_match
        self._patterns = [re.compile(v) for v in config.values] if config.enabled_regex_matching else []
        self._set = frozenset(config.values)

    def evaluate(self, trace: Trace, second: int) -> Vote:
        found = trace.values(self.key)
        if self._patterns:
            hit = any(p.search(v) for v in found for p in self._patterns)
        else:
            hit = any(v in self._set for v in found)
        return matched(hit, self.invert)


def decode(f: Fields, sub: DecodeSub) -> StringAttributeConfig:
    values = tuple(str(v) for v in f.items("values"))
    regex = f.flag("enabled_regex_matching")
    if regex:
        for n, value in enumerate(values):
            try:
                re.compile(value)
            except re.error as exc:
                raise f.fail(f"values[{n}]", f"{value!r} is not a valid regular expression: {exc}") from None
    return StringAttributeConfig(f.text("key"), values, regex, f.flag("invert_match"))


def build(pc: PolicyConfig, share: float, sub: BuildSub) -> Policy:
    return StringAttribute(pc.name, pc.config)


# cache_max_size is accepted for the Collector's YAML; Maple compiles the patterns once and needs no cache.
KIND = Kind("string_attribute",
            frozenset({"key", "values", "enabled_regex_matching", "cache_max_size", "invert_match"}), decode, build)
