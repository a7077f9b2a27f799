"""`maple dlq list|show|redrive`: look at dead letters and send them back once the cause is fixed.

Redrive is tracked by its own consumer group on maple.dlq (`<sink group>.dlq-redrive`), committed after
each letter's effect is acknowledged, so a second redrive starts after the first one's last letter:

* sink letters (row blocks ClickHouse refused, Native or JSONColumns) are inserted straight into their table with the
  token ``<the letter's token>/redrive/<sha256 of the payload>``. The sink cut big letters into pieces
  that share one token, and may have written the same letter twice when killed before its commit: the
  payload hash makes the token unique per piece and equal for copies. A redrive killed between insert
  and commit inserts again with the same token and ClickHouse drops it. Rows still refused are
  dead-lettered again (new letters, with the new error), the rest lands.
* worker letters (raw OTLP the worker could not decode) are produced back to their raw topic with their
  tenant (and a span batch's format), acked by Kafka, then committed; the worker processes them as new
  records. A redrive killed between that produce and the commit produces them again on the next run (at
  least once: see docs/operations.md).

Letters of other deployments sharing the topic (another sink group's token, another worker group) are
passed over and counted, never touched.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, Producer

from maple import blocks as row_blocks
from maple import clickhouse
from maple.consumer import Cluster, commit_one
from maple.deadletter import sink_letter
from maple.kafka import bootstrap_servers, consumer_config, producer_config
from maple.settings import Settings
from maple.topics import (
    DEAD_LETTER,
    HEADER_ERROR,
    HEADER_ERROR_CODE,
    HEADER_FORMAT,
    HEADER_GROUP,
    HEADER_REDRIVEN,
    HEADER_SOURCE,
    HEADER_SOURCE_RANGE,
    HEADER_STAGE,
    HEADER_TABLE,
    HEADER_TENANT,
    HEADER_TOKEN,
    SourcePosition,
)
from ops.groups import OpsError, require_stopped
from ops.progress import Progress
from sinks.writer import Inserter, Rejected

PREVIEW_ROWS = 5


def redrive_group(settings: Settings) -> str:
    return f"{settings.sink.group}.dlq-redrive"


@dataclass
class Letter:
    partition: int
    offset: int
    timestamp_ms: int
    stage: str
    table: str
    error: str
    code: int | None
    token: str
    source: str          # sink: the batch's source range; worker: the raw record's position
    group: str
    size: int  # bytes of the payload
    rows: int | None     # sink letters only (raw OTLP is not decoded for a listing)
    redriven: bool = False
    value: bytes = b""
    headers: tuple[tuple[str, bytes], ...] = ()
    fmt: str = row_blocks.FORMAT_JSON  # of a sink letter's rows

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("value")
        out.pop("headers")
        out["id"] = self.id
        out["bytes"] = out.pop("size")  # the name `maple dlq list --json` has always printed
        return out


def _letter(message: Any, settings: Settings) -> Letter:
    headers = tuple((k, v) for k, v in (message.headers() or []) if v is not None)
    h = dict(headers)

    def text(key: str) -> str:
        return h.get(key, b"").decode(errors="replace")

    stage = text(HEADER_STAGE) or "unknown"
    code = text(HEADER_ERROR_CODE)
    token = text(HEADER_TOKEN)
    if stage == "sink":
        group = token.split("/", 1)[0] if token else ""
    else:
        group = text(HEADER_GROUP) or settings.worker.group  # letters from before maple.group was written
    value = message.value() or b""
    try:
        fmt = row_blocks.format_of(h.get(HEADER_FORMAT))
    except ValueError:
        fmt = text(HEADER_FORMAT)
    return Letter(message.partition(), message.offset(), message.timestamp()[1], stage, text(HEADER_TABLE),
                  text(HEADER_ERROR), int(code) if code.isdigit() else None, token,
                  text(HEADER_SOURCE_RANGE) or text(HEADER_SOURCE), group, len(value),
                  row_blocks.count_rows(value, fmt) if stage == "sink" else None, value=value, headers=headers, fmt=fmt)


def _ours(letter: Letter, settings: Settings) -> bool:
    if letter.stage == "sink":
        return letter.group == settings.sink.group
    return letter.stage == "worker" and letter.group == settings.worker.group


def read_letters(settings: Settings, partitions: dict[int, tuple[int, int]] | None = None) -> list[Letter]:
    """Every letter in maple.dlq (or in the given partition -> [from, to) ranges), in partition order."""
    with Cluster(bootstrap_servers(settings)) as cluster:
        if partitions is None:
            partitions = {p: cluster.watermarks(DEAD_LETTER.name, p) for p in cluster.partitions(DEAD_LETTER.name)}
        by_partition: dict[int, list[Letter]] = {}
        for message in cluster.read([(DEAD_LETTER.name, p, lo, hi) for p, (lo, hi) in partitions.items()]):
            by_partition.setdefault(message.partition() or 0, []).append(_letter(message, settings))
    return [letter for p in sorted(by_partition) for letter in by_partition[p]]


def list_letters(settings: Settings, stage: str | None = None, table: str | None = None,
                 everyone: bool = False) -> list[Letter]:
    """This deployment's letters (or everyone's), marked redriven when the redrive group is past them."""
    letters = read_letters(settings)
    with Cluster(bootstrap_servers(settings)) as cluster:
        position = {p: c.offset for (t, p), c in cluster.committed(redrive_group(settings)).items()
                    if t == DEAD_LETTER.name}
    out = []
    for letter in letters:
        if not everyone and not _ours(letter, settings):
            continue
        if (stage and letter.stage != stage) or (table and letter.table != table):
            continue
        letter.redriven = letter.offset < position.get(letter.partition, 0)
        out.append(letter)
    return out


def parse_id(text: str) -> tuple[int, int]:
    partition, sep, offset = text.partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        raise OpsError(f"dead letter id {text!r}: expected PARTITION:OFFSET as `maple dlq list` prints it, e.g. 0:17")
    return int(partition), int(offset)


def show_letter(settings: Settings, letter_id: str) -> Letter:
    partition, offset = parse_id(letter_id)
    with Cluster(bootstrap_servers(settings)) as cluster:
        if partition not in cluster.partitions(DEAD_LETTER.name):
            raise OpsError(f"{DEAD_LETTER.name} has no partition {partition}")
        low, high = cluster.watermarks(DEAD_LETTER.name, partition)
    if not low <= offset < high:
        raise OpsError(f"no dead letter {letter_id}: {DEAD_LETTER.name}[{partition}] holds offsets {low}..{high - 1}")
    [letter] = read_letters(settings, {partition: (offset, offset + 1)})
    return letter


def preview(letter: Letter, rows: int = PREVIEW_ROWS) -> list[str]:
    """The first `rows` rows of a sink letter as JSON objects, or a hex preview of raw OTLP bytes."""
    if letter.stage != "sink":
        head = letter.value[:48]
        return [f"{letter.size} bytes of raw OTLP (protobuf), first {len(head)}: {head.hex(' ')}"]
    if letter.fmt == row_blocks.FORMAT_NATIVE:
        try:
            columns = row_blocks.decode(letter.value, letter.fmt)
        except ValueError:
            return [f"not a Native block ({letter.size} bytes): {letter.value[:200]!r}"]
        n = min((len(v) for v in columns.values()), default=0)
        return [orjson.dumps({k: v[i] for k, v in columns.items()}, default=repr).decode() for i in range(min(n, rows))]
    if letter.fmt != row_blocks.FORMAT_JSON:
        return [f"rows in an unknown format {letter.fmt!r} ({letter.size} bytes)"]
    out: list[str] = []
    for line in letter.value.split(b"\n"):
        try:
            columns = orjson.loads(line)
        except orjson.JSONDecodeError:
            return [f"not JSONColumns ({letter.size} bytes): {letter.value[:200]!r}"]
        if not isinstance(columns, dict):
            return [f"not JSONColumns ({letter.size} bytes): {letter.value[:200]!r}"]
        n = min((len(v) for v in columns.values() if isinstance(v, list)), default=0)
        for i in range(n):
            if len(out) >= rows:
                return out
            out.append(orjson.dumps({k: v[i] for k, v in columns.items() if isinstance(v, list)}).decode())
    return out


@dataclass
class RedriveResult:
    group: str
    letters: int = 0
    rows_inserted: int = 0
    rows_dead_lettered_again: int = 0
    raw_records_produced: int = 0
    not_ours: int = 0
    unredrivable: int = 0


def redrive(settings: Settings, *, timeout_s: float = 300.0, say: Callable[[str], None] = print) -> RedriveResult:
    """Send this deployment's letters not yet redriven back through the sink path; see the module doc."""
    bootstrap = bootstrap_servers(settings)
    group = redrive_group(settings)
    result = RedriveResult(group)
    with Cluster(bootstrap) as cluster:
        require_stopped(cluster, group, "redriving (another `maple dlq redrive` is running)")
        ends = {p: cluster.watermarks(DEAD_LETTER.name, p)[1] for p in cluster.partitions(DEAD_LETTER.name)}
        position = {p: c.offset for (t, p), c in cluster.committed(group).items() if t == DEAD_LETTER.name}
    total = sum(max(0, end - position.get(p, 0)) for p, end in ends.items())
    if total == 0:
        return result
    database = settings.clickhouse.database
    deadline = [time.monotonic() + timeout_s]

    def sleep(seconds: float) -> None:
        if time.monotonic() + seconds > deadline[0]:
            raise OpsError(f"ClickHouse did not accept the redrive within {timeout_s:.0f}s; nothing after the "
                           "current letter was committed, run it again")
        time.sleep(seconds)

    inserter = Inserter(lambda: clickhouse.connect(settings, database=database), database,
                        backoff_max_s=settings.sink.retry_backoff_max_s, sleep=sleep)
    producer = Producer(producer_config(bootstrap))
    errors: list[str] = []

    def delivered(err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            errors.append(err.str())

    def settle(what: str) -> None:
        if producer.flush(60) or errors:
            raise OpsError(f"{what}: Kafka did not acknowledge ({errors or 'timed out'}); not committed, run it again")

    consumer = Consumer(consumer_config(bootstrap, group, **{"enable.partition.eof": True}))
    progress = Progress("redriving dead letters", total)
    seen = rows = 0
    try:
        consumer.subscribe([DEAD_LETTER.name])
        finished = {p for p, end in ends.items() if position.get(p, 0) >= end}
        join_deadline = time.monotonic() + 60
        while len(finished) < len(ends):
            messages = consumer.consume(num_messages=100, timeout=0.5)
            if not messages and not consumer.assignment() and time.monotonic() > join_deadline:
                raise OpsError(f"group {group} got no partitions of {DEAD_LETTER.name} within 60 s")
            for message in messages:
                p, offset = message.partition() or 0, message.offset() or 0
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF and offset >= ends.get(p, 0):
                        finished.add(p)
                    continue
                if p in finished or offset >= ends[p]:
                    finished.add(p)
                    continue
                letter = _letter(message, settings)
                seen += 1
                if not _ours(letter, settings):
                    result.not_ours += 1
                elif (letter.stage == "sink" and letter.table and letter.token
                      and letter.fmt in (row_blocks.FORMAT_JSON, row_blocks.FORMAT_NATIVE)):
                    token = f"{letter.token}/redrive/{hashlib.sha256(letter.value).hexdigest()[:16]}"
                    deadline[0] = time.monotonic() + timeout_s
                    rejected = inserter.insert(letter.table, row_blocks.pieces(letter.value, letter.fmt), token,
                                               letter.fmt)
                    refused = sum(r.rows for r in rejected)
                    for item in rejected:
                        _dead_letter_again(producer, item, letter, delivered)
                    settle(f"dead letter {letter.id}: rows refused again")
                    result.rows_dead_lettered_again += refused
                    result.rows_inserted += (letter.rows or 0) - refused
                    rows += (letter.rows or 0) - refused
                    result.letters += 1
                elif letter.stage == "worker" and letter.source:
                    source = SourcePosition.parse(letter.source.encode())
                    headers: list[tuple[str, str | bytes | None]] = [
                        (HEADER_REDRIVEN, f"{DEAD_LETTER.name}/{letter.id.replace(':', '/')}".encode())]
                    # the team that sent it, and a span batch's format
                    headers += [(k, v) for k, v in letter.headers if k in (HEADER_TENANT, HEADER_FORMAT)]
                    producer.produce(source.topic, value=letter.value, on_delivery=delivered, headers=headers)
                    settle(f"dead letter {letter.id}: producing it back to {source.topic}")
                    result.raw_records_produced += 1
                    result.letters += 1
                else:
                    result.unredrivable += 1  # not a row batch (no table or token): nothing to insert it into
                commit_one(consumer, DEAD_LETTER.name, p, offset + 1, "")
                if offset >= ends[p] - 1:
                    finished.add(p)
                progress.update(seen, rows)
    finally:
        consumer.close()
        progress.done()
    return result


def _dead_letter_again(producer: Producer, item: Rejected, letter: Letter,
                       delivered: Callable[[KafkaError | None, Any], None]) -> None:
    again = sink_letter(item.block, item.table, item.error, item.code, item.token,
                        f"{DEAD_LETTER.name}/{letter.partition}/{letter.offset}-{letter.offset}", item.fmt)
    producer.produce(again.topic, value=again.value, headers=again.headers, on_delivery=delivered)
