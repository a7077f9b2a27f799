"""status_code: samples traces with at least one span whose status is one of `status_codes`."""

from __future__ import annotations

from dataclasses import dataclass

from processors.sampling.fields import Fields
from processors.sampling.policy import BuildSub, DecodeSub, Kind, Policy, PolicyConfig, Trace, Vote

# The Collector's names -> the StatusCode values stored in otel_traces.
STATUS = {"ERROR": "Error", "OK": "Ok", "UNSET": "Unset"}


@dataclass(frozen=True)
class StatusCodeConfig:
    status_codes: frozenset[str]  # as stored: Unset, Ok, Error


class StatusCode(Policy):
    def __init__(self, name: str, config: StatusCodeConfig) -> None:
        super().__init__(name)
        self.codes = config.status_codes

    def evaluate(self, trace: Trace, second: int) -> Vote:
        codes = self.codes
        return Vote.SAMPLED if any(cols["StatusCode"][i] in codes for cols, i in trace.spans) else Vote.NOT_SAMPLED


def decode(f: Fields, sub: DecodeSub) -> StatusCodeConfig:
    codes = set()
    for n, code in enumerate(f.items("status_codes")):
        if not isinstance(code, str) or code.upper() not in STATUS:
            raise f.fail(f"status_codes[{n}]", f"unknown status code {code!r}; accepted: ERROR, OK, UNSET")
        codes.add(STATUS[code.upper()])
    return StatusCodeConfig(frozenset(codes))


def build(pc: PolicyConfig, share: float, sub: BuildSub) -> Policy:
    return StatusCode(pc.name, pc.config)


KIND = Kind("status_code", frozenset({"status_codes"}), decode, build)
