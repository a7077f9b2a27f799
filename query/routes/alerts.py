"""/api/v1/alerts (rules, their states and history, a preview), /api/v1/webhooks and /api/v1/silences, per team.

Viewers read; editors change rules and silences; admins manage webhooks (they hold signing secrets and
decide where Maple sends data). Everything is the caller's team's: another team's ids are not found."""

from __future__ import annotations

import re
import secrets
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from query import promql
from query.alerts import evaluate
from query.alerts.engine import forget_states, rule_dict
from query.alerts.notify import TargetError, check_target
from query.alerts.rules import (
    Attempt,
    Delivery,
    Event,
    HistoryResponse,
    Preview,
    RuleInfo,
    RuleSpec,
    RulesResponse,
    SilenceInfo,
    SilenceSpec,
    SilencesResponse,
    WebhookCreated,
    WebhookInfo,
    WebhookSpec,
    WebhooksResponse,
    holds,
)
from query.context import Context, context
from query.errors import ApiError, bad_request, not_found
from query.models import MAX_ID
from query.routes.access import AUTH_ERRORS
from query.store import Store
from query.store.tables import (
    AlertEventRow,
    AlertRuleRow,
    AlertStateRow,
    DeliveryAttemptRow,
    DeliveryRow,
    SilenceRow,
    WebhookRow,
)
from query.teams import audit
from query.timerange import parse_time

router = APIRouter(responses={**AUTH_ERRORS, 409: AUTH_ERRORS[400]})

Ctx = Annotated[Context, Depends(context)]
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
DURATION = re.compile(r"(\d+)([smhdw])")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _store(ctx: Context) -> Store:
    if ctx.store is None:
        raise ApiError(503, "unavailable", "the metadata store is not open")
    return ctx.store


def _check(ctx: Context, spec: RuleSpec) -> None:
    """Refuse a rule that could not be evaluated: a bad search, PromQL or webhook (400 naming the field)."""
    condition = spec.condition
    if condition.kind == "search":
        try:
            evaluate.search(ctx, condition.model_copy(update={"window_s": 10}), time.time_ns())
        except ApiError as exc:
            if exc.status >= 500:
                raise
            raise ApiError(400, exc.code, f"condition.q: {exc.message}", field="condition.q") from exc
    elif condition.kind == "metric":
        try:
            promql.parse(condition.query)
        except ApiError as exc:
            raise ApiError(400, exc.code, f"condition.query: {exc.message}", field="condition.query") from exc
    if spec.webhooks:
        with _store(ctx).session() as session:
            found = set(session.scalars(select(WebhookRow.id).where(WebhookRow.id.in_(spec.webhooks),
                                                                    WebhookRow.team_id == ctx.who.team_id)))
        missing = sorted(set(spec.webhooks) - found)
        if missing:
            raise bad_request(f"webhooks: no webhook {missing[0]} in team {ctx.who.team}", "webhooks")


def _rule(session: Any, ctx: Context, rule_id: int) -> AlertRuleRow:
    row = session.get(AlertRuleRow, rule_id)
    if row is None or row.team_id != ctx.who.team_id:
        raise not_found(f"no alert rule {rule_id}", "rule_id")
    return row


def _info(session: Any, row: AlertRuleRow) -> RuleInfo:
    states = list(session.scalars(select(AlertStateRow).where(AlertStateRow.rule_id == row.id)
                                  .order_by(AlertStateRow.group_key)))
    return RuleInfo.model_validate(rule_dict(row, states))


def _audit(ctx: Context, session: Any, action: str, target: str, detail: dict[str, Any] | None = None) -> None:
    audit(session, ctx.who.actor, action, target, team_id=ctx.who.team_id, detail=detail, source=ctx.source)


# -- rules ---------------------------------------------------------------------------------------------


@router.get("/alerts", response_model=RulesResponse, tags=["alerts"], summary="the team's alert rules and states")
def rules(ctx: Ctx) -> RulesResponse:
    with _store(ctx).session() as session:
        rows = session.scalars(select(AlertRuleRow).where(AlertRuleRow.team_id == ctx.who.team_id)
                               .order_by(AlertRuleRow.name)).all()
        return RulesResponse(rules=[_info(session, row) for row in rows])


@router.post("/alerts", response_model=RuleInfo, status_code=201, tags=["alerts"], summary="create an alert rule")
def create_rule(ctx: Ctx, spec: RuleSpec) -> RuleInfo:
    who = ctx.require("editor", "alerts.create")
    _check(ctx, spec)
    now = time.time()
    try:
        with _store(ctx).session() as session:
            row = AlertRuleRow(team_id=who.team_id, name=spec.name, kind=spec.condition.kind,
                               spec=spec.model_dump_json(), enabled=spec.enabled, created_by=who.actor,
                               created_at=now, updated_at=now, next_eval_at=0.0, last_error="")
            session.add(row)
            session.flush()
            _audit(ctx, session, "alert.create", spec.name, {"id": row.id, "kind": spec.condition.kind})
            return _info(session, row)
    except IntegrityError:
        raise ApiError(409, "conflict", f"name: an alert rule {spec.name!r} exists already", field="name") from None


@router.get("/alerts/{rule_id}", response_model=RuleInfo, tags=["alerts"], summary="one alert rule")
def get_rule(ctx: Ctx, rule_id: Id) -> RuleInfo:
    with _store(ctx).session() as session:
        return _info(session, _rule(session, ctx, rule_id))


@router.put("/alerts/{rule_id}", response_model=RuleInfo, tags=["alerts"],
            summary="replace an alert rule (a changed condition starts its states afresh)")
def update_rule(ctx: Ctx, rule_id: Id, spec: RuleSpec) -> RuleInfo:
    ctx.require("editor", "alerts.update")
    _check(ctx, spec)
    try:
        with _store(ctx).session() as session:
            row = _rule(session, ctx, rule_id)
            if RuleSpec.model_validate_json(row.spec).condition != spec.condition:
                forget_states(session, row.id)
            row.name, row.kind, row.spec = spec.name, spec.condition.kind, spec.model_dump_json()
            row.enabled = spec.enabled
            row.updated_at, row.next_eval_at = time.time(), 0.0
            _audit(ctx, session, "alert.update", spec.name, {"id": row.id})
            return _info(session, row)
    except IntegrityError:
        raise ApiError(409, "conflict", f"name: an alert rule {spec.name!r} exists already", field="name") from None


@router.delete("/alerts/{rule_id}", status_code=204, response_class=Response, tags=["alerts"],
               summary="delete an alert rule with its history")
def delete_rule(ctx: Ctx, rule_id: Id) -> Response:
    ctx.require("editor", "alerts.delete")
    with _store(ctx).session() as session:
        row = _rule(session, ctx, rule_id)
        _audit(ctx, session, "alert.delete", row.name, {"id": row.id})
        session.delete(row)
    return Response(status_code=204)


@router.get("/alerts/{rule_id}/history", response_model=HistoryResponse, tags=["alerts"],
            summary="the rule's state changes, newest first, with their webhook deliveries and every attempt")
def history(ctx: Ctx, rule_id: Id, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> HistoryResponse:
    with _store(ctx).session() as session:
        _rule(session, ctx, rule_id)
        events = session.scalars(select(AlertEventRow).where(AlertEventRow.rule_id == rule_id)
                                 .order_by(AlertEventRow.id.desc()).limit(limit)).all()
        ids = [e.id for e in events]
        deliveries = session.execute(select(DeliveryRow, WebhookRow.name).join(
            WebhookRow, WebhookRow.id == DeliveryRow.webhook_id).where(DeliveryRow.event_id.in_(ids))).all()
        attempts: dict[int, list[Attempt]] = {}
        for a in session.scalars(select(DeliveryAttemptRow).where(DeliveryAttemptRow.delivery_id.in_(
                [d.id for d, _ in deliveries])).order_by(DeliveryAttemptRow.id)):
            attempts.setdefault(a.delivery_id, []).append(Attempt(at=a.at, status_code=a.status_code, error=a.error,
                                                                  duration_ms=a.duration_ms))
        by_event: dict[int, list[Delivery]] = {}
        for d, name in deliveries:
            by_event.setdefault(d.event_id, []).append(Delivery(
                id=d.id, webhook_id=d.webhook_id, webhook=name, status=d.status,
                attempts=attempts.get(d.id, []), next_attempt_at=d.next_attempt_at if d.status == "pending" else None))
        return HistoryResponse(events=[Event(id=e.id, rule_id=e.rule_id, group=e.group_key, from_state=e.from_state,
                                             to_state=e.to_state, at=e.at, value=e.value,
                                             silenced=e.silenced, deliveries=by_event.get(e.id, []))
                                       for e in events])


@router.post("/alerts/preview", response_model=Preview, tags=["alerts"],
             summary="evaluate a rule's condition now, without keeping anything")
def preview(ctx: Ctx, spec: RuleSpec) -> Preview:
    ctx.require("editor", "alerts.preview")
    condition = spec.condition
    try:
        if condition.kind == "search":
            values = evaluate.search(ctx, condition, time.time_ns())
        elif condition.kind == "metric":
            values = evaluate.metric(ctx, condition, time.time_ns())
        else:
            values = evaluate.PipelineProbe(ctx.settings, ctx.health).values(condition)
    except evaluate.EvaluationError as exc:
        return Preview(values={}, holding=[], error=str(exc))
    return Preview(values=values, holding=sorted(g for g, v in values.items() if v is not None and holds(condition, v)))


# -- webhooks ------------------------------------------------------------------------------------------


def _webhook(row: WebhookRow) -> WebhookInfo:
    return WebhookInfo(id=row.id, name=row.name, url=row.url, kind=row.kind, enabled=row.enabled,
                       created_at=row.created_at)


@router.get("/webhooks", response_model=WebhooksResponse, tags=["webhooks"], summary="the team's webhooks")
def webhooks(ctx: Ctx) -> WebhooksResponse:
    ctx.require("editor", "webhooks.list")
    with _store(ctx).session() as session:
        rows = session.scalars(select(WebhookRow).where(WebhookRow.team_id == ctx.who.team_id)
                               .order_by(WebhookRow.name)).all()
        return WebhooksResponse(webhooks=[_webhook(r) for r in rows])


@router.post("/webhooks", response_model=WebhookCreated, status_code=201, tags=["webhooks"],
             summary="add a webhook: the answer holds its signing secret, shown this once")
def create_webhook(ctx: Ctx, spec: WebhookSpec, response: Response) -> WebhookCreated:
    who = ctx.require("admin", "webhooks.create")
    try:
        check_target(spec.url, ctx.settings.api.webhook_private_targets)
    except TargetError as exc:
        raise bad_request(str(exc), "url") from None
    secret = secrets.token_urlsafe(32)
    try:
        with _store(ctx).session() as session:
            row = WebhookRow(team_id=who.team_id, name=spec.name, url=spec.url, kind=spec.kind, secret=secret,
                             enabled=spec.enabled, created_at=time.time())
            session.add(row)
            session.flush()
            _audit(ctx, session, "webhook.create", spec.name, {"id": row.id, "kind": spec.kind})
            response.headers["Cache-Control"] = "no-store"
            return WebhookCreated(webhook=_webhook(row), secret=secret)
    except IntegrityError:
        raise ApiError(409, "conflict", f"name: a webhook {spec.name!r} exists already", field="name") from None


@router.delete("/webhooks/{webhook_id}", status_code=204, response_class=Response, tags=["webhooks"],
               summary="delete a webhook (its pending deliveries are dropped)")
def delete_webhook(ctx: Ctx, webhook_id: Id) -> Response:
    ctx.require("admin", "webhooks.delete")
    with _store(ctx).session() as session:
        row = session.get(WebhookRow, webhook_id)
        if row is None or row.team_id != ctx.who.team_id:
            raise not_found(f"no webhook {webhook_id}", "webhook_id")
        _audit(ctx, session, "webhook.delete", row.name, {"id": row.id})
        session.delete(row)
    return Response(status_code=204)


# -- silences ------------------------------------------------------------------------------------------


def ends_at(text: str, now: float) -> float:
    match = DURATION.fullmatch(text.strip())
    if match:
        return now + int(match.group(1)) * UNITS[match.group(2)]
    return parse_time(text.strip(), "ends_at") / 1e9


def _silence(row: SilenceRow, now: float) -> SilenceInfo:
    return SilenceInfo(id=row.id, rule_id=row.rule_id, group=row.group_key, comment=row.comment,
                       created_by=row.created_by, starts_at=row.starts_at, ends_at=row.ends_at,
                       active=row.starts_at <= now < row.ends_at)


@router.get("/silences", response_model=SilencesResponse, tags=["silences"],
            summary="the team's silences, the active and the recent")
def silences(ctx: Ctx) -> SilencesResponse:
    now = time.time()
    with _store(ctx).session() as session:
        rows = session.scalars(select(SilenceRow).where(SilenceRow.team_id == ctx.who.team_id,
                                                        SilenceRow.ends_at > now - 7 * 86400)
                               .order_by(SilenceRow.ends_at.desc())).all()
        return SilencesResponse(silences=[_silence(r, now) for r in rows])


@router.post("/silences", response_model=SilenceInfo, status_code=201, tags=["silences"],
             summary="silence a rule (or all) until an end time: events are kept, nothing is sent")
def create_silence(ctx: Ctx, spec: SilenceSpec) -> SilenceInfo:
    who = ctx.require("editor", "silences.create")
    now = time.time()
    end = ends_at(spec.ends_at, now)
    if end <= now:
        raise bad_request("ends_at: must be in the future", "ends_at")
    with _store(ctx).session() as session:
        if spec.rule_id is not None:
            _rule(session, ctx, spec.rule_id)
        row = SilenceRow(team_id=who.team_id, rule_id=spec.rule_id, group_key=spec.group, comment=spec.comment,
                         created_by=who.actor, starts_at=now, ends_at=end)
        session.add(row)
        session.flush()
        _audit(ctx, session, "silence.create", str(spec.rule_id or "all"), {"id": row.id, "ends_at": end})
        return _silence(row, now)


@router.delete("/silences/{silence_id}", response_model=SilenceInfo, tags=["silences"],
               summary="end a silence now")
def end_silence(ctx: Ctx, silence_id: Id) -> SilenceInfo:
    ctx.require("editor", "silences.end")
    now = time.time()
    with _store(ctx).session() as session:
        row = session.get(SilenceRow, silence_id)
        if row is None or row.team_id != ctx.who.team_id:
            raise not_found(f"no silence {silence_id}", "silence_id")
        row.ends_at = min(row.ends_at, now)
        _audit(ctx, session, "silence.end", str(row.rule_id or "all"), {"id": row.id})
        return _silence(row, now)
