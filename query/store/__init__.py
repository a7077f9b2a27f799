"""The query service's metadata store: operator-added sources now, teams and saved searches later (issue 16).

SQLAlchemy over a SQLite file under the data dir by default (``<data_dir>/api/metadata.db``), or the
database ``api.metadata_url`` names (PostgreSQL). The schema is Alembic migrations in
``query/store/migrations``, applied when the store opens, so a new `maple api` upgrades an old file.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from maple.settings import Settings, SettingsError, mask_url
from query.store.tables import SourceRow

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class StoreError(RuntimeError):
    """The metadata store cannot be opened or migrated; the message says which and why."""


class Conflict(ValueError):
    """A row with that name exists already."""


def store_url(settings: Settings) -> str:
    if settings.api.metadata_url:
        return settings.api.metadata_url
    path = settings.data_path / "api" / "metadata.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


class Store:
    """Sessions on the metadata database, migrated to the newest revision when opened."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine = create_engine(url, future=True, pool_pre_ping=True)
        except (ArgumentError, ImportError) as exc:
            raise SettingsError(f"invalid value for api.metadata_url (MAPLE_API_METADATA_URL): {mask_url(url)!r}: "
                                f"{exc}") from exc
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._lock = threading.Lock()

    def migrate(self) -> None:
        """Apply every Alembic migration not yet applied (idempotent)."""
        try:
            command.upgrade(_alembic_config(self.engine), "head")
        except OperationalError as exc:
            raise StoreError(f"the metadata store at {mask_url(self.url)} cannot be migrated: {exc.orig}") from exc
        except ImportError as exc:  # the dialect's driver (psycopg, ...) is not installed
            raise SettingsError(f"api.metadata_url (MAPLE_API_METADATA_URL) needs a driver that is not installed: "
                                f"{exc}") from exc

    def revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    def close(self) -> None:
        self.engine.dispose()

    # -- sources ---------------------------------------------------------------------------------------

    def list_sources(self) -> list[dict[str, Any]]:
        with self.session() as session:
            return [json.loads(row.spec) for row in session.scalars(select(SourceRow).order_by(SourceRow.name))]

    def add_source(self, name: str, kind: str, spec: dict[str, Any]) -> None:
        now = datetime.now(UTC)
        try:
            with self.session() as session:
                session.add(SourceRow(name=name, kind=kind, spec=json.dumps(spec, sort_keys=True), created_at=now,
                                      updated_at=now))
        except IntegrityError as exc:
            raise Conflict(f"a source named {name!r} exists already") from exc

    def delete_source(self, name: str) -> bool:
        with self.session() as session:
            row = session.scalar(select(SourceRow).where(SourceRow.name == name))
            if row is None:
                return False
            session.delete(row)
            return True


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")   # readers do not block the writer
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def open_store(settings: Settings) -> Store:
    """The configured store, migrated."""
    store = Store(store_url(settings))
    store.migrate()
    return store
