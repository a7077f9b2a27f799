"""Teams, users and API keys for tests: created straight in the metadata store, as `maple users` and
`maple keys` do."""

from __future__ import annotations

from query import teams
from query.store import Store

PASSWORD = "correct horse battery staple"


def ensure_team(store: Store, slug: str) -> None:
    if slug not in {t["slug"] for t in teams.list_teams(store)}:
        teams.create_team(store, slug, slug.title(), "test")


def query_key(store: Store, team: str = "default", role: str = "admin") -> str:
    """A new query API key of `team` (created if missing) with `role`: the key itself."""
    ensure_team(store, team)
    return teams.create_key(store, team, "query", f"test {role}", "test", role=role)[1]


def ingest_key(store: Store, team: str) -> str:
    ensure_team(store, team)
    return teams.create_key(store, team, "ingest", "test", "test")[1]


def user(store: Store, email: str, team: str = "default", role: str = "admin", superuser: bool = False) -> str:
    """A user of `team` with PASSWORD; returns the email."""
    ensure_team(store, team)
    teams.create_user(store, email, PASSWORD, team, role, "test", superuser=superuser)
    return email


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}
