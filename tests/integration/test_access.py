"""Access to the API (docs/teams.md): logins and their limits, sessions and how they end, API keys, roles,
audit records, cookie flags, and secrets that never come back. The real app over a real SQLite metadata
store; these calls never reach ClickHouse."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from maple.settings import Settings, load_settings
from query.app import create_app
from query.auth import Auth
from query.context import Context
from query.reader import Reader
from query.sources import Sources
from query.store import Store
from query.store.tables import AuditRow, SessionRow
from query.teams import revoke_key
from tests.helpers.access import PASSWORD, bearer, ingest_key, query_key, user


@dataclasses.dataclass
class Api:
    store: Store
    settings: Settings
    app: object

    def client(self, **headers: str) -> TestClient:
        return TestClient(self.app, headers=headers)  # type: ignore[arg-type]


def _app(tmp_path: Path, **api: object) -> Api:
    tmp_path.mkdir(parents=True, exist_ok=True)
    settings = load_settings(environ={"MAPLE_DATA_DIR": str(tmp_path), "MAPLE_CLICKHOUSE_URL": "http://127.0.0.1:9/x"})
    settings = dataclasses.replace(settings, api=dataclasses.replace(settings.api, **api))
    store = Store(f"sqlite:///{tmp_path / 'meta.db'}")
    store.migrate()
    reader = Reader(settings)
    context = Context(settings, reader, Sources(reader, store), store, auth=Auth(settings, store))
    return Api(store, settings, create_app(settings, context=context))


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    made = _app(tmp_path)
    user(made.store, "ann@example.com", "team-a", "admin")
    user(made.store, "vic@example.com", "team-a", "viewer")
    yield made
    made.store.close()


def _login(client: TestClient, email: str, password: str = PASSWORD) -> int:
    return client.post("/api/v1/auth/login", json={"email": email, "password": password}).status_code


def test_logins_are_limited_per_account_and_source_and_look_the_same_for_unknown_accounts(api: Api) -> None:
    client = api.client()
    wrong = client.post("/api/v1/auth/login", json={"email": "ann@example.com", "password": "wrong password!!"})
    unknown = client.post("/api/v1/auth/login", json={"email": "nobody@example.com", "password": "wrong password!!"})
    assert (wrong.status_code, wrong.json()) == (unknown.status_code, unknown.json()) == (
        401, {"error": {"code": "unauthorized", "message": "wrong email or password"}})
    for _ in range(4):
        assert _login(client, "ann@example.com", "still wrong!!") == 401
    limited = client.post("/api/v1/auth/login", json={"email": "ann@example.com", "password": PASSWORD})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 800  # even the right password
    assert "too many failed logins" in limited.json()["error"]["message"]
    assert _login(client, "vic@example.com") == 200  # another account from the same source is not held up


def test_sessions_end_by_logout_expiry_password_change_and_removal(api: Api) -> None:
    ann = api.client()
    assert _login(ann, "ann@example.com") == 200
    cookie = ann.cookies.get("maple_session")
    assert cookie and ann.get("/api/v1/auth/me").json()["role"] == "admin"
    with api.store.session() as session:  # the store keeps a hash, never the token
        assert session.get(SessionRow, cookie) is None and len(session.scalars(select(SessionRow)).all()) == 1
    assert ann.post("/api/v1/auth/logout").status_code == 204
    assert ann.get("/api/v1/auth/me").status_code == 401

    vic = api.client()
    assert _login(vic, "vic@example.com") == 200
    with api.store.session() as session:
        session.execute(update(SessionRow).values(expires_at=time.time() - 1))
    expired = vic.get("/api/v1/auth/me")
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]

    assert _login(vic, "vic@example.com") == 200
    other = api.client()
    assert _login(other, "vic@example.com") == 200
    changed = vic.put("/api/v1/auth/password", json={"current_password": PASSWORD, "new_password": "a brand new one!"})
    assert changed.status_code == 204
    assert vic.get("/api/v1/auth/me").status_code == 200       # this session got a new cookie
    assert other.get("/api/v1/auth/me").status_code == 401     # the other one ended

    assert _login(ann, "ann@example.com") == 200
    vic_id = next(u["id"] for u in ann.get("/api/v1/users").json()["users"] if u["email"] == "vic@example.com")
    assert ann.delete(f"/api/v1/users/{vic_id}").status_code == 204
    assert vic.get("/api/v1/auth/me").status_code == 401


def test_keys_roles_and_audit(api: Api) -> None:
    ann = api.client()
    assert _login(ann, "ann@example.com") == 200
    made = ann.post("/api/v1/keys", json={"kind": "query", "name": "ci", "role": "viewer"})
    assert made.status_code == 201 and made.headers["cache-control"] == "no-store"
    secret = made.json()["secret"]
    listed = ann.get("/api/v1/keys").text
    assert secret not in listed and secret[:14] in listed  # only the prefix is ever shown again
    key = api.client(**bearer(secret))
    assert key.get("/api/v1/auth/me").json() == {"email": None, "superuser": False, "team": "team-a", "role": "viewer",
                                                 "teams": [{"slug": "team-a", "name": "", "role": "viewer"}],
                                                 "key": secret[:14]}
    # A viewer calling an admin endpoint: 403 naming the role, and an audit record.
    refused = key.post("/api/v1/keys", json={"kind": "ingest"})
    assert refused.status_code == 403 and "needs the admin role" in refused.json()["error"]["message"]
    with api.store.session() as session:
        denied = session.scalars(select(AuditRow).where(AuditRow.outcome == "denied")).all()
        assert [(d.action, d.actor) for d in denied] == [("keys.create", f"key:{secret[:14]}…")]
    revoke_key(api.store, made.json()["key"]["id"], "test")
    revoked = key.get("/api/v1/auth/me")
    assert revoked.status_code == 401 and "revoked" in revoked.json()["error"]["message"]
    ingest = api.client(**bearer(ingest_key(api.store, "team-a")))
    assert "ingest key" in ingest.get("/api/v1/auth/me").json()["error"]["message"]
    assert api.client(**bearer("mpl_query_made-up")).get("/api/v1/auth/me").status_code == 401
    # Another team's key reads as that team, nothing of team-a's.
    other = api.client(**bearer(query_key(api.store, "team-b", "admin")))
    assert other.get("/api/v1/auth/me").json()["team"] == "team-b"
    assert all(k["team"] == "team-b" for k in other.get("/api/v1/keys").json()["keys"])
    # The team's last admin can neither be demoted nor removed.
    ann_id = next(u["id"] for u in ann.get("/api/v1/users").json()["users"] if u["email"] == "ann@example.com")
    assert ann.put(f"/api/v1/users/{ann_id}/role", json={"role": "viewer"}).status_code == 409
    actions = [r["action"] for r in ann.get("/api/v1/audit").json()["records"]]
    assert {"key.create", "key.revoke", "keys.create"} <= set(actions)
    assert PASSWORD not in ann.get("/api/v1/audit").text and secret not in ann.get("/api/v1/audit").text


def test_cookie_flags_and_cross_site_requests(tmp_path: Path) -> None:
    api = _app(tmp_path, secure_cookies=True)
    user(api.store, "ann@example.com", "team-a", "admin")
    client = api.client()
    response = client.post("/api/v1/auth/login", json={"email": "ann@example.com", "password": PASSWORD})
    flags = response.headers["set-cookie"].lower()
    assert "httponly" in flags and "samesite=lax" in flags and "secure" in flags and "path=/" in flags
    assert "password" not in response.text
    insecure = _app(tmp_path / "plain")
    user(insecure.store, "ann@example.com", "team-a", "admin")
    plain = insecure.client()
    assert "secure" not in plain.post("/api/v1/auth/login", json={"email": "ann@example.com", "password": PASSWORD}
                                      ).headers["set-cookie"].lower()
    # A change with the cookie from another site's page is refused; from the API's own origin it is not.
    foreign = plain.post("/api/v1/keys", json={"kind": "ingest"}, headers={"origin": "https://evil.example"})
    assert foreign.status_code == 403 and "evil.example" in foreign.json()["error"]["message"]
    assert plain.post("/api/v1/keys", json={"kind": "ingest"}, headers={"origin": "http://testserver"}).status_code == 201
    api.store.close()
    insecure.store.close()


def test_a_member_of_two_teams_switches_between_them(api: Api) -> None:
    user(api.store, "vic@example.com", "team-b", "admin")  # vic: viewer of team-a, admin of team-b
    vic = api.client()
    assert _login(vic, "vic@example.com") == 200
    me = vic.get("/api/v1/auth/me").json()
    assert (me["team"], me["role"]) == ("team-a", "viewer")
    assert [(t["slug"], t["role"]) for t in me["teams"]] == [("team-a", "viewer"), ("team-b", "admin")]
    assert vic.get("/api/v1/keys").status_code == 403
    switched = vic.put("/api/v1/auth/team", json={"team": "team-b"})
    assert switched.status_code == 200 and (switched.json()["team"], switched.json()["role"]) == ("team-b", "admin")
    assert vic.get("/api/v1/keys").status_code == 200
    assert vic.put("/api/v1/auth/team", json={"team": "team-c"}).status_code == 403  # not a member
    assert vic.get("/api/v1/auth/me").json()["team"] == "team-b"
