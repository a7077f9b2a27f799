"""API keys: their format, how they are stored, and how the ingest learns the ones a team created.

A key is ``mpl_<kind>_<43 url-safe characters>`` (256 random bits): ``mpl_ingest_...`` sends data through
the OTLP ingest, ``mpl_query_...`` reads the query API. Only its SHA-256 is stored (a slow hash would buy
nothing for a 256-bit random secret and would cost the ingest on every request); the first characters
(`prefix`) identify a key in lists. The key itself is shown once, when it is created.

The metadata store (`api.metadata_url`, a SQLite file under the data dir by default) holds the keys. The
query service writes them (query/teams.py); the ingest never calls the API: it reads the ingest keys from
the store every `ingest.keys_refresh_s` seconds into memory (`IngestKeys`), so a request costs one hash and
one dictionary lookup, and a revoked key stops working within that interval. The table and column names
below are the contract between the two (the store's Alembic migration 0002 creates them).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maple.settings import Settings

log = logging.getLogger(__name__)

KINDS = ("ingest", "query")
PREFIX_CHARS = 14  # "mpl_query_" + 4 characters of the secret: enough to tell keys apart in a list
INGEST_KEYS_SQL = ("SELECT k.key_hash, t.slug, k.revoked_at FROM api_keys k JOIN teams t ON t.id = k.team_id "
                   "WHERE k.kind = 'ingest'")


@dataclass(frozen=True)
class NewKey:
    secret: str   # shown once, never stored
    prefix: str
    key_hash: str


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def generate(kind: str) -> NewKey:
    if kind not in KINDS:
        raise ValueError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
    secret = f"mpl_{kind}_{secrets.token_urlsafe(32)}"
    return NewKey(secret, secret[:PREFIX_CHARS], hash_key(secret))


def kind_of(secret: str) -> str | None:
    """The kind a key says it is (by its form), or None for anything that is not a Maple key."""
    for kind in KINDS:
        if secret.startswith(f"mpl_{kind}_"):
            return kind
    return None


def metadata_url(settings: Settings, create_dir: bool = True) -> str:
    """The metadata store's SQLAlchemy URL: api.metadata_url, or the SQLite file under the data dir."""
    if settings.api.metadata_url:
        return settings.api.metadata_url
    path = settings.data_path / "api" / "metadata.db"
    if create_dir:
        path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def default_store_path(settings: Settings) -> Path | None:
    """The SQLite file of the default store (None when api.metadata_url names another database)."""
    return None if settings.api.metadata_url else settings.data_path / "api" / "metadata.db"


class IngestKeys:
    """The ingest keys of the metadata store, re-read in a background thread; lookups never block.

    `required` says whether a request must carry a key: once any ingest key was ever created (revoked ones
    count: revoking the last key must not open the ingest to everyone). Until the store has been read once,
    and whenever it cannot be read, the last answer stands; before any answer, keys are required (closed
    by default)."""

    def __init__(self, settings: Settings, refresh_s: float) -> None:
        self.settings = settings
        self.refresh_s = refresh_s
        self._tenants: dict[str, str] = {}
        self.required: bool | None = None  # None: not read yet
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._engine: Any = None  # a SQLAlchemy Engine, made on the first read
        self._failures = 0

    def tenant(self, secret: str) -> str | None:
        return self._tenants.get(hash_key(secret))

    def load(self) -> bool:
        """Read the store once; False (and the previous keys kept) when it cannot be read."""
        path = default_store_path(self.settings)
        if path is not None and not path.exists():
            self._tenants, self.required = {}, False  # no store yet: nobody created a key
            return True
        try:
            import sqlalchemy as sa

            if self._engine is None:
                self._engine = sa.create_engine(metadata_url(self.settings, create_dir=False), pool_pre_ping=True)
            with self._engine.connect() as conn:
                rows = conn.execute(sa.text(INGEST_KEYS_SQL)).all()
        except Exception as exc:
            self._failures += 1
            if self._failures in (1, 10) or self._failures % 100 == 0:  # not once per refresh
                log.warning("cannot read the ingest keys from the metadata store (%d time(s)): %s", self._failures,
                            type(exc).__name__)
            return False
        self._failures = 0
        self._tenants = {str(key_hash): str(slug) for key_hash, slug, revoked in rows if revoked is None}
        self.required = bool(rows)
        return True

    def start(self) -> None:
        self.load()
        self._thread = threading.Thread(target=self._run, name="maple-ingest-keys", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_s):
            started = time.monotonic()
            self.load()
            if time.monotonic() - started > self.refresh_s:
                log.warning("reading the ingest keys took %.1fs", time.monotonic() - started)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._engine is not None:
            self._engine.dispose()
