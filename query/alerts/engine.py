"""The alert evaluator: one process of a deployment evaluates every team's rules on their schedules.

* **One evaluator.** Every `maple api` runs an `Evaluator`; only the holder of the lease ``alerts`` in the
  metadata store evaluates and notifies. The lease is one row taken or renewed with a single conditional
  UPDATE (free, expired, or already ours), so two replicas never both hold it; each new holder gets a
  higher `term`. A holder renews every `api.alert_tick_s`; if it dies, another replica takes over once the
  lease expires (`api.alert_lease_s`).
* **Fenced writes.** A rule's result is written in a transaction that first re-checks the lease (holder,
  term, not expired) with an UPDATE on its row: a process that lost the lease while it was evaluating
  writes nothing, so it cannot record (or notify) a transition twice.
* **States.** Per rule and group: ok -> pending (the condition holds; `for_s` not yet passed) -> firing ->
  ok again, recorded as events (pending, firing, resolved, ok) with the value. A firing or resolved event
  makes one delivery per webhook of the rule, unless a silence covers it (the event is kept, marked
  silenced). The delivery rows are written in the same transaction as the event (an outbox), and sent by
  the notifier (query/alerts/notify.py).
* **Isolation.** A rule is evaluated through its team's restricted context: it reads its team's rows only.
* **Independence.** Rules run on `api.alert_workers` threads: a slow query delays only its own rule; a rule
  still running is not started again.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import case, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from query.alerts import evaluate
from query.alerts.notify import Notifier, dumps, event_body, payload
from query.alerts.rules import RuleSpec, holds
from query.auth import Principal
from query.context import Context
from query.errors import ApiError
from query.store import rowcount
from query.store.tables import (
    AlertEventRow,
    AlertRuleRow,
    AlertStateRow,
    DeliveryRow,
    LeaseRow,
    SilenceRow,
    TeamRow,
    WebhookRow,
)

log = logging.getLogger(__name__)
LEASE = "alerts"


@dataclass(frozen=True)
class Outcome:
    rule_id: int
    values: evaluate.Values | None
    error: str = ""
    seconds: float = 0.0


class Lease:
    """A named lease in the metadata store (see the module's docstring)."""

    def __init__(self, context: Context, name: str, holder: str, ttl_s: float) -> None:
        assert context.store is not None
        self.store = context.store
        self.name, self.holder, self.ttl_s = name, holder, ttl_s
        self.term: int | None = None

    def acquire(self, now: float) -> int | None:
        """Take or renew the lease; its term while held, None when another process holds it."""
        try:
            with self.store.session() as session:
                if session.get(LeaseRow, self.name) is None:
                    session.add(LeaseRow(name=self.name, holder="", expires_at=0.0, term=0))
        except IntegrityError:
            pass  # another process made the row first
        with self.store.session() as session:
            taken = rowcount(session.execute(update(LeaseRow).where(
                LeaseRow.name == self.name, or_(LeaseRow.holder == self.holder, LeaseRow.expires_at < now))
                .values(term=case((LeaseRow.holder == self.holder, LeaseRow.term), else_=LeaseRow.term + 1),
                        holder=self.holder, expires_at=now + self.ttl_s)))
            row = session.get(LeaseRow, self.name) if taken == 1 else None
            term = row.term if row is not None else None
        if term != self.term:
            log.info("alert evaluator %s: %s", self.holder, f"leading (term {term})" if term is not None
                     else "another process leads")
        self.term = term
        return term

    def fence(self, session: Session, now: float) -> bool:
        """In a writing transaction: True while this process still holds the lease (the row stays locked)."""
        if self.term is None:
            return False
        return rowcount(session.execute(update(LeaseRow).where(
            LeaseRow.name == self.name, LeaseRow.holder == self.holder, LeaseRow.term == self.term,
            LeaseRow.expires_at > now).values(holder=self.holder))) == 1

    def release(self) -> None:
        with self.store.session() as session:
            session.execute(update(LeaseRow).where(LeaseRow.name == self.name, LeaseRow.holder == self.holder)
                            .values(expires_at=0.0))
        self.term = None


class Evaluator:
    def __init__(self, base: Context, holder: str | None = None) -> None:
        assert base.store is not None
        self.base = base
        self.store = base.store
        api = base.settings.api
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease = Lease(base, LEASE, self.holder, api.alert_lease_s)
        self.notifier = Notifier(self.store, base.settings)
        self.probe = evaluate.PipelineProbe(base.settings, base.health)
        self._pool = ThreadPoolExecutor(api.alert_workers, thread_name_prefix="maple-alert")
        self._running: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.evaluated = 0

    # -- the loop --------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="maple-alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.notifier.close()
        try:
            if self.lease.term is not None:
                self.lease.release()
        except Exception:
            log.warning("could not release the alert lease", exc_info=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("alert evaluator tick failed")
            self._stop.wait(self.base.settings.api.alert_tick_s)

    def tick(self, now: float | None = None) -> list[Future[Any]]:
        """One step: hold the lease, start the due rules, send the due deliveries (futures of both)."""
        now = time.time() if now is None else now
        if self.lease.acquire(now) is None:
            return []
        futures: list[Future[Any]] = []
        with self.store.session() as session:
            due = session.scalars(select(AlertRuleRow.id).where(AlertRuleRow.enabled.is_(True),
                                                                 AlertRuleRow.next_eval_at <= now)
                                  .order_by(AlertRuleRow.next_eval_at)).all()
        for rule_id in due:
            with self._lock:
                if rule_id in self._running:
                    continue
                self._running.add(rule_id)
            futures.append(self._pool.submit(self._evaluate_and_apply, rule_id))
        futures += self.notifier.pump(now)
        return futures

    def run_due(self, now: float | None = None, timeout: float = 120.0) -> int:
        """A tick, waiting for what it started (tests and `maple bench alerts`); the rules evaluated."""
        before = self.evaluated
        for future in self.tick(now):
            future.result(timeout)
        return self.evaluated - before

    # -- one rule --------------------------------------------------------------------------------------

    def _evaluate_and_apply(self, rule_id: int) -> None:
        try:
            outcome = self.evaluate_rule(rule_id)
            if outcome is not None:
                self.apply(outcome, time.time())
        finally:
            with self._lock:
                self._running.discard(rule_id)

    def evaluate_rule(self, rule_id: int) -> Outcome | None:
        with self.store.session() as session:
            row = session.get(AlertRuleRow, rule_id)
            team = session.get(TeamRow, row.team_id) if row is not None else None
            if row is None or team is None:
                return None
            spec_json, team_slug, team_id = row.spec, team.slug, team.id
        started = time.perf_counter()
        try:
            spec = RuleSpec.model_validate_json(spec_json)
            condition = spec.condition
            if condition.kind == "pipeline":
                values = self.probe.values(condition)
            else:
                principal = Principal(team_slug, team_id, "viewer", key_prefix="alert-evaluator")
                ctx = self.base.for_principal(principal)
                now_ns = time.time_ns()
                values = (evaluate.search(ctx, condition, now_ns) if condition.kind == "search"
                          else evaluate.metric(ctx, condition, now_ns))
            error = ""
        except (ApiError, evaluate.EvaluationError, ValidationError) as exc:
            values, error = None, getattr(exc, "message", None) or str(exc)
        except Exception as exc:  # a bug, or ClickHouse gone: the rule says so and is tried again next interval
            log.exception("alert rule %d failed", rule_id)
            values, error = None, f"{type(exc).__name__}: {exc}"
        self.evaluated += 1
        return Outcome(rule_id, values, error[:2000], time.perf_counter() - started)

    def apply(self, outcome: Outcome, now: float) -> bool:
        """Write the outcome: states, events and deliveries, fenced by the lease. False when not written."""
        with self.store.session() as session:
            if not self.lease.fence(session, now):
                return False
            rule = session.get(AlertRuleRow, outcome.rule_id)
            if rule is None:
                return False
            spec = RuleSpec.model_validate_json(rule.spec)
            rule.last_eval_at, rule.next_eval_at = now, now + spec.interval_s
            rule.last_error = outcome.error
            if outcome.values is None:
                return True
            team = session.get(TeamRow, rule.team_id)
            states = {s.group_key: s for s in session.scalars(select(AlertStateRow).where(
                AlertStateRow.rule_id == rule.id))}
            for group in sorted(set(outcome.values) | set(states)):
                value = outcome.values.get(group)
                self._step(session, rule, spec, team.slug if team else "", states.get(group), group, value,
                           value is not None and holds(spec.condition, value), now)
        return True

    def _step(self, session: Session, rule: AlertRuleRow, spec: RuleSpec, team: str, state: AlertStateRow | None,
              group: str, value: float | None, active: bool, now: float) -> None:
        current = state.state if state is not None else "ok"
        target = current
        if active and current == "ok":
            target = "firing" if spec.for_s == 0 else "pending"
        elif active and current == "pending" and state is not None and now - state.since >= spec.for_s:
            target = "firing"
        elif not active and current in ("pending", "firing"):
            target = "ok"
        if state is None:
            if target == "ok" and value is None:
                return
            state = AlertStateRow(rule_id=rule.id, group_key=group, state="ok", since=now, value=value, updated_at=now)
            session.add(state)
        state.value, state.updated_at = value, now
        if target != current:
            event_state = "resolved" if current == "firing" and target == "ok" else target
            self._event(session, rule, spec, team, group, current, event_state, value, now)
            state.state, state.since = target, now
        if state.state == "ok" and value is None:
            session.delete(state)

    def _event(self, session: Session, rule: AlertRuleRow, spec: RuleSpec, team: str, group: str, previous: str,
               state: str, value: float | None, now: float) -> None:
        silenced = state in ("firing", "resolved") and self._silenced(session, rule, group, now)
        event = AlertEventRow(rule_id=rule.id, team_id=rule.team_id, group_key=group, from_state=previous,
                              to_state=state, at=now, value=value, silenced=silenced, term=self.lease.term or 0)
        session.add(event)
        session.flush()
        if state not in ("firing", "resolved") or silenced or not spec.webhooks:
            return
        body = event_body(event.id, team, {"id": rule.id, "name": rule.name, "kind": rule.kind}, group, state, value,
                          spec.condition.model_dump(), now)
        hooks = session.scalars(select(WebhookRow).where(WebhookRow.id.in_(spec.webhooks),
                                                         WebhookRow.team_id == rule.team_id,
                                                         WebhookRow.enabled.is_(True))).all()
        for hook in hooks:
            session.add(DeliveryRow(event_id=event.id, webhook_id=hook.id, team_id=rule.team_id, status="pending",
                                    attempts=0, next_attempt_at=now, payload=dumps(payload(hook.kind, body)),
                                    created_at=now))

    @staticmethod
    def _silenced(session: Session, rule: AlertRuleRow, group: str, now: float) -> bool:
        return session.scalar(select(SilenceRow.id).where(
            SilenceRow.team_id == rule.team_id, SilenceRow.starts_at <= now, SilenceRow.ends_at > now,
            or_(SilenceRow.rule_id.is_(None), SilenceRow.rule_id == rule.id),
            or_(SilenceRow.group_key.is_(None), SilenceRow.group_key == group)).limit(1)) is not None


def rule_dict(row: AlertRuleRow, states: list[AlertStateRow]) -> dict[str, Any]:
    spec = json.loads(row.spec)
    worst = max((s.state for s in states), key=("ok", "pending", "firing").index, default="ok")
    return {"id": row.id, **spec, "kind": row.kind, "state": worst, "created_by": row.created_by,
            "created_at": row.created_at, "updated_at": row.updated_at, "last_eval_at": row.last_eval_at,
            "next_eval_at": row.next_eval_at, "last_error": row.last_error,
            "groups": [{"group": s.group_key, "state": s.state, "since": s.since, "value": s.value} for s in states]}


def forget_states(session: Session, rule_id: int) -> None:
    session.execute(delete(AlertStateRow).where(AlertStateRow.rule_id == rule_id))
