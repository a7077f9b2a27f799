"""Consumer-group facts and moves the operations need: who is running, where a group stands, rewinds.

Offsets of a group may only be moved while none of its members runs: Kafka refuses commits from outside a
live group's generation anyway, and a running member would overwrite the move with its own next commit.
So every move checks the group's state and members first and says exactly who is still there.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import Consumer, ConsumerGroupState, KafkaException, TopicPartition

from maple.kafka import admin_client, client_logging, settle
from maple.lag import LagError, committed_offsets, probe_consumer, topic_partitions
from maple.topics import ALL_TOPICS


class OpsError(RuntimeError):
    """An operation was refused or failed; the message names the group, topic or partition and why."""


def stage_topics(stage: str) -> list[str]:
    """The Maple topics a stage consumes, from the contract in maple/topics.py (so new ones come along)."""
    if stage == "sink":
        return [t.name for t in ALL_TOPICS if t.consumer == "sink"]
    return [t.name for t in ALL_TOPICS if t.consumer.endswith("worker")]


@dataclass(frozen=True)
class GroupState:
    group: str
    state: str
    members: tuple[str, ...]  # "client_id@host (n partitions)"

    @property
    def running(self) -> bool:
        return bool(self.members) or self.state not in ("EMPTY", "DEAD", "UNKNOWN")


def describe(bootstrap: str, group: str, timeout: float = 30.0) -> GroupState:
    admin = admin_client(bootstrap, log_level=4)  # errors come through the future
    future = admin.describe_consumer_groups([group], request_timeout=timeout)[group]
    settle([future], timeout + 5)  # `admin` stays referenced until its request is over
    try:
        description = future.result(0)
    except KafkaException as exc:
        raise OpsError(f"group {group}: cannot describe it: {exc.args[0].str()}") from exc
    except TimeoutError as exc:
        raise OpsError(f"group {group}: cannot describe it: no answer in {timeout:.0f}s") from exc
    members = tuple(f"{m.client_id}@{m.host} ({len(m.assignment.topic_partitions) if m.assignment else 0} partitions)"
                    for m in description.members or [])
    state = description.state.name if isinstance(description.state, ConsumerGroupState) else str(description.state)
    return GroupState(group, state, members)


def require_stopped(bootstrap: str, group: str, why: str) -> None:
    """Refuse (OpsError) while `group` has members; `why` says what the caller was about to do."""
    info = describe(bootstrap, group)
    if info.running:
        who = ", ".join(info.members) or "none listed"
        raise OpsError(f"group {group} is {info.state.lower()} with {len(info.members)} running member(s): {who}. "
                       f"Stop its processes before {why} (a member killed with -9 stays listed until its session "
                       f"times out), or replay into a separate group and database with --into-database.")


def committed(bootstrap: str, group: str) -> dict[tuple[str, int], tuple[int, str]]:
    try:
        return committed_offsets(bootstrap, group)
    except LagError as exc:
        raise OpsError(str(exc)) from exc


def commit(bootstrap: str, group: str, offsets: list[TopicPartition]) -> None:
    """Commit `offsets` (with their metadata) for a stopped group, from outside the group."""
    if not offsets:
        return
    consumer = Consumer({**client_logging(), "bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        results = consumer.commit(offsets=offsets, asynchronous=False) or []
    except KafkaException as exc:
        raise OpsError(f"group {group}: the offset commit was refused ({exc.args[0].str()}); did a member "
                       "start meanwhile?") from exc
    finally:
        consumer.close()
    failed = [f"{tp.topic}[{tp.partition}]: {tp.error.str()}" for tp in results if tp.error is not None]
    if failed:
        raise OpsError(f"group {group}: commits refused for {', '.join(failed)}")


def partitions_of(consumer: Consumer, topic: str) -> list[int]:
    try:
        return topic_partitions(consumer, topic)
    except LagError as exc:
        raise OpsError(str(exc)) from exc


def watermarks(consumer: Consumer, topic: str, partition: int) -> tuple[int, int]:
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
    return max(low, 0), max(high, 0)


def offsets_for_time(consumer: Consumer, tps: list[tuple[str, int]], ms: int) -> dict[tuple[str, int], int]:
    """The first offset at or after `ms` per partition; the end offset where every record is older."""
    asked = consumer.offsets_for_times([TopicPartition(t, p, ms) for t, p in tps], timeout=30)
    out: dict[tuple[str, int], int] = {}
    for tp in asked:
        if tp.error is not None:
            raise OpsError(f"{tp.topic}[{tp.partition}]: offsets_for_times failed: {tp.error.str()}")
        out[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else watermarks(consumer, tp.topic, tp.partition)[1]
    return out


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")


def parse_time(text: str, now: float | None = None) -> int:
    """A point in time as Unix milliseconds: ISO 8601 (naive means UTC), Unix ms, or '90s'/'15m'/'2h'/'1d' ago."""
    text = text.strip()
    now = time.time() if now is None else now
    match = _RELATIVE.match(text)
    if match:
        seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return int((now - seconds) * 1000)
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise OpsError(f"--from-time {text!r}: expected ISO 8601 (2026-11-23T02:00:00Z), Unix milliseconds, "
                       "or a duration ago such as 90s, 15m, 2h, 1d") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def ops_consumer(bootstrap: str) -> Consumer:
    return probe_consumer(bootstrap)
