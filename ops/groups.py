"""Consumer-group rules the operations follow: which topics a stage reads, moving only stopped groups, times.

Offsets of a group may only be moved while none of its members runs: Kafka refuses commits from outside a
live group's generation anyway, and a running member would overwrite the move with its own next commit.
So every move checks the group's state and members first and says exactly who is still there. The Kafka
calls themselves are the library's consumer toolkit (maple/consumer.py).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from maple.consumer import Cluster, KafkaOpError
from maple.topics import ALL_TOPICS


class OpsError(RuntimeError):
    """An operation was refused or failed; the message names the group, topic or partition and why."""


# What the ops commands report to the user: their own refusals and the toolkit's Kafka errors.
OPS_ERRORS = (OpsError, KafkaOpError)


def stage_topics(stage: str) -> list[str]:
    """The Maple topics a stage consumes, from the contract in maple/topics.py (so new ones come along)."""
    if stage == "sink":
        return [t.name for t in ALL_TOPICS if t.consumer == "sink"]
    return [t.name for t in ALL_TOPICS if t.consumer.endswith("worker")]


def require_stopped(cluster: Cluster, group: str, why: str) -> None:
    """Refuse (OpsError) while `group` has members; `why` says what the caller was about to do."""
    info = cluster.describe_group(group)
    if info.running:
        who = ", ".join(info.members) or "none listed"
        raise OpsError(f"group {group} is {info.state.lower()} with {len(info.members)} running member(s): {who}. "
                       f"Stop its processes before {why} (a member killed with -9 stays listed until its session "
                       f"times out), or replay into a separate group and database with --into-database.")


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
