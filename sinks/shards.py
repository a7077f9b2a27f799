"""Writing into several shards: which shards there are, which rows go where, and one insert per shard.

The sink inserts straight into each shard's tables (docs/cluster.md explains why not through the
Distributed tables). Each batch of a table is split by the table's sharding key, computed by ClickHouse
itself (`cityHash64(...) % shards`, the Distributed engine's own rule for equal weights), so rows land
where a Distributed insert would have put them and `optimize_skip_unused_shards` stays correct. Each
shard's part goes in under its own token, ``<batch token>/shard<i>of<n>``: a redo splits the same rows
the same way and every shard drops what it already has.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from maple import blocks as row_blocks
from maple import clickhouse
from maple.clickhouse import ClickHouseUnavailable, Endpoint
from maple.schema import LOCAL_SUFFIX, TABLES, Table
from maple.settings import Settings
from maple.topics import FORMAT_JSON, FORMAT_NATIVE
from sinks.writer import DATA, TRANSIENT, Inserter, Rejected, classify

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Topology:
    """The shards in cluster order (shard_num 1..n), each with the replicas that may take its inserts."""

    shards: tuple[tuple[Endpoint, ...], ...]
    local_suffix: str  # "_local" on a ClickHouse cluster; "" when each URL is a standalone server

    def table(self, name: str) -> str:
        return name + self.local_suffix


def topology(settings: Settings, query: Callable[[str], Sequence[Sequence[Any]]] | None = None) -> Topology:
    """The shards to write to: one per URL, or (a cluster named, one URL) the cluster's shards from
    system.clusters, reached over HTTP on the first URL's scheme, port and credentials."""
    cfg = settings.clickhouse
    urls = clickhouse.endpoints(settings)
    suffix = LOCAL_SUFFIX if cfg.cluster else ""
    if not cfg.cluster or len(urls) != 1:
        return Topology(tuple((e,) for e in urls), suffix)
    first = urls[0]
    if query is None:
        def query(sql: str) -> Sequence[Sequence[Any]]:
            client = clickhouse.connect_endpoint(first, settings)
            try:
                return client.query(sql, parameters={"c": cfg.cluster}).result_rows
            finally:
                client.close()
    rows = query("SELECT shard_num, replica_num, host_name FROM system.clusters WHERE cluster = {c:String} "
                 "ORDER BY shard_num, replica_num")
    if not rows:
        raise ClickHouseUnavailable(f"clickhouse.cluster (MAPLE_CLICKHOUSE_CLUSTER): cluster {cfg.cluster!r} is not "
                                    f"in system.clusters of {first.display}; check remote_servers")
    shards: dict[int, list[Endpoint]] = {}
    for shard_num, _replica, host in rows:
        shards.setdefault(int(shard_num), []).append(dataclasses.replace(first, host=str(host)))
    return Topology(tuple(tuple(shards[n]) for n in sorted(shards)), suffix)


def shard_expression(table: Table, shards: int) -> str:
    """The shard index (0-based, cluster order) of a row, as Distributed computes it for equal weights."""
    return f"({table.sharding_key}) % {shards}"


def _sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def routing_query(table: Table, keys: dict[str, list[Any]], shards: int) -> str:
    """A query giving the shard of each distinct key row, parsed by ClickHouse with the table's own types
    (so the hash sees exactly the values the insert will store)."""
    structure = ", ".join(["`_i` UInt32"] + [f"`{column}` {type_}" for column, type_ in table.shard_by])
    rows = len(keys[table.shard_by[0][0]])
    data = orjson.dumps({"_i": list(range(rows)), **{column: keys[column] for column, _ in table.shard_by}}).decode()
    return (f"SELECT {shard_expression(table, shards)} FROM format(JSONColumns, {_sql_string(structure)}, "
            f"{_sql_string(data)}) ORDER BY _i")


def _columns(block: bytes, fmt: str) -> dict[str, list[Any]]:
    if fmt == FORMAT_NATIVE:
        columns = row_blocks.decode(block, fmt)
        for name, type_ in row_blocks.types(block):
            if type_.startswith("DateTime64("):  # ticks as the text JSONColumns carries: the routing query parses it
                scale = int(type_[len("DateTime64("):].split(",")[0].rstrip(")"))
                columns[name] = [_datetime64_text(v, scale) for v in columns[name]]
        return columns
    columns = orjson.loads(block)
    if not isinstance(columns, dict):
        raise ValueError("not a JSONColumns object")
    return columns


def _datetime64_text(ticks: int, scale: int) -> str:
    seconds, fraction = divmod(ticks, 10 ** scale)
    return f"{seconds:010d}.{fraction:0{scale}d}" if scale else f"{seconds:010d}"


def _rows(columns: dict[str, list[Any]]) -> int:
    return min((len(v) for v in columns.values() if isinstance(v, list)), default=0)


class Router:
    """Splits row blocks by shard, asking ClickHouse for the shard of each distinct key."""

    def __init__(self, shards: int, query: Callable[[str], list[int]]) -> None:
        self.shards = shards
        self.query = query  # runs a routing query, returns one shard index per row; raises like a client

    def split(self, table: Table, blocks: list[bytes], fmt: str = FORMAT_JSON) -> list[list[bytes]]:
        """Per shard, the blocks' rows that belong there (same order, empty blocks left out).

        Deterministic: the same blocks always split the same way, which the per-shard tokens rely on. A
        block ClickHouse cannot route (a key value it cannot parse) goes whole to shard 0, where the insert
        dead-letters its bad rows."""
        parsed: list[dict[str, list[Any]] | None] = []
        for block in blocks:
            try:
                parsed.append(_columns(block, fmt))
            except (orjson.JSONDecodeError, ValueError):
                parsed.append(None)  # not readable: the insert will refuse it on shard 0
        try:
            assignment = self._assign(table, [c for c in parsed if c is not None])
        except _Unroutable:
            assignment = []
            for columns in parsed:
                try:
                    assignment.extend(self._assign(table, [columns]) if columns is not None else [])
                except _Unroutable:
                    assignment.append([0] * _rows(columns or {}))
        out: list[list[bytes]] = [[] for _ in range(self.shards)]
        routed = iter(assignment)
        for block, columns in zip(blocks, parsed):
            if columns is None:
                out[0].append(block)
                continue
            rows_of: list[list[int]] = [[] for _ in range(self.shards)]
            for row, shard in enumerate(next(routed)):
                rows_of[shard].append(row)
            for shard, picked in enumerate(rows_of):
                if len(picked) == _rows(columns):
                    out[shard].append(block)  # all here: keep the bytes as they came
                elif picked:
                    out[shard].append(row_blocks.take(block, fmt, picked))
        return out

    def _assign(self, table: Table, blocks: list[dict[str, list[Any]]]) -> list[list[int]]:
        """The shard of every row of every block, from one query over the distinct keys."""
        index: dict[bytes, int] = {}
        keys: dict[str, list[Any]] = {column: [] for column, _ in table.shard_by}
        per_block: list[list[int]] = []
        for columns in blocks:
            n = _rows(columns)
            key_columns = [columns.get(column) for column, _ in table.shard_by]
            slots = []
            for row in range(n):
                values = [c[row] if isinstance(c, list) and row < len(c) else None for c in key_columns]
                key = orjson.dumps(values)  # map order kept: cityHash64 of a Map depends on it
                slot = index.get(key)
                if slot is None:
                    slot = index[key] = len(index)
                    for (column, _), value in zip(table.shard_by, values):
                        keys[column].append(value)  # None: the column's default, as the insert stores it
                slots.append(slot)
            per_block.append(slots)
        if not index:
            return [[] for _ in blocks]
        shards = self.query(routing_query(table, keys, self.shards))
        if len(shards) != len(index):
            raise RuntimeError(f"routing {table.name}: {len(shards)} answers for {len(index)} keys")
        return [[shards[slot] for slot in slots] for slots in per_block]


class _Unroutable(Exception):
    """ClickHouse refused the key values themselves (a data error): route the block another way."""


class ShardedInserter:
    """The sink's writer for several shards: split by the sharding key, then one idempotent insert per shard.

    Same interface as `Inserter.insert`. Shards are written one after the other; the batch is done (and
    its offsets committed) only when every shard has acknowledged its part."""

    def __init__(self, topo: Topology, settings: Settings, database: str, *, backoff_max_s: float,
                 on_retry: Callable[[str, str], None] = lambda reason, table: None,
                 sleep: Callable[[float], None] = time.sleep,
                 connect: Callable[[Endpoint], Any] | None = None) -> None:
        self.topology = topo
        self.database = database
        self.backoff_max_s = backoff_max_s
        self.on_retry, self.sleep = on_retry, sleep
        self._connect = connect or (lambda e: clickhouse.connect_endpoint(e, settings, database=database))
        self.inserters = [Inserter(self._replica_connector(replicas), database, backoff_max_s=backoff_max_s,
                                   on_retry=on_retry, sleep=sleep) for replicas in topo.shards]
        self.router = Router(len(topo.shards), self._route_query)
        self._router_client: Any = None
        self._router_shard = 0

    def _replica_connector(self, replicas: tuple[Endpoint, ...]) -> Callable[[], Any]:
        """Connect to the shard's replicas in turn: each reconnect after a failure tries the next one."""
        turn = [0]

        def connect() -> Any:
            endpoint = replicas[turn[0] % len(replicas)]
            turn[0] += 1
            return self._connect(endpoint)
        return connect

    def _route_query(self, sql: str) -> list[int]:
        """Run a routing query on any shard (each computes the same hash), retrying transient failures on
        the next shard, without limit like the inserts."""
        backoff = 0.2
        while True:
            try:
                if self._router_client is None:
                    self._router_client = self._connect(self.topology.shards[self._router_shard][0])
                rows = self._router_client.query(sql, settings={"max_query_size": len(sql) + 4096}).result_rows
                return [int(row[0]) for row in rows]
            except Exception as exc:
                kind, code = classify(exc)
                if kind == DATA:
                    raise _Unroutable(str(exc)) from exc
                self._router_client = None
                if kind == TRANSIENT:
                    self._router_shard = (self._router_shard + 1) % len(self.topology.shards)
                self.on_retry(f"route:{kind}" if code is None else f"route:{kind}:{code}", "routing")
                log.warning("routing query failed (%s), retry in %.1fs: %s", kind, backoff,
                            str(exc).splitlines()[0][:300])
                self.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)

    def insert(self, table: str, blocks: list[bytes], token: str, fmt: str = FORMAT_JSON) -> list[Rejected]:
        definition = TABLES.get(table)
        if definition is None:
            raise ValueError(f"table {table!r} has no sharding key in sinks/schema.py; cannot route it to a shard")
        parts = self.router.split(definition, blocks, fmt)
        shards = len(parts)
        rejected: list[Rejected] = []
        for shard, part in enumerate(parts):
            if not part:
                continue
            shard_token = f"{token}/shard{shard}of{shards}"
            for item in self.inserters[shard].insert(self.topology.table(table), part, shard_token, fmt):
                rejected.append(dataclasses.replace(item, table=table))  # dead letters name the logical table
        return rejected


def writer(settings: Settings, *, backoff_max_s: float, on_retry: Callable[[str, str], None],
           sleep: Callable[[float], None]) -> Inserter | ShardedInserter:
    """The sink's writer: a plain Inserter for one server or the embedded engine (tokens unchanged), a
    ShardedInserter when there are several shards or a cluster."""
    database = settings.clickhouse.database
    if settings.clickhouse.url and (settings.clickhouse.cluster or len(settings.clickhouse.url) > 1):
        topo = topology(settings)
        cluster = settings.clickhouse.cluster
        log.info("writing to %d shard(s)%s: %s", len(topo.shards),
                 f" of cluster {cluster} (tables *{topo.local_suffix})" if topo.local_suffix else "",
                 "; ".join(", ".join(e.display for e in replicas) for replicas in topo.shards))
        return ShardedInserter(topo, settings, database, backoff_max_s=backoff_max_s, on_retry=on_retry, sleep=sleep)
    return Inserter(lambda: clickhouse.connect(settings, database=database, in_process=False), database,
                    backoff_max_s=backoff_max_s, on_retry=on_retry, sleep=sleep)
