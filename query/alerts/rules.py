"""What an alert rule is: a condition on a search, a metric query or the pipeline, compared with a threshold,
evaluated every `interval_s`, firing after it held for `for_s`, notifying webhooks.

A rule's groups: a search rule grouped by service has one group per service (a service that stops matching
counts 0 and resolves); a metric rule has one per series; a pipeline rule one (or one per consumer group for
lag). Each group has its own state."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import Field

from query.models import Model, RowId

Op = Literal[">", ">=", "<", "<=", "==", "!="]
# A finite number: JSON's 1e400 reads as infinity, which the spec's JSON in the metadata store writes as
# null, and a rule whose stored spec no longer validates cannot be listed, changed or evaluated.
Threshold = Annotated[float, Field(allow_inf_nan=False)]
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne}


class SearchCondition(Model):
    """The number of matching log records (or spans) in the last `window_s`, per service or in all."""

    kind: Literal["search"] = "search"
    signal: Literal["logs", "traces"] = "logs"
    source: str | None = Field(None, max_length=64, description="a source name (default: Maple's table)")
    q: str = Field("", max_length=4000, description="the search (docs/query.md), e.g. level:error")
    window_s: int = Field(300, ge=10, le=7 * 86400)
    group_by_service: bool = True
    op: Op = ">"
    threshold: Threshold = 0


class MetricCondition(Model):
    """The newest value of each series of a PromQL query (the subset of docs/query.md): a value, or a rate
    with rate()/increase()."""

    kind: Literal["metric"] = "metric"
    query: str = Field(max_length=4000, description="e.g. sum by (service_name) (rate(traces_span_metrics_calls[5m]))")
    op: Op = ">"
    threshold: Threshold = 0


class PipelineCondition(Model):
    """Maple's own health: consumer lag in seconds (per group), dead letters or ingest refusals added in the
    last `window_s`."""

    kind: Literal["pipeline"] = "pipeline"
    measure: Literal["lag_seconds", "dead_letters", "ingest_refusals"]
    window_s: int = Field(300, ge=10, le=86400, description="dead_letters and ingest_refusals: the window")
    op: Op = ">"
    threshold: Threshold = 0


Condition = Annotated[SearchCondition | MetricCondition | PipelineCondition, Field(discriminator="kind")]


class RuleSpec(Model):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    condition: Condition
    interval_s: int = Field(60, ge=1, le=86400, description="how often it is evaluated")
    for_s: int = Field(0, ge=0, le=86400, description="how long the condition must hold before it fires (pending)")
    webhooks: list[RowId] = Field(default_factory=list, max_length=20, description="ids of the team's webhooks")
    enabled: bool = True


def holds(condition: SearchCondition | MetricCondition | PipelineCondition, value: float) -> bool:
    return OPERATORS[condition.op](value, condition.threshold)


# -- the API's answers -----------------------------------------------------------------------------------


class GroupState(Model):
    group: str = Field(description="service=..., a series' labels, group=... (lag), or '' for the whole rule")
    state: Literal["ok", "pending", "firing"]
    since: float = Field(description="Unix seconds: when it entered the state")
    value: float | None


class RuleInfo(RuleSpec):
    id: int
    kind: Literal["search", "metric", "pipeline"]
    state: Literal["ok", "pending", "firing"] = Field(description="the worst state of its groups")
    groups: list[GroupState]
    created_by: str
    created_at: float
    updated_at: float
    last_eval_at: float | None
    next_eval_at: float
    last_error: str = Field(description="why the last evaluation failed; empty when it worked")


class RulesResponse(Model):
    rules: list[RuleInfo]


class Preview(Model):
    values: dict[str, float | None] = Field(description="group -> value now")
    holding: list[str] = Field(description="the groups for which the condition holds now")
    error: str = ""


class Attempt(Model):
    at: float
    status_code: int | None
    error: str
    duration_ms: float


class Delivery(Model):
    id: int
    webhook_id: int
    webhook: str
    status: Literal["pending", "delivered", "failed"]
    attempts: list[Attempt]
    next_attempt_at: float | None


class Event(Model):
    id: int
    rule_id: int
    group: str
    from_state: str
    to_state: Literal["ok", "pending", "firing", "resolved"]
    at: float
    value: float | None
    silenced: bool
    deliveries: list[Delivery]


class HistoryResponse(Model):
    events: list[Event]


class WebhookSpec(Model):
    name: str = Field(min_length=1, max_length=200)
    url: str = Field(min_length=8, max_length=2000)
    kind: Literal["json", "slack"] = "json"
    enabled: bool = True


class WebhookInfo(WebhookSpec):
    id: int
    created_at: float


class WebhookCreated(Model):
    webhook: WebhookInfo
    secret: str = Field(description="the HMAC key of X-Maple-Signature: shown this once")


class WebhooksResponse(Model):
    webhooks: list[WebhookInfo]


class SilenceSpec(Model):
    rule_id: RowId | None = Field(None, description="one rule (default: every rule of the team)")
    group: str | None = Field(None, max_length=500, description="one group (default: every group)")
    ends_at: str = Field(max_length=64, description="RFC 3339, Unix time, or a duration from now: 30m, 2h, 1d")
    comment: str = Field("", max_length=2000)


class SilenceInfo(Model):
    id: int
    rule_id: int | None
    group: str | None
    comment: str
    created_by: str
    starts_at: float
    ends_at: float
    active: bool


class SilencesResponse(Model):
    silences: list[SilenceInfo]
