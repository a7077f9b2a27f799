"""composite: sub-policies in `policy_order`; the first that samples decides, within its share of
`max_total_spans_per_second` (as in the Collector: over its share the trace is not sampled, and later
sub-policies are not asked). A share is `percent` of the total; percent 0 means an equal share of the total;
a sub-policy without an entry in `rate_allocation` gets none. A trace it samples weighs the sub-policy's
weight times the effective ratios of the budgets it passed (see rate_limiting)."""

from __future__ import annotations

from dataclasses import dataclass

from processors.sampling.and_policy import sub_policies
from processors.sampling.fields import Fields, per_partition
from processors.sampling.policy import BuildSub, DecodeSub, Kind, Policy, PolicyConfig, Trace, Vote
from processors.sampling.rate_limiting import SecondBudget


@dataclass(frozen=True)
class CompositeConfig:
    max_total_spans_per_second: float
    policy_order: tuple[PolicyConfig, ...]            # the sub-policies, in the order they are asked
    rate_allocation: tuple[tuple[str, float], ...]    # (sub-policy name, percent)


class Composite(Policy):
    def __init__(self, name: str, total: float, ordered: list[Policy], allocation: dict[str, float]) -> None:
        super().__init__(name)
        self.total = SecondBudget(total)
        self.ordered = ordered
        equal = total / max(len(ordered), 1)
        self.budgets = {p.name: SecondBudget((total * allocation[p.name] / 100.0 if allocation[p.name] else equal)
                                             if p.name in allocation else 0.0) for p in ordered}

    def weigh(self, trace: Trace, second: int) -> tuple[Vote, float]:
        spans = trace.span_count
        for policy in self.ordered:
            vote, weight = policy.weigh(trace, second)
            if vote != Vote.SAMPLED:
                continue
            budget = self.budgets[policy.name]
            if budget.admit(spans, second) and self.total.admit(spans, second):
                return Vote.SAMPLED, weight * budget.ratio * self.total.ratio
            return Vote.NOT_SAMPLED, 1.0
        return Vote.NOT_SAMPLED, 1.0


def decode(f: Fields, sub: DecodeSub) -> CompositeConfig:
    total = f.number("max_total_spans_per_second", minimum=1)
    listed = sub_policies(f, "composite_sub_policy", sub)
    subs = {p.name: p for p in listed}
    if len(subs) != len(listed):
        raise f.fail("composite_sub_policy", "sub-policy names must be unique")
    order = f.block.get("policy_order", list(subs))
    if not isinstance(order, list) or not all(isinstance(n, str) for n in order):
        raise f.fail("policy_order", "expected a list of sub-policy names")
    for name in order:
        if name not in subs:
            raise f.fail("policy_order", f"names {name!r}, which is not a composite_sub_policy")
    allocation: dict[str, float] = {}
    for n, entry in enumerate(f.block.get("rate_allocation") or []):
        item = Fields(entry, f"{f.path}.rate_allocation[{n}]", {"policy", "percent"})
        policy = item.text("policy")
        if policy not in subs:
            raise item.fail("policy", f"{policy!r} is not a composite_sub_policy")
        allocation[policy] = item.number("percent", minimum=0)
    if sum(allocation.values()) > 100:
        raise f.fail("rate_allocation", "percentages add up to more than 100")
    return CompositeConfig(total, tuple(subs[name] for name in order), tuple(allocation.items()))


def build(pc: PolicyConfig, share: float, sub: BuildSub) -> Policy:
    config: CompositeConfig = pc.config
    total = per_partition(config.max_total_spans_per_second, share, f"{pc.path}.composite.max_total_spans_per_second")
    return Composite(pc.name, total, [sub(p, share) for p in config.policy_order], dict(config.rate_allocation))


KIND = Kind("composite", frozenset({"max_total_spans_per_second", "policy_order", "composite_sub_policy",
                                    "rate_allocation"}), decode, build, combinator=True)
