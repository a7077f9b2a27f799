"""`maple replay`: run a stage again from an offset, a timestamp or the earliest retained record.

Why it is safe (docs/operations.md has the long form): the sink keeps, per input partition, watermarks of
the source positions it already inserted, in its commit metadata (docs/exactly-once.md).

* sink, in place, default: the group's offsets move back and the watermarks stay. Every re-read batch is
  at or below them and is dropped, so a replay over rows that are already there changes nothing.
* sink, in place, ``--reinsert`` (after a TRUNCATE or lost data): per partition, the watermark of each
  source found in the replayed range is lowered to just before its first position there, and the replay
  epoch is raised so the new inserts carry tokens ClickHouse has never seen. Guarded: refused while the
  target tables still hold rows in the replayed time range, unless ``--force``.
* worker, in place: needs ``--reinsert`` (without it the sink would drop every regenerated batch as a
  copy). The worker group is rewound, then the sink's watermarks for those raw partitions are lowered
  to just before the new start. Both groups must be stopped and the sink caught up, so that nothing of
  those sources is still waiting in the processed topics.
* sink, ``--into-database DB``: a one-shot sink with its own group writes the range into another
  database while the live one is untouched; it has its own tokens and watermarks, so it is exactly-once
  and running it again resumes where it stopped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from maple import clickhouse
from maple.consumer import Cluster, Commit, headers_of
from maple.kafka import bootstrap_servers
from maple.settings import Settings
from maple.topics import ALL_TOPICS, HEADER_ROWS, HEADER_SOURCE, HEADER_TABLE, SourcePosition, Topic
from ops.groups import OpsError, require_stopped, stage_topics
from ops.progress import Progress
from sinks.batch import decode_epoch, decode_state, encode_state

TIME_COLUMNS = ("Timestamp", "TimeUnix")  # the event-time column of Maple's tables (logs/traces, metrics)
# Event times run ahead of the Kafka times of the row batches carrying them (ingest, worker): widen the
# guard's window by this much on both sides. A false refusal costs a --force; a missed one costs duplicates.
GUARD_SLACK_MS = 10 * 60 * 1000


@dataclass(frozen=True)
class Start:
    """Where a replay starts: the earliest retained offset, a time (Unix ms), or explicit offsets."""

    kind: str  # "earliest" | "time" | "offsets"
    ms: int | None = None
    offsets: dict[tuple[str | None, int], int] = field(default_factory=dict)  # (topic or None, partition) -> offset


@dataclass
class Move:
    topic: str
    partition: int
    committed: int
    target: int
    low: int
    high: int
    metadata: str = ""
    rows: int | None = None          # rows in the replayed range (processed topics), when scanned
    note: str = ""

    @property
    def messages(self) -> int:
        return self.committed - self.target


@dataclass
class Plan:
    stage: str
    group: str
    mode: str                        # "keep" | "reinsert" | "into-database"
    moves: list[Move]
    skipped: list[str] = field(default_factory=list)
    sink_group: str | None = None
    sink_updates: list[tuple[str, int, int, str]] = field(default_factory=list)  # worker replays: lowered sink
    # metadata, as (topic, partition, offset, metadata)
    tables: dict[str, tuple[int, int]] = field(default_factory=dict)  # table -> (min, max) Kafka ms replayed
    guard: dict[str, int] = field(default_factory=dict)  # table -> rows already there in that range
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "group": self.group, "mode": self.mode, "sink_group": self.sink_group,
                "moves": [{"topic": m.topic, "partition": m.partition, "committed": m.committed, "new_offset": m.target,
                           "messages": m.messages, "rows": m.rows, "note": m.note} for m in self.moves],
                "skipped": self.skipped, "guard": self.guard, "notes": self.notes}


# -- where to start ---------------------------------------------------------------------------------


def _scope(cluster: Cluster, stage: str, group: str, topics: list[str] | None,
           commits: dict[tuple[str, int], Commit]) -> list[str]:
    if topics:
        for topic in topics:
            cluster.partitions(topic)  # exists, or an error naming it
        return sorted(set(topics))
    maple_names = {t.name for t in ALL_TOPICS}
    names = sorted({topic for topic, _ in commits if topic in maple_names} or set())
    if not names:
        raise OpsError(f"group {group} has no committed offsets on Maple's topics ({', '.join(stage_topics(stage))}): "
                       "nothing to rewind; a group that never committed reads from the earliest offset anyway")
    return names


def _targets(cluster: Cluster, names: list[str], start: Start) -> dict[tuple[str, int], int]:
    tps = [(topic, p) for topic in names for p in cluster.partitions(topic)]
    if start.kind == "earliest":
        return {(t, p): cluster.watermarks(t, p)[0] for t, p in tps}
    if start.kind == "time":
        assert start.ms is not None
        return cluster.offsets_for_time(tps, start.ms)
    out: dict[tuple[str, int], int] = {}
    for (topic, partition), offset in start.offsets.items():
        if topic is None:
            if len(names) != 1:
                raise OpsError(f"--offset {partition}={offset} names no topic; write TOPIC:{partition}={offset} "
                               "or give exactly one --topic")
            topic = names[0]
        if topic not in names:
            raise OpsError(f"--offset {topic}:{partition}={offset}: topic {topic} is not in this replay's scope "
                           f"({', '.join(names)})")
        if (topic, partition) not in tps:
            raise OpsError(f"--offset {topic}:{partition}={offset}: {topic} has no partition {partition}")
        low, high = cluster.watermarks(topic, partition)
        if not low <= offset <= high:
            raise OpsError(f"--offset {topic}:{partition}={offset}: outside the retained range {low}..{high}")
        out[(topic, partition)] = offset
    return out


def _moves(cluster: Cluster, group: str, targets: dict[tuple[str, int], int],
           commits: dict[tuple[str, int], Commit], skipped: list[str]) -> list[Move]:
    moves = []
    for (topic, partition), target in sorted(targets.items()):
        low, high = cluster.watermarks(topic, partition)
        if (topic, partition) not in commits:
            skipped.append(f"{topic}[{partition}]: group {group} never committed it; it reads it from the "
                           "earliest offset anyway")
            continue
        offset, metadata = commits[(topic, partition)].offset, commits[(topic, partition)].metadata
        if target > offset:
            raise OpsError(f"{topic}[{partition}]: the replay start {target} is past group {group}'s committed "
                           f"offset {offset}; a replay only moves back (moving forward would skip "
                           f"{target - offset} unprocessed messages)")
        moves.append(Move(topic, partition, offset, target, low, high, metadata))
    return moves


# -- reading a range ---------------------------------------------------------------------------------


@dataclass
class _Scan:
    first: dict[tuple[str, int], dict[str, tuple[int, int]]] = field(default_factory=dict)  # partition -> key -> pos
    rows: dict[tuple[str, int], int] = field(default_factory=dict)
    tables: dict[str, tuple[int, int]] = field(default_factory=dict)
    rows_by_source: dict[str, int] = field(default_factory=dict)


def _scan(cluster: Cluster, ranges: list[tuple[str, int, int, int]], what: str,
          keep: Callable[[str, int, int, SourcePosition], bool] = lambda *_: True) -> _Scan:
    """Read [start, stop) of each partition's row batches (headers only matter) and summarise them."""
    scan = _Scan()
    ranges = [r for r in ranges if r[3] > r[2]]
    if not ranges:
        return scan
    progress = Progress(what, sum(stop - start for _, _, start, stop in ranges))
    read = rows = 0
    try:
        for message in cluster.read(ranges):
            topic, partition, offset = message.topic() or "", message.partition() or 0, message.offset() or 0
            read += 1
            headers = headers_of(message)
            raw_source = headers.get(HEADER_SOURCE)
            source = SourcePosition.parse(raw_source) if raw_source else SourcePosition(topic, partition, offset)
            if keep(topic, partition, offset, source):
                key = (topic, partition)
                scan.first.setdefault(key, {}).setdefault(source.key, (source.offset, source.part))
                n = int(headers.get(HEADER_ROWS, b"0") or 0)
                rows += n
                scan.rows[key] = scan.rows.get(key, 0) + n
                scan.rows_by_source[source.key] = scan.rows_by_source.get(source.key, 0) + n
                table = headers.get(HEADER_TABLE, b"").decode(errors="replace")
                if table:
                    stamp = message.timestamp()[1]
                    low, high = scan.tables.get(table, (stamp, stamp))
                    scan.tables[table] = (min(low, stamp), max(high, stamp))
            if read % 1000 == 0:
                progress.update(read, rows)
        progress.update(read, rows, force=True)
    finally:
        progress.done()
    return scan


def _guard(settings: Settings, database: str, tables: dict[str, tuple[int, int]]) -> dict[str, int]:
    """Rows each table already holds in the replayed time range (event time vs. the records' Kafka times)."""
    out: dict[str, int] = {}
    client = clickhouse.connect(settings)
    try:
        for table, (low_ms, high_ms) in sorted(tables.items()):
            columns = {name for (name,) in client.query(
                "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String}",
                parameters={"db": database, "t": table}).result_rows}
            if not columns:
                raise OpsError(f"table {database}.{table} does not exist; run `maple schema apply` first")
            column = next((c for c in TIME_COLUMNS if c in columns), None)
            if column is None:
                raise OpsError(f"table {database}.{table} has no {' or '.join(TIME_COLUMNS)} column to check the "
                               "replayed time range against; use --force if you are sure it is empty")
            [(count,)] = client.query(
                f"SELECT count() FROM `{database}`.`{table}` WHERE `{column}` BETWEEN "
                "fromUnixTimestamp64Milli({lo:Int64}) AND fromUnixTimestamp64Milli({hi:Int64})",
                parameters={"lo": low_ms - GUARD_SLACK_MS, "hi": high_ms + GUARD_SLACK_MS}).result_rows
            out[table] = int(count)
    finally:
        client.close()
    return out


def _check_guard(plan: Plan, database: str, force: bool) -> None:
    full = {table: n for table, n in plan.guard.items() if n}
    if full and not force:
        listing = ", ".join(f"{database}.{table}: {n:,} rows" for table, n in sorted(full.items()))
        raise OpsError(f"--reinsert refused: the target tables still hold rows in the replayed time range "
                       f"({listing}); re-inserting would duplicate them. Remove them first (TRUNCATE, DROP "
                       "PARTITION), replay without --reinsert (a no-op over rows already there), or pass --force")


# -- planning ------------------------------------------------------------------------------------------


def plan_sink(settings: Settings, group: str, topics: list[str] | None, start: Start, *, reinsert: bool,
              force: bool, scan_rows: bool) -> Plan:
    with Cluster(bootstrap_servers(settings)) as cluster:
        return _plan_sink(settings, cluster, group, topics, start, reinsert=reinsert, force=force,
                          scan_rows=scan_rows)


def _plan_sink(settings: Settings, cluster: Cluster, group: str, topics: list[str] | None, start: Start, *,
               reinsert: bool, force: bool, scan_rows: bool) -> Plan:
    require_stopped(cluster, group, "rewinding it")
    commits = cluster.committed(group)
    names = _scope(cluster, "sink", group, topics, commits)
    plan = Plan("sink", group, "reinsert" if reinsert else "keep", [])
    plan.moves = _moves(cluster, group, _targets(cluster, names, start), commits, plan.skipped)
    for move in plan.moves:
        wm, end = decode_state(move.metadata)
        if end is not None:
            raise OpsError(f"{move.topic}[{move.partition}]: group {group} stopped in the middle of a batch "
                           f"({move.committed}-{end}); start a sink to finish it, stop it, then replay")
    scan = _Scan()
    if reinsert or scan_rows:
        scan = _scan(cluster, [(m.topic, m.partition, m.target, m.committed) for m in plan.moves],
                     f"reading {group}'s replay range")
        for move in plan.moves:
            move.rows = scan.rows.get((move.topic, move.partition), 0)
        plan.tables = scan.tables
    for move in plan.moves:
        wm, _ = decode_state(move.metadata)
        epoch = decode_epoch(move.metadata)
        if reinsert and move.messages:
            for key, (offset, part) in scan.first.get((move.topic, move.partition), {}).items():
                lowered = (offset, part - 1)
                if key in wm and wm[key] > lowered:
                    wm[key] = lowered
            epoch += 1
        move.metadata = encode_state(wm, epoch=epoch)
    if reinsert:
        plan.guard = _guard(settings, settings.clickhouse.database, plan.tables)
        _check_guard(plan, settings.clickhouse.database, force)
    else:
        plan.notes.append("watermarks kept: batches already inserted are dropped when re-read (counts do not "
                          "change); use --reinsert after rows were removed")
    return plan


def plan_worker(settings: Settings, group: str, sink_group: str, topics: list[str] | None, start: Start, *,
                reinsert: bool, force: bool) -> Plan:
    if not reinsert:
        raise OpsError(f"rewinding worker group {group} alone changes nothing: the sink drops the regenerated "
                       "batches as copies of what it has. After rows were removed, add --reinsert (it also "
                       f"lowers sink group {sink_group}'s watermarks); to rebuild a table from the processed "
                       "topics use `maple replay sink --into-database`")
    with Cluster(bootstrap_servers(settings)) as cluster:
        return _plan_worker(settings, cluster, group, sink_group, topics, start, force=force)


def _plan_worker(settings: Settings, cluster: Cluster, group: str, sink_group: str, topics: list[str] | None,
                 start: Start, *, force: bool) -> Plan:
    require_stopped(cluster, group, "rewinding it")
    require_stopped(cluster, sink_group, "lowering its watermarks for a worker replay")
    commits = cluster.committed(group)
    names = _scope(cluster, "worker", group, topics, commits)
    plan = Plan("worker", group, "reinsert", [], sink_group=sink_group)
    plan.moves = _moves(cluster, group, _targets(cluster, names, start), commits, plan.skipped)
    new_start = {f"{m.topic}/{m.partition}": m.target for m in plan.moves if m.messages}
    sink_commits = cluster.committed(sink_group)
    affected: list[tuple[str, int, int, int]] = []
    for (topic, partition), commit in sorted(sink_commits.items()):
        offset, metadata = commit.offset, commit.metadata
        wm, end = decode_state(metadata)
        keys = [key for key in new_start if key in wm and wm[key] >= (new_start[key], 0)]
        if not keys:
            continue
        if end is not None:
            raise OpsError(f"{topic}[{partition}]: sink group {sink_group} stopped in the middle of a batch "
                           f"({offset}-{end}); start a sink to finish it, stop it, then replay")
        high = cluster.watermarks(topic, partition)[1]
        if high > offset:
            raise OpsError(f"{topic}[{partition}]: sink group {sink_group} is {high - offset} messages behind; "
                           "stop the workers first, let the sinks catch up (`maple lag`), then stop the sinks "
                           "and replay")
        for key in keys:
            wm[key] = (new_start[key], -1)
        plan.sink_updates.append((topic, partition, offset, encode_state(wm, epoch=decode_epoch(metadata))))
        # Where this partition's batches of the replayed sources start, roughly: find them by time.
        affected.append((topic, partition, offset, high))
    first_ms = _first_timestamps(cluster, plan.moves)
    if affected and first_ms:
        since = min(first_ms.values())
        starts = cluster.offsets_for_time([(t, p) for t, p, _, _ in affected], since)
        scan = _scan(cluster, [(t, p, starts[(t, p)], high) for t, p, _, high in affected],
                     f"reading {sink_group}'s batches of the replayed sources",
                     keep=lambda _t, _p, _o, src: src.key in new_start and src.offset >= new_start[src.key])
        for move in plan.moves:
            move.rows = scan.rows_by_source.get(f"{move.topic}/{move.partition}", 0)
        plan.tables = scan.tables
    plan.guard = _guard(settings, settings.clickhouse.database, plan.tables)
    _check_guard(plan, settings.clickhouse.database, force)
    for move in plan.moves:
        move.metadata = ""  # Faust keeps nothing in its commit metadata
    return plan


def _first_timestamps(cluster: Cluster, moves: list[Move]) -> dict[tuple[str, int], int]:
    stamps = cluster.first_timestamps([(m.topic, m.partition, m.target) for m in moves if m.messages])
    return {key: int(seconds * 1000) for key, seconds in stamps.items()}


def execute(settings: Settings, plan: Plan) -> None:
    """Apply an in-place plan: the stage's offsets first, then (worker replays) the sink's watermarks.

    In that order a failure in between leaves the worker rewound and the sink dropping its output as
    copies: nothing is duplicated, and running the same replay again completes it."""
    with Cluster(bootstrap_servers(settings)) as cluster:
        require_stopped(cluster, plan.group, "rewinding it")
        cluster.commit(plan.group, [(m.topic, m.partition, m.target, m.metadata) for m in plan.moves])
        if plan.sink_group and plan.sink_updates:
            require_stopped(cluster, plan.sink_group, "lowering its watermarks")
            cluster.commit(plan.sink_group, plan.sink_updates)


# -- into another database -----------------------------------------------------------------------------


@dataclass
class JobResult:
    group: str
    database: str
    resumed: bool
    messages: int
    rows: int
    seconds: float


def run_into_database(settings: Settings, database: str, group: str, topics: list[str] | None, start: Start, *,
                      dry_run: bool = False) -> tuple[Plan, JobResult | None]:
    """Replay processed topics into `database` with a one-shot sink of its own group `group`.

    The first run commits the start offsets for `group` (fresh metadata: no watermarks, its own tokens);
    a later run with the same group resumes from its commits, so the job can be stopped and run again
    without duplicating anything. It stops once every partition reached the end offsets seen at start."""
    if database == settings.clickhouse.database:
        raise OpsError(f"--into-database {database} is the live database; replay in place instead")
    with Cluster(bootstrap_servers(settings)) as cluster:
        return _run_into_database(settings, cluster, database, group, topics, start, dry_run=dry_run)


def _run_into_database(settings: Settings, cluster: Cluster, database: str, group: str, topics: list[str] | None,
                       start: Start, *, dry_run: bool) -> tuple[Plan, JobResult | None]:
    from maple import schema
    from sinks.runner import Sink

    require_stopped(cluster, group, "starting a replay job in it")
    commits = cluster.committed(group)
    plan = Plan("sink", group, "into-database", [])
    if topics:
        names = sorted(set(topics))
        for name in names:
            cluster.partitions(name)  # exists, or an error naming it
    else:
        existing = cluster.topics()
        names = [n for n in stage_topics("sink") if n in existing]
        plan.skipped.extend(f"{n}: no such topic yet" for n in stage_topics("sink") if n not in existing)
    resumed = bool(commits)
    if resumed:
        for (topic, partition), commit in sorted(commits.items()):
            if topic in names:
                low, high = cluster.watermarks(topic, partition)
                plan.moves.append(Move(topic, partition, high, commit.offset, low, high, note="resume"))
        plan.notes.append(f"group {group} exists: resuming from its commits (the start option is ignored)")
    else:
        for (topic, partition), target in sorted(_targets(cluster, names, start).items()):
            low, high = cluster.watermarks(topic, partition)
            plan.moves.append(Move(topic, partition, high, target, low, high, metadata=encode_state({})))
    # For this plan `committed` is the end to reach and `messages` what is left to read.
    if dry_run:
        return plan, None
    client = clickhouse.connect(settings)
    try:
        into = schema.Target(database, settings.clickhouse.ttl_days, settings.clickhouse.cluster)
        schema.apply(client, into, say=lambda _m: None)
    finally:
        client.close()
    if not resumed:
        cluster.commit(group, [(m.topic, m.partition, m.target, m.metadata) for m in plan.moves])
    job_settings = replace(settings, clickhouse=replace(settings.clickhouse, database=database),
                           sink=replace(settings.sink, group=group, metrics_port=0))
    by_name = {t.name: t for t in ALL_TOPICS}
    sink = Sink(job_settings, tuple(by_name.get(n, Topic(n, "", "sink", "")) for n in names))
    ends = {(m.topic, m.partition): m.committed for m in plan.moves}
    total = sum(max(0, m.messages) for m in plan.moves)
    progress = Progress(f"replaying into {database}", total)
    started = time.monotonic()
    failure: list[BaseException] = []

    def watch() -> None:
        try:
            while not sink.stopping.is_set():
                now = cluster.committed(group)
                left = sum(max(0, end - (now[key].offset if key in now else 0)) for key, end in ends.items())
                rows = int(sum(s.value for m in sink.metrics.rows.collect() for s in m.samples
                               if s.name.endswith("_total")))
                progress.update(total - left, rows)
                if left == 0:
                    sink.stopping.set()
                    return
                sink.stopping.wait(0.5)
        except BaseException as exc:  # the job must not run on unwatched
            failure.append(exc)
            sink.stopping.set()

    watcher = threading.Thread(target=watch, name="replay-watch", daemon=True)
    watcher.start()
    sink.run()
    watcher.join(30)
    rows = int(sum(s.value for m in sink.metrics.rows.collect() for s in m.samples if s.name.endswith("_total")))
    progress.update(progress.messages, rows, force=True)
    progress.done()
    if failure:
        raise OpsError(f"replay job into {database} stopped: {failure[0]}")
    return plan, JobResult(group, database, resumed, total, rows, time.monotonic() - started)


def describe_plan(plan: Plan, dry_run: bool) -> list[str]:
    """Human-readable lines: the offset moves and message (and row) counts per partition."""
    head = {"keep": "in place, watermarks kept (re-read batches already inserted are dropped)",
            "reinsert": "in place, --reinsert (watermarks lowered for the replayed range)",
            "into-database": "one-shot sink job into another database"}[plan.mode]
    lines = [f"{'dry run: ' if dry_run else ''}replay {plan.stage} group {plan.group}, {head}"]
    if plan.mode == "into-database":
        lines.append(f"{'topic':<22} {'partition':>9} {'from':>10} {'to (end)':>10} {'messages':>9}")
        for m in plan.moves:
            lines.append(f"{m.topic:<22} {m.partition:>9} {m.target:>10} {m.committed:>10} {m.messages:>9}")
    else:
        lines.append(f"{'topic':<22} {'partition':>9} {'committed':>10} {'new offset':>10} {'move':>8} "
                     f"{'messages':>9} {'rows':>9}")
        for m in plan.moves:
            rows = "-" if m.rows is None else f"{m.rows}"
            lines.append(f"{m.topic:<22} {m.partition:>9} {m.committed:>10} {m.target:>10} {-m.messages:>8} "
                         f"{m.messages:>9} {rows:>9}")
    total = sum(m.messages for m in plan.moves)
    lines.append(f"total: {total} messages" + (f", {sum(m.rows or 0 for m in plan.moves)} rows"
                                                  if any(m.rows is not None for m in plan.moves) else ""))
    if plan.sink_updates:
        lines.append(f"sink group {plan.sink_group}: watermarks lowered on "
                     + ", ".join(f"{topic}[{partition}]" for topic, partition, _, _ in plan.sink_updates))
    for table, n in sorted(plan.guard.items()):
        lines.append(f"guard: {table} holds {n} rows in the replayed time range")
    lines.extend(f"skipped {s}" for s in plan.skipped)
    lines.extend(f"note: {n}" for n in plan.notes)
    return lines
