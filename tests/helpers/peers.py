"""Running the peer programs (apps/peers.py builds them) against the test session's ClickHouse.

`Target` says where the ClickHouse HTTP interface of the session is: the embedded host that the
fixtures run, or the server MAPLE_CLICKHOUSE_URL names; the peers get the same address either way.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maple import clickhouse
from maple.settings import Settings

# The column types every peer program creates (tests/peers/chgo/main.go, tests/peers/chnode/main.mjs).
PEER_TIMEOUT_S = 300


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    user: str
    password: str
    embedded: bool

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def endpoint(settings: Settings) -> Endpoint:
    if settings.clickhouse.url:
        server = clickhouse.endpoints(settings)[0]
        if server.secure:
            raise RuntimeError("the peer tests speak plain HTTP; point MAPLE_CLICKHOUSE_URL at an http:// port")
        return Endpoint(server.host, server.port, server.username, server.password, embedded=False)
    host = clickhouse.running_host(settings)
    if host is None:
        raise RuntimeError("no embedded ClickHouse host is running for the test session")
    return Endpoint(host["host"], int(host["port"]), settings.clickhouse.embedded_user,
                    settings.clickhouse.embedded_password, embedded=True)


def run_json(argv: list[str], cwd: Path | None = None, timeout: float = PEER_TIMEOUT_S) -> dict[str, Any]:
    """Run a peer that prints one JSON line; its stderr is in the assertion message when it fails."""
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "NO_COLOR": "1"})
    assert result.returncode == 0, f"{argv[0]} failed ({result.returncode}):\n{result.stderr[-4000:]}"
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, f"{argv[0]} printed no report:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    report: dict[str, Any] = json.loads(lines[-1])
    return report


def maple_column_types(client: Any, database: str) -> set[str]:
    """The distinct column types of Maple's tables in `database` (after `schema.apply`)."""
    rows = client.query("SELECT DISTINCT type FROM system.columns WHERE database = {db:String} "
                        "AND table LIKE 'otel\\\\_%'", parameters={"db": database}).result_rows
    return {row[0] for row in rows}
