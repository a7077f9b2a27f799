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

from confluent_kafka import Consumer, TopicPartition

from maple import clickhouse
from maple.kafka import bootstrap_servers
from maple.settings import Settings
from maple.topics import ALL_TOPICS, HEADER_ROWS, HEADER_SOURCE, HEADER_TABLE, SourcePosition, Topic
from ops.groups import (
    OpsError,
    commit,
    committed,
    offsets_for_time,
    ops_consumer,
    partitions_of,
    require_stopped,
    stage_topics,
    watermarks,
)
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
    sink_updates: list[TopicPartition] = field(default_factory=list)  # worker replays: lowered sink metadata
    tables: dict[str, tuple[int, int]] = field(default_factory=dict)  # table -> (min, max) Kafka ms replayed
    guard: dict[str, int] = field(default_factory=dict)  # table -> rows already there in that range
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "group": self.group, "mode": self.mode, "sink_group": self.sink_group,
                "moves": [{"topic": m.topic, "partition": m.partition, "committed": m.committed, "new_offset": m.target,
                           "messages": m.messages, "rows": m.rows, "note": m.note} for m in self.moves],
                "skipped": self.skipped, "guard": self.guard, "notes": self.notes}


# -- where to start ---------------------------------------------------------------------------------


def _scope(consumer: Consumer, stage: str, group: str, topics: list[str] | None,
           commits: dict[tuple[str, int], tuple[int, str]]) -> list[str]:
    if topics:
        for topic in topics:
            partitions_of(consumer, topic)  # exists, or an error naming it
        return sorted(set(topics))
    maple_names = {t.name for t in ALL_TOPICS}
    names = sorted({topic for topic, _ in commits if topic in maple_names} or set())
    if not names:
        raise OpsError(f"group {group} has no committed offsets on Maple's topics ({', '.join(stage_topics(stage))}): "
                       "nothing to rewind; a group that never committed reads from the earliest offset anyway")
    return names


def _targets(consumer: Consumer, names: list[str], start: Start) -> dict[tuple[str, int], int]:
    tps = [(topic, p) for topic in names for p in partitions_of(consumer, topic)]
    if start.kind == "earliest":
        return {(t, p): watermarks(consumer, t, p)[0] for t, p in tps}
    if start.kind == "time":
        assert start.ms is not None
        return offsets_for_time(consumer, tps, start.ms)
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
        low, high = watermarks(consumer, topic, partition)
        if not low <= offset <= high:
            raise OpsError(f"--offset {topic}:{partition}={offset}: outside the retained range {low}..{high}")
        out[(topic, partition)] = offset
    return out


def _moves(consumer: Consumer, group: str, targets: dict[tuple[str, int], int],
           commits: dict[tuple[str, int], tuple[int, str]], skipped: list[str]) -> list[Move]:
    moves = []
    for (topic, partition), target in sorted(targets.items()):
        low, high = watermarks(consumer, topic, partition)
        if (topic, partition) not in commits:
            skipped.append(f"{topic}[{partition}]: group {group} never committed it; it reads it from the "
                           "earliest offset anyway")
            continue
        offset, metadata = commits[(topic, partition)]
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


def _scan(bootstrap: str, ranges: list[tuple[str, int, int, int]], what: str,
          keep: Callable[[str, int, int, SourcePosition], bool] = lambda *_: True) -> _Scan:
    """Read [start, stop) of each partition's row batches (headers only matter) and summarise them."""
    scan = _Scan()
    ranges = [r for r in ranges if r[3] > r[2]]
    if not ranges:
        return scan
    total = sum(stop - start for _, _, start, stop in ranges)
    progress = Progress(what, total)
    consumer = ops_consumer(bootstrap)
    stops = {(t, p): stop for t, p, _, stop in ranges}
    done: set[tuple[str, int]] = set()
    read = rows = 0
    try:
        consumer.assign([TopicPartition(t, p, start) for t, p, start, _ in ranges])
        idle_since = time.monotonic()
        while len(done) < len(ranges):
            batch = consumer.consume(num_messages=2000, timeout=0.5)
            if not batch:
                if time.monotonic() - idle_since > 60:
                    missing = ", ".join(f"{t}[{p}]" for t, p in stops if (t, p) not in done)
                    raise OpsError(f"reading {missing} stalled: no records for 60 s before the expected offsets")
                continue
            idle_since = time.monotonic()
            for message in batch:
                if message.error():
                    continue
                key = (message.topic(), message.partition())
                offset = message.offset()
                if key in done or offset >= stops[key]:
                    if key not in done:
                        done.add(key)
                        consumer.pause([TopicPartition(*key)])
                    continue
                read += 1
                if offset >= stops[key] - 1:
                    done.add(key)
                    consumer.pause([TopicPartition(*key)])
                headers = {k: v for k, v in (message.headers() or []) if v is not None}
                raw_source = headers.get(HEADER_SOURCE)
                source = (SourcePosition.parse(raw_source) if raw_source
                          else SourcePosition(key[0], key[1], offset))
                if not keep(key[0], key[1], offset, source):
                    continue
                first = scan.first.setdefault(key, {})
                first.setdefault(source.key, (source.offset, source.part))
                n = int(headers.get(HEADER_ROWS, b"0") or 0)
                rows += n
                scan.rows[key] = scan.rows.get(key, 0) + n
                scan.rows_by_source[source.key] = scan.rows_by_source.get(source.key, 0) + n
                table = headers.get(HEADER_TABLE, b"").decode(errors="replace")
                if table:
                    stamp = message.timestamp()[1]
                    low, high = scan.tables.get(table, (stamp, stamp))
                    scan.tables[table] = (min(low, stamp), max(high, stamp))
            progress.update(read, rows)
    finally:
        consumer.close()
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
    bootstrap = bootstrap_servers(settings)
    require_stopped(bootstrap, group, "rewinding it")
    commits = committed(bootstrap, group)
    consumer = ops_consumer(bootstrap)
    try:
        names = _scope(consumer, "sink", group, topics, commits)
        plan = Plan("sink", group, "reinsert" if reinsert else "keep", [])
        plan.moves = _moves(consumer, group, _targets(consumer, names, start), commits, plan.skipped)
    finally:
        consumer.close()
    for move in plan.moves:
        wm, end = decode_state(move.metadata)
        if end is not None:
            raise OpsError(f"{move.topic}[{move.partition}]: group {group} stopped in the middle of a batch "
                           f"({move.committed}-{end}); start a sink to finish it, stop it, then replay")
    scan = _Scan()
    if reinsert or scan_rows:
        scan = _scan(bootstrap, [(m.topic, m.partition, m.target, m.committed) for m in plan.moves],
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
    bootstrap = bootstrap_servers(settings)
    require_stopped(bootstrap, group, "rewinding it")
    require_stopped(bootstrap, sink_group, "lowering its watermarks for a worker replay")
    commits = committed(bootstrap, group)
    consumer = ops_consumer(bootstrap)
    try:
        names = _scope(consumer, "worker", group, topics, commits)
        plan = Plan("worker", group, "reinsert", [], sink_group=sink_group)
        plan.moves = _moves(consumer, group, _targets(consumer, names, start), commits, plan.skipped)
        new_start = {f"{m.topic}/{m.partition}": m.target for m in plan.moves if m.messages}
        sink_commits = committed(bootstrap, sink_group)
        affected: list[tuple[str, int, int, int]] = []
        for (topic, partition), (offset, metadata) in sorted(sink_commits.items()):
            wm, end = decode_state(metadata)
            keys = [key for key in new_start if key in wm and wm[key] >= (new_start[key], 0)]
            if not keys:
                continue
            if end is not None:
                raise OpsError(f"{topic}[{partition}]: sink group {sink_group} stopped in the middle of a batch "
                               f"({offset}-{end}); start a sink to finish it, stop it, then replay")
            high = watermarks(consumer, topic, partition)[1]
            if high > offset:
                raise OpsError(f"{topic}[{partition}]: sink group {sink_group} is {high - offset} messages behind; "
                               "stop the workers first, let the sinks catch up (`maple lag`), then stop the sinks "
                               "and replay")
            for key in keys:
                wm[key] = (new_start[key], -1)
            plan.sink_updates.append(TopicPartition(topic, partition, offset, metadata=encode_state(
                wm, epoch=decode_epoch(metadata))))
            # Where this partition's batches of the replayed sources start, roughly: find them by time.
            affected.append((topic, partition, offset, high))
        first_ms = _first_timestamps(consumer, plan.moves)
    finally:
        consumer.close()
    if affected and first_ms:
        since = min(first_ms.values())
        consumer = ops_consumer(bootstrap)
        try:
            starts = offsets_for_time(consumer, [(t, p) for t, p, _, _ in affected], since)
        finally:
            consumer.close()
        scan = _scan(bootstrap, [(t, p, starts[(t, p)], high) for t, p, _, high in affected],
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


def _first_timestamps(consumer: Consumer, moves: list[Move]) -> dict[tuple[str, int], int]:
    from maple.lag import record_timestamps

    stamps = record_timestamps(consumer, [TopicPartition(m.topic, m.partition, m.target) for m in moves if m.messages])
    return {key: int(seconds * 1000) for key, seconds in stamps.items()}


def execute(settings: Settings, plan: Plan) -> None:
    """Apply an in-place plan: the stage's offsets first, then (worker replays) the sink's watermarks.

    In that order a failure in between leaves the worker rewound and the sink dropping its output as
    copies: nothing is duplicated, and running the same replay again completes it."""
    bootstrap = bootstrap_servers(settings)
    require_stopped(bootstrap, plan.group, "rewinding it")
    commit(bootstrap, plan.group, [TopicPartition(m.topic, m.partition, m.target, metadata=m.metadata)
                                   for m in plan.moves])
    if plan.sink_group and plan.sink_updates:
        require_stopped(bootstrap, plan.sink_group, "lowering its watermarks")
        commit(bootstrap, plan.sink_group, plan.sink_updates)


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
    from maple import schema
    from sinks.runner import Sink

    if database == settings.clickhouse.database:
        raise OpsError(f"--into-database {database} is the live database; replay in place instead")
    bootstrap = bootstrap_servers(settings)
    require_stopped(bootstrap, group, "starting a replay job in it")
    commits = committed(bootstrap, group)
    consumer = ops_consumer(bootstrap)
    try:
        plan = Plan("sink", group, "into-database", [])
        if topics:
            names = sorted(set(topics))
            for name in names:
                partitions_of(consumer, name)  # exists, or an error naming it
        else:
            existing = set(consumer.list_topics(timeout=30).topics)
            names = [n for n in stage_topics("sink") if n in existing]
            plan.skipped.extend(f"{n}: no such topic yet" for n in stage_topics("sink") if n not in existing)
        resumed = bool(commits)
        if resumed:
            for (topic, partition), (offset, _) in sorted(commits.items()):
                if topic in names:
                    low, high = watermarks(consumer, topic, partition)
                    plan.moves.append(Move(topic, partition, high, offset, low, high, note="resume"))
            plan.notes.append(f"group {group} exists: resuming from its commits (the start option is ignored)")
        else:
            for (topic, partition), target in sorted(_targets(consumer, names, start).items()):
                low, high = watermarks(consumer, topic, partition)
                plan.moves.append(Move(topic, partition, high, target, low, high, metadata=encode_state({})))
    finally:
        consumer.close()
    # For this plan `committed` is the end to reach and `messages` what is left to read.
    if dry_run:
        return plan, None
    client = clickhouse.connect(settings)
    try:
        target = schema.Target(database, settings.clickhouse.ttl_days, settings.clickhouse.cluster)
        schema.apply(client, target, say=lambda _m: None)
    finally:
        client.close()
    if not resumed:
        commit(bootstrap, group, [TopicPartition(m.topic, m.partition, m.target, metadata=m.metadata)
                                  for m in plan.moves])
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
                now = committed(bootstrap, group)
                left = sum(max(0, end - now.get(key, (0, ""))[0]) for key, end in ends.items())
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
                     + ", ".join(f"{tp.topic}[{tp.partition}]" for tp in plan.sink_updates))
    for table, n in sorted(plan.guard.items()):
        lines.append(f"guard: {table} holds {n} rows in the replayed time range")
    lines.extend(f"skipped {s}" for s in plan.skipped)
    lines.extend(f"note: {n}" for n in plan.notes)
    return lines
