"""probabilistic: samples a fixed share of trace ids, by the Collector's hash (FNV-1a 64 over salt + trace
id bytes), so the same salt and percentage pick the same traces as a Collector would, and a re-decision
after a restart agrees. A trace it samples at p% weighs 100/p."""

from __future__ import annotations

from dataclasses import dataclass

from maple.native import core
from processors.sampling.fields import Fields
from processors.sampling.policy import BuildSub, DecodeSub, Kind, Policy, PolicyConfig, Trace, Vote

DEFAULT_SALT = "default-hash-seed"
_FNV_OFFSET, _FNV_PRIME, _MASK64 = 0xCBF29CE484222325, 0x100000001B3, 2 ** 64 - 1


def fnv1a64(data: bytes) -> int:
    value = _FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV_PRIME) & _MASK64
    return value


# The same hash compiled, when the core is built: a Python loop per byte is most of a decision's cost.
_hash = core.fnv1a64 if core is not None else fnv1a64


@dataclass(frozen=True)
class ProbabilisticConfig:
    sampling_percentage: float
    hash_salt: str = DEFAULT_SALT


class Probabilistic(Policy):
    def __init__(self, name: str, config: ProbabilisticConfig) -> None:
        super().__init__(name)
        percentage = min(max(config.sampling_percentage, 0.0), 100.0)
        self._threshold = int(percentage / 100.0 * _MASK64)
        self._weight = 100.0 / percentage if percentage else 0.0  # nothing is sampled at 0%
        self._salt = config.hash_salt.encode()

    def weigh(self, trace: Trace, second: int) -> tuple[Vote, float]:
        try:
            trace_bytes = bytes.fromhex(trace.trace_id)
        except ValueError:
            trace_bytes = trace.trace_id.encode()
        if _hash(self._salt + trace_bytes) <= self._threshold:
            return Vote.SAMPLED, self._weight
        return Vote.NOT_SAMPLED, 1.0


def decode(f: Fields, sub: DecodeSub) -> ProbabilisticConfig:
    # An empty salt means the default, as in the Collector, so both pick the same traces.
    return ProbabilisticConfig(f.number("sampling_percentage", minimum=0), f.text("hash_salt", "") or DEFAULT_SALT)


def build(pc: PolicyConfig, share: float, sub: BuildSub) -> Policy:
    return Probabilistic(pc.name, pc.config)


KIND = Kind("probabilistic", frozenset({"sampling_percentage", "hash_salt"}), decode, build)
