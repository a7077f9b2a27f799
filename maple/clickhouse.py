"""ClickHouse client factory: one clickhouse-connect client API for a server, a cluster, or the embedded engine.

Which engine a process talks to:

* ``clickhouse.url`` set: the server(s) it names, over HTTP. Several URLs are the shards of a cluster.
* otherwise the embedded engine (chDB) under ``<data_dir>/clickhouse``. chDB lets only one process open
  a data path, so the process that owns it (``maple clickhouse serve``, started by ``maple up``) serves
  ClickHouse's HTTP protocol on loopback and advertises itself in ``host.json``. Every other process
  (sinks, ``maple query``, ``maple schema apply``) connects there with the ordinary HTTP client, exactly
  as it would to a server. With no host running, a command opens the engine in-process instead.
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from maple.settings import Settings, mask_url


class ClickHouseUnavailable(RuntimeError):
    """No ClickHouse engine can be reached; the message says which and why."""


@dataclass(frozen=True)
class Endpoint:
    """Where one ClickHouse HTTP interface lives, parsed from a URL."""

    host: str
    port: int
    username: str
    password: str
    database: str
    secure: bool

    @property
    def display(self) -> str:
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{self.username}@{self.host}:{self.port}/{self.database}"


def parse_url(url: str, default_database: str) -> Endpoint:
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    database = unquote(parts.path.strip("/")) or default_database
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", database):
        raise ClickHouseUnavailable(f"database name {database!r} in {mask_url(url)} is not a plain identifier")
    return Endpoint(host=parts.hostname or "localhost", port=parts.port or (8443 if secure else 8123),
                    username=unquote(parts.username or "default"), password=unquote(parts.password or ""),
                    database=database, secure=secure)


# ---------------------------------------------------------------------------------------------------
# The embedded engine's files


def embedded_root(settings: Settings) -> Path:
    return settings.data_path / "clickhouse"


def embedded_data_path(settings: Settings) -> Path:
    return embedded_root(settings) / "data"


def host_file(settings: Settings) -> Path:
    return embedded_root(settings) / "host.json"


def running_host(settings: Settings) -> dict[str, Any] | None:
    """The advertisement of a live embedded host for this data dir, or None."""
    try:
        info = json.loads(host_file(settings).read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        with urllib.request.urlopen(f"{info['url']}/ping", timeout=2) as response:
            if response.status == 200:
                return info
    except OSError:
        return None
    return None


# ---------------------------------------------------------------------------------------------------
# Clients


def http_client(endpoint: Endpoint, settings: Settings, *, compress: bool = True, database: str | None = None,
                **kwargs: Any) -> Client:
    return clickhouse_connect.get_client(
        host=endpoint.host, port=endpoint.port, username=endpoint.username, password=endpoint.password,
        database=database or endpoint.database, secure=endpoint.secure, compress=compress,
        connect_timeout=settings.clickhouse.connect_timeout_s,
        send_receive_timeout=settings.clickhouse.query_timeout_s,
        # Sessions serialise queries server-side; Maple's clients share nothing that needs one.
        autogenerate_session_id=False, **kwargs)


def endpoints(settings: Settings) -> list[Endpoint]:
    """The configured server endpoints, one per shard (empty in embedded mode)."""
    return [parse_url(url, settings.clickhouse.database) for url in settings.clickhouse.url]


def connect(settings: Settings, *, database: str | None = None, in_process: bool = True) -> Client:
    """A clickhouse-connect client for the configured engine.

    ``database`` defaults to ``default`` so that a client can be made before Maple's database exists.
    ``in_process=False`` refuses to open the embedded engine inside this process (long-running stages
    want the shared host, never a private copy that would lock everyone else out).
    """
    database = database or "default"
    if settings.clickhouse.url:
        return connect_endpoint(endpoints(settings)[0], settings, database=database)
    host = running_host(settings)
    if host is not None:
        endpoint = Endpoint(host=host["host"], port=int(host["port"]), username=settings.clickhouse.embedded_user,
                            password=settings.clickhouse.embedded_password, database=database, secure=False)
        # Loopback: compression would only cost CPU on both sides.
        return http_client(endpoint, settings, compress=False)
    if not in_process:
        raise ClickHouseUnavailable(
            f"no embedded ClickHouse host is running for {settings.data_path}; start one with "
            "`maple clickhouse serve` (maple up does), or set MAPLE_CLICKHOUSE_URL")
    return open_in_process(settings, database)


def connect_endpoint(endpoint: Endpoint, settings: Settings, *, database: str | None = None) -> Client:
    """A client for one server; ClickHouseUnavailable (transient for the sink) when it does not answer."""
    try:
        return http_client(endpoint, settings, database=database or "default")
    except Exception as exc:  # clickhouse-connect raises OperationalError and friends
        raise ClickHouseUnavailable(f"ClickHouse at {endpoint.display} is not reachable: {exc}") from exc


def open_in_process(settings: Settings, database: str = "default") -> Client:
    """Open the embedded engine inside this process (it then holds the data dir's lock)."""
    path = embedded_data_path(settings)
    path.mkdir(parents=True, exist_ok=True)
    try:
        return clickhouse_connect.get_client(interface="chdb", path=str(path), database=database)
    except Exception as exc:
        if "lock" in str(exc).lower() or "EmbeddedServer" in str(exc):
            raise ClickHouseUnavailable(
                f"the embedded ClickHouse data at {path} is held by another process that serves no "
                "HTTP endpoint; stop it, or run `maple up` / `maple clickhouse serve` and retry") from exc
        raise


def ensure_database(client: Client, name: str) -> None:
    client.command(f"CREATE DATABASE IF NOT EXISTS `{name}`")


def describe_engine(settings: Settings) -> str:
    if settings.clickhouse.url:
        return ", ".join(e.display for e in endpoints(settings))
    host = running_host(settings)
    where = host["url"] if host else "in-process"
    return f"embedded chDB ({where}, data {embedded_data_path(settings)})"
