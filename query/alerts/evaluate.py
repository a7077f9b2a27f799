"""The value of each group of a rule now.

Search and metric rules read ClickHouse through the rule's team's context (query/context.py): the same
restricted reader as the team's own requests, so a rule sees only its team's rows. Pipeline rules read the
health monitor (lag, dead letters) and the ingest's Prometheus counters (refused requests); counts over a
window come from the evaluator's own recent measurements (`PipelineProbe`).
"""

from __future__ import annotations

import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from maple.settings import Settings
from query import logs, metrics, promql, traces
from query.alerts.rules import MetricCondition, PipelineCondition, SearchCondition
from query.context import Context
from query.errors import ApiError
from query.health import HealthMonitor
from query.logs import END, START
from query.timerange import NS, Range

METRIC_STEP_S = 60
REJECTIONS = "maple_ingest_rejections"


class EvaluationError(RuntimeError):
    """The rule could not be evaluated now (its message is shown on the rule); its states stay as they were."""


Values = dict[str, float | None]  # group key -> value (None: the group has no value now)


def group_key(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


def search(ctx: Context, condition: SearchCondition, now_ns: int) -> Values:
    if condition.signal == "logs":
        source = ctx.sources.get(condition.source, "logs")
        where = logs.build_filter(ctx, source, condition.q, [], [])
    else:
        source = ctx.sources.get(condition.source, "traces")
        where = traces.build_filter(ctx, source, condition.q, [], [], None, None, [])
    group = f"toString({source.spec.service})" if condition.group_by_service else "''"
    params = {**where.params, "start": now_ns - condition.window_s * NS, "end": now_ns}
    rows = ctx.reader.select(f"SELECT {group} AS g, count() AS c FROM {source.table} WHERE "
                             f"{source.time_filter(START, END)} AND ({where.sql}) GROUP BY g", params).rows
    values: Values = {group_key({"service": g}) if condition.group_by_service else "": float(c) for g, c in rows}
    if not condition.group_by_service:
        values.setdefault("", 0.0)
    return values


def metric(ctx: Context, condition: MetricCondition, now_ns: int) -> Values:
    plan = promql.parse(condition.query)
    rng = Range(now_ns - METRIC_STEP_S * NS, now_ns)
    try:
        series = metrics.evaluate(ctx, plan, rng, METRIC_STEP_S)
    except ApiError as exc:
        if exc.status == 404:  # no such metric in the range: no series, nothing holds
            return {}
        raise
    values: Values = {}
    for one in series:
        points = [v for _, v in one.points if v is not None]
        values[group_key(one.labels)] = points[-1] if points else None
    return values


@dataclass
class PipelineProbe:
    """The pipeline's measures, and a short history of the counters, to take increases over a window."""

    settings: Settings
    health: HealthMonitor | None
    history: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)

    def _increase(self, name: str, now: float, value: float, window_s: int) -> float:
        samples = self.history.setdefault(name, deque())
        samples.append((now, value))
        while samples and samples[0][0] < now - 7 * 86400:
            samples.popleft()
        base = next((v for t, v in samples if t >= now - window_s), value)
        return value - base if value >= base else value  # a drop is a restart (or a recreated topic)

    def ingest_urls(self) -> list[str]:
        if self.settings.api.ingest_metrics_urls:
            return list(self.settings.api.ingest_metrics_urls)
        ingest = self.settings.ingest
        host = "127.0.0.1" if ingest.host in ("0.0.0.0", "::", "") else ingest.host
        return [f"http://{host}:{ingest.http_port}/metrics"]

    def refusals(self) -> float:
        total, reached, errors = 0.0, 0, []
        for url in self.ingest_urls():
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    text = response.read().decode()
            except OSError as exc:
                errors.append(f"{url}: {exc}")
                continue
            reached += 1
            for family in text_string_to_metric_families(text):
                if family.name == REJECTIONS:
                    total += sum(s.value for s in family.samples if s.name == f"{REJECTIONS}_total")
        if not reached:
            raise EvaluationError("no ingest /metrics answered: " + "; ".join(errors))
        return total

    def values(self, condition: PipelineCondition, now: float | None = None) -> Values:
        now = time.time() if now is None else now
        if condition.measure == "ingest_refusals":
            return {"": self._increase("ingest_refusals", now, self.refusals(), condition.window_s)}
        if self.health is None:
            raise EvaluationError("the health monitor is off in this process (no Kafka measures)")
        snapshot = self.health.snapshot()
        if not snapshot.kafka.ok:
            raise EvaluationError(f"Kafka is not reachable: {snapshot.kafka.detail}")
        if condition.measure == "lag_seconds":
            return {group_key({"group": lag.group}): lag.seconds for lag in snapshot.lag}
        if snapshot.dead_letters.count is None:
            raise EvaluationError("the dead-letter topic could not be read")
        return {"": self._increase("dead_letters", now, float(snapshot.dead_letters.count), condition.window_s)}
