"""`maple teams`, `maple users` and `maple keys`: teams, accounts and API keys from the command line, straight
in the metadata store (api.metadata_url, or the SQLite file in the data dir), so that the first admin and the
first keys exist before anyone can log in. Every change is an audit record with the actor `cli:<os user>`.
Secrets are printed once, to stdout, and never logged."""

from __future__ import annotations

import argparse
import getpass
import json
import secrets
import sys
from collections.abc import Callable
from typing import Any

from maple.settings import Settings

SettingsLoader = Callable[..., Settings]


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _password(args: argparse.Namespace, prompt: str) -> tuple[str, bool]:
    """(the password, whether it was generated and must be shown)."""
    if getattr(args, "generate_password", False):
        return secrets.token_urlsafe(18), True
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n"), False
    if not sys.stdin.isatty():
        raise SystemExit("maple: give --password-stdin (the password on standard input) or --generate-password")
    first = getpass.getpass(prompt)
    if getpass.getpass("again: ") != first:
        raise SystemExit("maple: the passwords differ")
    return first, False


def _open(load: SettingsLoader, args: argparse.Namespace) -> Any:
    from query.store import open_store

    return open_store(load(args))


def _fail(exc: Exception) -> int:
    print(f"maple: {exc}", file=sys.stderr)
    return 2


def cmd_teams(args: argparse.Namespace, load: SettingsLoader) -> int:
    from query import teams

    store = _open(load, args)
    try:
        if args.action == "create":
            team = teams.create_team(store, args.slug, args.name or args.slug, _actor())
            print(f"team {team['slug']} created (its rows carry Tenant = '{team['slug']}')")
        else:
            rows = teams.list_teams(store)
            print(json.dumps(rows, indent=2) if args.json else "\n".join(f"{t['slug']}\t{t['name']}" for t in rows))
    except teams.TeamsError as exc:
        return _fail(exc)
    finally:
        store.close()
    return 0


def cmd_users(args: argparse.Namespace, load: SettingsLoader) -> int:
    from query import teams

    store = _open(load, args)
    try:
        if args.action == "create":
            if args.team not in {t["slug"] for t in teams.list_teams(store)} and args.create_team:
                teams.create_team(store, args.team, args.team, _actor())
            password, generated = _password(args, f"password for {args.email}: ")
            member = teams.create_user(store, args.email, password, args.team, args.role, _actor(),
                                       superuser=args.superuser)
            print(f"user {member.email} is {member.role} of team {args.team}"
                  + (" (superuser)" if member.superuser else ""))
            if generated:
                print(f"password (shown once): {password}")
        elif args.action == "passwd":
            password, generated = _password(args, f"new password for {args.email}: ")
            teams.set_password(store, args.email, password, _actor())
            print(f"password of {args.email} changed; their sessions ended")
            if generated:
                print(f"password (shown once): {password}")
        elif args.action == "delete":
            teams.delete_user(store, args.email, _actor())
            print(f"user {args.email} deleted")
        else:
            rows = teams.list_users(store)
            if args.json:
                print(json.dumps(rows, indent=2))
            for row in [] if args.json else rows:
                roles = ", ".join(f"{team}:{role}" for team, role in sorted(row["teams"].items()))
                flags = " superuser" if row["superuser"] else ""
                print(f"{row['email']}\t{roles}{flags}")
    except teams.TeamsError as exc:
        return _fail(exc)
    finally:
        store.close()
    return 0


def cmd_keys(args: argparse.Namespace, load: SettingsLoader) -> int:
    from query import teams

    store = _open(load, args)
    try:
        if args.action == "create":
            key, secret = teams.create_key(store, args.team, args.kind, args.name or "", _actor(),
                                           role=args.role if args.kind == "query" else None)
            print(f"{args.kind} key {key['id']} ({key['prefix']}…) of team {args.team} created"
                  + (f" with role {key['role']}" if key["role"] else ""))
            print(f"key (shown once, stored only as a hash): {secret}")
            if args.kind == "ingest":
                print("send with: Authorization: Bearer <key> (OTLP/HTTP header or gRPC metadata); the ingest "
                      "accepts it within ingest.keys_refresh_s")
        elif args.action == "revoke":
            key = teams.revoke_key(store, args.id, _actor())
            print(f"key {key['id']} ({key['prefix']}…) of team {key['team']} revoked")
        else:
            rows = teams.list_keys(store, args.team)
            if args.json:
                print(json.dumps(rows, indent=2))
            for row in [] if args.json else rows:
                state = "revoked" if row["revoked_at"] else "active"
                print(f"{row['id']}\t{row['team']}\t{row['kind']}\t{row['role'] or '-'}\t{row['prefix']}…\t{state}\t"
                      f"{row['name']}")
    except teams.TeamsError as exc:
        return _fail(exc)
    finally:
        store.close()
    return 0


def register(add: Callable[..., argparse.ArgumentParser], sub: Any, common: argparse.ArgumentParser,
             load: SettingsLoader) -> None:
    """The teams, users and keys commands, added to `maple`'s parser."""
    teams = sub.add_parser("teams", help="teams (tenants): create and list", parents=[common],
                           description="A team is a tenant: its slug is the Tenant column of the rows its ingest "
                                       "keys send, and every query its members run is restricted to them.")
    teams_sub = teams.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = add("create", "create a team", lambda a: cmd_teams(a, load), into=teams_sub)
    create.add_argument("slug", help="letters, digits, _ . - (at most 64); never changes")
    create.add_argument("--name", help="a display name")
    listing = add("list", "list the teams", lambda a: cmd_teams(a, load), into=teams_sub)
    listing.add_argument("--json", action="store_true")

    users = sub.add_parser("users", help="user accounts: create the first admin, change passwords", parents=[common],
                           description="Accounts for logging in to the web UI and the API, with a role per team: "
                                       "admin (users, keys, webhooks, sources), editor (alerts, saved searches, "
                                       "dashboards), viewer (read). Passwords are stored as Argon2id hashes.")
    users_sub = users.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = add("create", "create a user with a role in a team (or add an existing user to the team)",
                 lambda a: cmd_users(a, load), into=users_sub)
    create.add_argument("email")
    create.add_argument("--team", default="default", help="the team (default: default, the team of data sent "
                                                          "without a key)")
    create.add_argument("--role", choices=("admin", "editor", "viewer"), default="admin")
    create.add_argument("--superuser", action="store_true", help="may create teams and act as admin in every team")
    create.add_argument("--create-team", action="store_true", help="create --team if it does not exist")
    for parser in (create, add("passwd", "set a user's password (ends their sessions)",
                               lambda a: cmd_users(a, load), into=users_sub)):
        if parser is not create:
            parser.add_argument("email")
        parser.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
        parser.add_argument("--generate-password", action="store_true", help="generate one and print it once")
    delete = add("delete", "delete a user", lambda a: cmd_users(a, load), into=users_sub)
    delete.add_argument("email")
    listing = add("list", "list users and their roles", lambda a: cmd_users(a, load), into=users_sub)
    listing.add_argument("--json", action="store_true")

    keys = sub.add_parser("keys", help="API keys: ingest keys (send data) and query keys (read the API)",
                          parents=[common],
                          description="An ingest key sends data as its team (the ingest reads the keys from the "
                                      "metadata store every ingest.keys_refresh_s); a query key reads the API as "
                                      "its team with its role. Keys are shown once and stored as SHA-256 hashes. "
                                      "Once any ingest key exists, the ingest refuses requests without one.")
    keys_sub = keys.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = add("create", "create a key and print it once", lambda a: cmd_keys(a, load), into=keys_sub)
    create.add_argument("--team", default="default")
    create.add_argument("--kind", choices=("ingest", "query"), required=True)
    create.add_argument("--role", choices=("admin", "editor", "viewer"), default="viewer",
                        help="query keys: the role (default viewer)")
    create.add_argument("--name", help="what it is for")
    revoke = add("revoke", "revoke a key by id", lambda a: cmd_keys(a, load), into=keys_sub)
    revoke.add_argument("id", type=int)
    listing = add("list", "list keys (never the keys themselves)", lambda a: cmd_keys(a, load), into=keys_sub)
    listing.add_argument("--team")
    listing.add_argument("--json", action="store_true")
