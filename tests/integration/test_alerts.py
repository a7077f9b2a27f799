"""Alerts on the real ClickHouse engine with a webhook receiver on loopback (docs/alerts.md).

A search rule over a team's error logs goes ok -> firing -> resolved with one signed notification each way
and never sees another team's errors; `for` holds a rule in pending; two evaluators on one metadata store
never both evaluate (the lease), and one that lost the lease writes nothing; a receiver that answers 500 is
retried with every attempt recorded; a slow receiver does not hold up the evaluation of rules; silences keep
the event and send nothing; roles decide who may change what, and refusals are audited.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from maple import clickhouse, schema
from maple.settings import Settings
from query.alerts.engine import Evaluator
from query.app import create_app
from query.auth import Auth
from query.context import Context
from query.reader import Reader
from query.sources import Sources
from query.store import Store
from query.store.tables import AlertEventRow, AuditRow, DeliveryAttemptRow, DeliveryRow, LeaseRow
from tests.helpers.access import bearer, query_key
from tests.helpers.webhooks import receiver


@dataclasses.dataclass
class Env:
    settings: Settings
    base: Context
    store: Store
    admin: Any
    database: str
    editor: TestClient
    viewer: TestClient
    team_admin: TestClient

    def errors(self, team: str, service: str, count: int = 3) -> None:
        self.admin.command(f"INSERT INTO `{self.database}`.otel_logs (Timestamp, ServiceName, SeverityText, "
                           f"SeverityNumber, Body, Tenant) SELECT now64(9), '{service}', 'ERROR', 17, "
                           f"'payment failed', '{team}' FROM numbers({count})")

    def evaluator(self, holder: str) -> Evaluator:
        return Evaluator(self.base, holder)


@pytest.fixture
def env(clickhouse_settings: Settings, tmp_path: Any) -> Iterator[Env]:
    database = f"alerts_{uuid.uuid4().hex[:10]}"
    admin = clickhouse.connect(clickhouse_settings, in_process=False)
    schema.apply(admin, schema.Target(database, 0), say=lambda _: None)
    settings = dataclasses.replace(
        clickhouse_settings, clickhouse=dataclasses.replace(clickhouse_settings.clickhouse, database=database),
        api=dataclasses.replace(clickhouse_settings.api, webhook_private_targets=True, webhook_timeout_s=1.0,
                                alert_lease_s=3.0, webhook_retries=3))
    store = Store(f"sqlite:///{tmp_path / 'meta.db'}")
    store.migrate()
    reader = Reader(settings)
    base = Context(settings, reader, Sources(reader, store), store, auth=Auth(settings, store))
    app = create_app(settings, context=base)
    clients = [TestClient(app, headers=bearer(query_key(store, "team-a", role))) for role in ("editor", "viewer",
                                                                                                "admin")]
    query_key(store, "team-b")
    try:
        yield Env(settings, base, store, admin, database, *clients)
    finally:
        reader.close()
        store.close()
        admin.command(f"DROP DATABASE IF EXISTS `{database}`")
        admin.close()


def _webhook(env: Env, url: str, kind: str = "json", name: str = "hook") -> tuple[int, str]:
    created = env.team_admin.post("/api/v1/webhooks", json={"name": name, "url": url, "kind": kind})
    assert created.status_code == 201, created.text
    return created.json()["webhook"]["id"], created.json()["secret"]


def _rule(env: Env, hooks: list[int], **overrides: Any) -> int:
    spec = {"name": "payment errors", "condition": {"kind": "search", "q": "level:error", "window_s": 10,
                                                    "group_by_service": True, "op": ">", "threshold": 0},
            "interval_s": 1, "for_s": 0, "webhooks": hooks, **overrides}
    created = env.editor.post("/api/v1/alerts", json=spec)
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


def _settle(evaluator: Evaluator, rounds: int = 3) -> None:
    """Evaluate what is due and send what that produced (deliveries are made by one tick, sent by the next)."""
    for _ in range(rounds):
        evaluator.run_due()


def test_a_search_rule_fires_once_resolves_and_never_sees_another_team(env: Env) -> None:
    with receiver() as hook:
        hook_id, secret = _webhook(env, hook.url)
        rule_id = _rule(env, [hook_id])
        evaluator = env.evaluator("one")
        env.errors("team-b", "checkout")  # another team's errors: nothing happens for team-a's rule
        _settle(evaluator)
        assert env.editor.get(f"/api/v1/alerts/{rule_id}").json()["state"] == "ok"
        env.errors("team-a", "checkout")
        time.sleep(1.1)
        _settle(evaluator)
        rule = env.editor.get(f"/api/v1/alerts/{rule_id}").json()
        assert rule["state"] == "firing" and rule["groups"] == [
            {"group": "service=checkout", "state": "firing", "since": rule["groups"][0]["since"], "value": 3.0}]
        fired = hook.wait(1)[0]
        assert fired.signed_by(secret) and not fired.signed_by("another secret")
        body = fired.json
        assert (body["state"], body["team"], body["group"], body["value"], body["rule"]["id"]) == (
            "firing", "team-a", "service=checkout", 3.0, rule_id)
        for _ in range(3):  # still firing: no second notification
            time.sleep(1.1)
            _settle(evaluator)
        assert len(hook.requests) == 1
        time.sleep(10)  # the errors leave the 10 s window
        _settle(evaluator)
        resolved = hook.wait(2)[1]
        assert resolved.json["state"] == "resolved" and resolved.signed_by(secret)
        assert env.editor.get(f"/api/v1/alerts/{rule_id}").json()["state"] == "ok"
        events = env.viewer.get(f"/api/v1/alerts/{rule_id}/history").json()["events"]
        assert [(e["from_state"], e["to_state"]) for e in events] == [("firing", "resolved"), ("ok", "firing")]
        assert [[d["status"] for d in e["deliveries"]] for e in events] == [["delivered"], ["delivered"]]
        assert len(hook.requests) == 2
        evaluator.stop()


def test_for_holds_a_rule_in_pending_then_fires(env: Env) -> None:
    rule_id = _rule(env, [], for_s=2)
    evaluator = env.evaluator("one")
    env.errors("team-a", "cart")
    _settle(evaluator, 1)
    assert env.viewer.get(f"/api/v1/alerts/{rule_id}").json()["state"] == "pending"
    time.sleep(2.2)
    _settle(evaluator, 1)
    assert env.viewer.get(f"/api/v1/alerts/{rule_id}").json()["state"] == "firing"
    events = env.viewer.get(f"/api/v1/alerts/{rule_id}/history").json()["events"]
    assert [(e["from_state"], e["to_state"]) for e in events] == [("pending", "firing"), ("ok", "pending")]
    evaluator.stop()


def test_two_evaluators_never_both_evaluate_and_a_deposed_one_writes_nothing(env: Env) -> None:
    with receiver() as hook:
        hook_id, _ = _webhook(env, hook.url)
        rule_id = _rule(env, [hook_id])
        env.errors("team-a", "checkout")
        first, second = env.evaluator("first"), env.evaluator("second")
        for _ in range(3):
            evaluated = first.run_due() + second.run_due()
            time.sleep(1.1)
            assert evaluated <= 1
        assert first.lease.term is not None and second.lease.term is None
        hook.wait(1)
        with env.store.session() as session:
            assert len(session.scalars(select(AlertEventRow)).all()) == 1
        # The leader stops renewing (a crash); once the lease expires, the other takes over with a new term.
        outcome = first.evaluate_rule(rule_id)
        assert outcome is not None
        time.sleep(3.2)
        second.run_due()
        assert second.lease.term is not None and second.lease.term > (first.lease.term or 0)
        # The deposed evaluator finishes its evaluation late: its write is refused.
        assert first.apply(outcome, time.time()) is False
        with env.store.session() as session:
            lease = session.get(LeaseRow, "alerts")
            assert lease is not None and lease.holder == "second"
            assert len(session.scalars(select(AlertEventRow)).all()) == 1
        time.sleep(1.5)
        _settle(second)
        assert len(hook.requests) == 1  # still firing after the change of leader: nothing sent twice
        first.stop()
        second.stop()


def test_a_failing_receiver_is_retried_and_a_slow_one_holds_up_no_rule(env: Env) -> None:
    with receiver(statuses=[500]) as failing, receiver(delay_s=4.0) as slow:
        failing_id, _ = _webhook(env, failing.url, name="failing")
        slow_id, _ = _webhook(env, slow.url, kind="slack", name="slow")
        first = _rule(env, [failing_id, slow_id], name="first")
        env.errors("team-a", "checkout")
        evaluator = env.evaluator("one")
        evaluator.run_due()  # evaluates: two deliveries are pending
        started = evaluator.tick()  # starts both deliveries; the slow one takes 4 s, the timeout is 1 s
        second = _rule(env, [], name="second")
        evaluated = evaluator.run_due()  # rules are evaluated meanwhile, on their own threads
        assert evaluated == 1 and any(not f.done() for f in started)
        assert env.viewer.get(f"/api/v1/alerts/{second}").json()["state"] == "firing"
        for future in started:
            future.result(30)
        time.sleep(2.1)  # the first retry is due 2 s after the failure
        _settle(evaluator, 2)
        events = env.viewer.get(f"/api/v1/alerts/{first}/history").json()["events"]
        deliveries = {d["webhook"]: d for d in events[0]["deliveries"]}
        assert deliveries["failing"]["status"] == "delivered"
        assert [a["status_code"] for a in deliveries["failing"]["attempts"]] == [500, 200]
        assert "answered 500" in deliveries["failing"]["attempts"][0]["error"]
        assert deliveries["slow"]["attempts"][0]["status_code"] is None  # timed out
        assert "timed out" in deliveries["slow"]["attempts"][0]["error"]
        assert slow.requests[0].json["text"].startswith(":red_circle: [FIRING] first (team-a) service=checkout: 3 > 0")
        evaluator.stop()


def test_a_silence_keeps_the_event_and_sends_nothing(env: Env) -> None:
    with receiver() as hook:
        hook_id, _ = _webhook(env, hook.url)
        rule_id = _rule(env, [hook_id])
        silence = env.editor.post("/api/v1/silences", json={"rule_id": rule_id, "ends_at": "1h", "comment": "deploy"})
        assert silence.status_code == 201 and silence.json()["active"] is True
        env.errors("team-a", "checkout")
        evaluator = env.evaluator("one")
        _settle(evaluator)
        event = env.viewer.get(f"/api/v1/alerts/{rule_id}/history").json()["events"][0]
        assert (event["to_state"], event["silenced"], event["deliveries"]) == ("firing", True, [])
        assert hook.requests == []
        ended = env.editor.delete(f"/api/v1/silences/{silence.json()['id']}")
        assert ended.status_code == 200 and ended.json()["active"] is False
        with env.store.session() as session:
            assert session.scalars(select(DeliveryRow)).all() == []
            assert session.scalars(select(DeliveryAttemptRow)).all() == []
        evaluator.stop()


def test_roles_decide_who_changes_what_and_targets_are_checked(env: Env) -> None:
    spec = {"name": "x", "condition": {"kind": "search", "q": "level:error"}}
    refused = env.viewer.post("/api/v1/alerts", json=spec)
    assert refused.status_code == 403 and "editor role" in refused.json()["error"]["message"]
    assert env.editor.post("/api/v1/webhooks", json={"name": "w", "url": "https://example.com/x"}).status_code == 403
    bad = env.editor.post("/api/v1/alerts", json={**spec, "condition": {"kind": "search", "q": "level:(error"}})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "condition.q"
    promql = env.editor.post("/api/v1/alerts", json={**spec, "condition": {"kind": "metric", "query": "sum("}})
    assert promql.status_code == 400 and promql.json()["error"]["field"] == "condition.query"
    missing = env.editor.post("/api/v1/alerts", json={**spec, "webhooks": [999]})
    assert missing.status_code == 400 and missing.json()["error"]["field"] == "webhooks"
    strict = dataclasses.replace(env.settings, api=dataclasses.replace(env.settings.api, webhook_private_targets=False))
    strict_app = create_app(strict, context=dataclasses.replace(env.base, settings=strict))
    admin = TestClient(strict_app, headers=env.team_admin.headers)
    local = admin.post("/api/v1/webhooks", json={"name": "local", "url": "http://127.0.0.1:8123/"})
    assert local.status_code == 400 and "private or local" in local.json()["error"]["message"]
    with env.store.session() as session:
        denied = session.scalars(select(AuditRow).where(AuditRow.outcome == "denied")).all()
        assert {d.action for d in denied} == {"alerts.create", "webhooks.create"}
    preview = env.editor.post("/api/v1/alerts/preview", json=spec)
    assert preview.status_code == 200 and preview.json()["holding"] == []


def test_a_metric_rule_fires_per_series_of_its_own_team(env: Env) -> None:
    for team, service, value in (("team-a", "cart", 5.0), ("team-a", "shop", 0.5), ("team-b", "other", 50.0)):
        env.admin.command(f"INSERT INTO `{env.database}`.otel_metrics_gauge (ServiceName, MetricName, Attributes, "
                          f"TimeUnix, Value, Tenant) VALUES ('{service}', 'queue.depth', map(), now64(9) - INTERVAL 5 "
                          f"SECOND, {value}, '{team}')")
    rule_id = _rule(env, [], name="queue", condition={"kind": "metric", "query": "max by (service_name) (queue_depth)",
                                                      "op": ">", "threshold": 1})
    evaluator = env.evaluator("one")
    _settle(evaluator, 1)
    rule = env.viewer.get(f"/api/v1/alerts/{rule_id}").json()
    assert rule["last_error"] == ""
    assert {(g["group"], g["state"], g["value"]) for g in rule["groups"]} == {
        ("service_name=cart", "firing", 5.0), ("service_name=shop", "ok", 0.5)}
    evaluator.stop()
