"""`maple bench alerts`: what evaluating alert rules costs, on the embedded engine.

It generates a data set inside ClickHouse (the generator of `maple bench query`: logs, spans and the RED
metrics derived from them, over the last hour), creates `--rules` rules for one team in a private metadata
store (a mix of log searches, span searches and PromQL metric rules, each over a 5-minute window), and runs
the evaluator the API runs (query/alerts/engine.py) on them:

* **throughput**: every rule made due at once, `--rounds` times; rules evaluated per second with the
  evaluator's `api.alert_workers` threads, and CPU ms per rule of this process (the evaluator, its metadata
  store writes) and of the embedded ClickHouse host (from /proc, which other work on a shared machine does not
  inflate the way it inflates wall time);
* **per kind**: each rule evaluated alone, one at a time: p50/p95 milliseconds.

Pipeline rules are left out: they read Kafka's offsets (the health monitor), not ClickHouse.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import update

from apps.bench.query import SPANS_PER_TRACE, _cpu_ms, generate, start_host
from apps.bench.stats import percentile
from maple import clickhouse
from maple.settings import Settings
from maple.tenants import DEFAULT_TENANT

SEARCHES = ("level:error", "timeout", "\"connection refused\"", "level:warn service:checkout", "http.status_code:500",
            "retrying payment", "-level:info", "user.id:42")
SPAN_SEARCHES = ("status:error", "duration:>1000", "name:\"GET /\"", "kind:server status:error")
METRICS = ("sum by (service_name) (rate(traces_span_metrics_calls[5m]))",
           "histogram_quantile(0.95, sum by (le, service_name) (rate(traces_span_metrics_duration_bucket[5m])))",
           'sum by (service_name) (increase(traces_span_metrics_calls{status_code="STATUS_CODE_ERROR"}[5m]))')


def rule_specs(count: int) -> list[dict[str, Any]]:
    """`count` rules: half log searches, a fifth span searches, the rest metric rules (kinds interleaved)."""
    specs: list[dict[str, Any]] = []
    for n in range(count):
        kind = n % 10
        if kind < 5:
            condition: dict[str, Any] = {"kind": "search", "signal": "logs", "q": SEARCHES[n % len(SEARCHES)],
                                         "window_s": 300, "group_by_service": n % 2 == 0, "op": ">", "threshold": 10}
        elif kind < 7:
            condition = {"kind": "search", "signal": "traces", "q": SPAN_SEARCHES[n % len(SPAN_SEARCHES)],
                         "window_s": 300, "group_by_service": True, "op": ">", "threshold": 5}
        else:
            condition = {"kind": "metric", "query": METRICS[n % len(METRICS)], "op": ">", "threshold": 1}
        specs.append({"name": f"rule {n:03d}", "condition": condition, "interval_s": 60, "for_s": 0})
    return specs


def run(settings: Settings, *, rules: int, rounds: int, logs: int, spans: int, database: str, reuse: bool,
        say: Callable[[str], None]) -> dict[str, Any]:
    from query.alerts.engine import Evaluator
    from query.alerts.rules import RuleSpec
    from query.auth import Auth
    from query.context import Context
    from query.reader import Reader
    from query.sources import Sources
    from query.store import Store
    from query.store.tables import AlertRuleRow, TeamRow

    own_host = start_host(settings, say)
    try:
        data = generate(settings, database, logs, spans, 1.0, reuse, say)
        host = clickhouse.running_host(settings)
        host_pid = int(host["pid"]) if host else None
        with tempfile.TemporaryDirectory(prefix="maple-bench-alerts-") as tmp:
            store = Store(f"sqlite:///{Path(tmp) / 'metadata.db'}")
            store.migrate()
            reader = Reader(settings, data.database)
            base = Context(settings, reader, Sources(reader, store), store, auth=Auth(settings, store))
            now = time.time()
            with store.session() as session:
                team = session.query(TeamRow).filter(TeamRow.slug == DEFAULT_TENANT).one()
                for spec in rule_specs(rules):
                    parsed = RuleSpec.model_validate(spec)
                    session.add(AlertRuleRow(team_id=team.id, name=parsed.name, kind=parsed.condition.kind,
                                             spec=parsed.model_dump_json(), enabled=True, created_by="bench",
                                             created_at=now, updated_at=now, next_eval_at=0.0))
            evaluator = Evaluator(base, holder="bench")
            say(f"{rules} rules; warm-up round")
            evaluator.run_due()
            with store.session() as session:
                kinds = {row.id: (row.kind, RuleSpec.model_validate_json(row.spec).condition)
                         for row in session.query(AlertRuleRow)}
                errors = [row.last_error for row in session.query(AlertRuleRow) if row.last_error]
            if errors:
                raise RuntimeError(f"{len(errors)} rule(s) failed to evaluate, e.g.: {errors[0]}")
            throughput = []
            for index in range(rounds):
                with store.session() as session:
                    session.execute(update(AlertRuleRow).values(next_eval_at=0.0))
                cpu = (time.process_time(), _cpu_ms(host_pid))
                began = time.perf_counter()
                evaluated = evaluator.run_due()
                wall = time.perf_counter() - began
                own_ms = (time.process_time() - cpu[0]) * 1000
                host_ms = _cpu_ms(host_pid) - cpu[1]
                throughput.append({"round": index + 1, "rules": evaluated, "seconds": round(wall, 3),
                                   "rules_per_s": round(evaluated / wall, 1),
                                   "evaluator_cpu_ms_per_rule": round(own_ms / max(evaluated, 1), 2),
                                   "clickhouse_cpu_ms_per_rule": round(host_ms / max(evaluated, 1), 2)})
                say(f"  round {index + 1}: {evaluated} rules in {wall:.2f} s = {evaluated / wall:.1f} rules/s")
            single: dict[str, list[float]] = {}
            for rule_id, (kind, condition) in sorted(kinds.items()):
                label = f"{kind} ({getattr(condition, 'signal', 'promql')})"
                began = time.perf_counter()
                outcome = evaluator.evaluate_rule(rule_id)
                assert outcome is not None and not outcome.error, outcome
                single.setdefault(label, []).append((time.perf_counter() - began) * 1000)
            evaluator.stop()
            reader.close()
            store.close()
        median = statistics.median(r["rules_per_s"] for r in throughput)
        return {"rules": rules, "workers": settings.api.alert_workers, "rounds": throughput,
                "median_rules_per_s": median,
                "per_kind": {label: {"rules": len(ms), "p50_ms": round(statistics.median(ms), 1),
                                     "p95_ms": round(percentile(ms, 0.95), 1)} for label, ms in single.items()},
                "data": {"database": data.database, "logs": data.logs, "spans": data.spans,
                         "spans_per_trace": SPANS_PER_TRACE},
                "load_average": os.getloadavg()}
    finally:
        if own_host is not None:
            own_host.terminate()
            own_host.wait(60)
