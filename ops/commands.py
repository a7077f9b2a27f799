"""The `maple replay`, `maple lag` and `maple dlq` subcommands: arguments, help text and output.

Kept out of maple/cli.py (which only registers them) so that the operations can grow without touching
the entry point every stage shares."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from maple.settings import Settings

Add = Callable[..., argparse.ArgumentParser]
Load = Callable[[argparse.Namespace], Settings]


def _out(line: str) -> None:
    print(line, flush=True)


def _fail(message: str) -> int:
    print(f"maple: {message}", file=sys.stderr, flush=True)
    return 1


# -- replay --------------------------------------------------------------------------------------------


def _start(args: argparse.Namespace) -> Any:
    from ops.groups import OpsError, parse_time
    from ops.replay import Start

    if args.from_earliest:
        return Start("earliest")
    if args.from_time:
        return Start("time", ms=parse_time(args.from_time))
    offsets: dict[tuple[str | None, int], int] = {}
    for item in args.offset:
        left, sep, offset = item.rpartition("=")
        topic, colon, partition = left.rpartition(":")
        if not sep or not partition.isdigit() or not offset.isdigit():
            raise OpsError(f"--offset {item!r}: expected [TOPIC:]PARTITION=OFFSET, e.g. otel.logs:0=1200")
        offsets[(topic if colon else None, int(partition))] = int(offset)
    return Start("offsets", offsets=offsets)


def cmd_replay(args: argparse.Namespace, load: Load) -> int:
    from ops import replay
    from ops.groups import OPS_ERRORS, OpsError

    settings = load(args)
    try:
        start = _start(args)
        if args.into_database:
            if args.stage != "sink":
                raise OpsError("--into-database replays the sink stage (processed topics into another database); "
                               "a worker replay would feed the live processed topics, whose sink drops the copies")
            if args.reinsert:
                raise OpsError("--reinsert is for in-place replays; a replay into another database inserts everything "
                               "in its range once anyway")
            group = args.target_group or f"{settings.sink.group}.replay.{args.into_database}"
            plan, job = replay.run_into_database(settings, args.into_database, group, args.topic, start,
                                                 dry_run=args.dry_run)
            for line in replay.describe_plan(plan, args.dry_run):
                _out(line)
            if job is not None:
                _out(f"replayed {job.messages} messages ({job.rows} rows inserted) into {job.database} with group "
                     f"{job.group} in {job.seconds:.1f}s" + (" (resumed)" if job.resumed else ""))
            return 0
        group = args.group or (settings.sink.group if args.stage == "sink" else settings.worker.group)
        if args.stage == "sink":
            plan = replay.plan_sink(settings, group, args.topic, start, reinsert=args.reinsert, force=args.force,
                                    scan_rows=args.dry_run)
        else:
            plan = replay.plan_worker(settings, group, args.sink_group or settings.sink.group, args.topic, start,
                                      reinsert=args.reinsert, force=args.force)
        if args.json:
            print(json.dumps({**plan.as_dict(), "dry_run": args.dry_run}, indent=2))
        else:
            for line in replay.describe_plan(plan, args.dry_run):
                _out(line)
        if not args.dry_run:
            replay.execute(settings, plan)
            if not args.json:
                _out(f"group {plan.group} rewound: start the {args.stage}s to replay; follow with `maple lag`")
        return 0
    except OPS_ERRORS as exc:
        return _fail(f"replay refused: {exc}")


# -- lag ------------------------------------------------------------------------------------------------


def cmd_lag(args: argparse.Namespace, load: Load) -> int:
    from maple.consumer import Cluster, KafkaOpError
    from maple.kafka import bootstrap_servers
    from maple.lag import PartitionLag, measure, summarize
    from maple.topics import STAGE_TOPICS

    settings = load(args)
    groups = args.group or [settings.worker.group, settings.sink.group]
    # Maple's own groups are measured on the topics their stage reads (maple/topics.py), so a group never
    # shows on a topic it does not consume; other groups on the topics they committed.
    contract = {settings.worker.group: STAGE_TOPICS["worker"], settings.sink.group: STAGE_TOPICS["sink"]}
    rows: list[PartitionLag] = []
    with Cluster(bootstrap_servers(settings)) as cluster:
        for group in groups:
            try:
                if not cluster.committed(group) and not cluster.describe_group(group).members and args.group:
                    return _fail(f"lag: group {group} has no committed offsets and no members (is the name right?)")
                topics = [t.name for t in contract[group]] if group in contract else None
                if topics is not None and args.topic:
                    topics = [t for t in topics if t in args.topic]
                    if not topics:
                        continue
                found = measure(cluster, group, topics, timestamps=not args.no_time)
                rows.extend(r for r in found if not args.topic or r.topic in args.topic)
            except KafkaOpError as exc:
                return _fail(f"lag: {exc}")
    if args.topic and not rows:
        return _fail(f"lag: none of {', '.join(groups)} consumes {', '.join(args.topic)}")
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
        return 0
    shown = [g for g in groups if any(r.group == g for r in rows)]
    summaries = [summarize(group, rows, args.behind_after) for group in shown]
    width = max([len("group")] + [len(g) for g in shown])
    _out(f"{'group':<{width}}  {'lag':>8}  {'oldest':>8}  {'status':<7}  topics")
    for g in summaries:
        oldest = "?" if g.seconds is None else f"{g.seconds:.1f}s"
        _out(f"{g.group:<{width}}  {g.messages:>8}  {oldest:>8}  {g.status:<7}  {', '.join(g.topics)}")
    ticks = sum(g.ticks for g in summaries)
    if ticks and not args.verbose:
        _out(f"({ticks} sampler tick(s) waiting on otel.spans are not lag: they carry no rows)")
    if not args.verbose:
        return 0
    _out("")
    # read: on otel.spans, how far the sampler has read (its commit stays behind the traces it holds)
    _out(f"{'group':<{width}}  {'topic':<20} {'partition':>9} {'committed':>10} {'read':>10} {'end':>10} {'lag':>8} "
         f"{'ticks':>6} {'oldest':>8}")
    for r in rows:
        committed = "-" if r.committed is None else str(r.committed)
        read = "-" if r.read is None else str(r.read)
        seconds = "?" if r.lag_seconds is None else f"{r.lag_seconds:.1f}s"
        _out(f"{r.group:<{width}}  {r.topic:<20} {r.partition:>9} {committed:>10} {read:>10} {r.end:>10} {r.lag:>8} "
             f"{r.ticks:>6} {seconds:>8}")
    return 0


# -- dlq ------------------------------------------------------------------------------------------------


def cmd_dlq(args: argparse.Namespace, load: Load) -> int:
    from ops import dlq
    from ops.groups import OPS_ERRORS

    settings = load(args)
    try:
        if args.action == "list":
            letters = dlq.list_letters(settings, args.stage, args.table, args.all)
            if args.json:
                print(json.dumps([letter.as_dict() for letter in letters], indent=2))
                return 0
            _out(f"{'id':<10} {'time (UTC)':<19} {'stage':<6} {'table':<22} {'code':>5} {'rows':>6} {'bytes':>8} "
                 f"{'redriven':<8} {'source':<30} error")
            for x in letters:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(x.timestamp_ms / 1000))
                _out(f"{x.id:<10} {stamp:<19} {x.stage:<6} {x.table or '-':<22} {x.code or '-':>5} "
                     f"{'-' if x.rows is None else x.rows:>6} {x.size:>8} {'yes' if x.redriven else 'no':<8} "
                     f"{x.source:<30} {_short_error(x.error)}")
            _out(f"{len(letters)} dead letter(s), {sum(1 for x in letters if not x.redriven)} not redriven")
        elif args.action == "show":
            letter = dlq.show_letter(settings, args.id)
            if args.json:
                print(json.dumps({**letter.as_dict(), "headers": {k: v.decode(errors="replace")
                                                                  for k, v in letter.headers},
                                  "preview": dlq.preview(letter, args.rows)}, indent=2))
                return 0
            _out(f"dead letter {letter.id} ({letter.stage} stage, {letter.size} bytes"
                 + (f", {letter.rows} rows" if letter.rows is not None else "") + ")")
            for key, value in letter.headers:
                _out(f"  {key}: {value.decode(errors='replace')}")
            _out("preview:")
            for line in dlq.preview(letter, args.rows):
                _out(f"  {line}")
        else:
            result = dlq.redrive(settings, timeout_s=args.timeout)
            if args.json:
                print(json.dumps(result.__dict__, indent=2))
            else:
                _out(f"redrove {result.letters} letter(s) with group {result.group}: {result.rows_inserted} rows "
                     f"inserted, {result.rows_dead_lettered_again} rows refused again (new dead letters), "
                     f"{result.raw_records_produced} raw records sent back to the workers; passed over "
                     f"{result.not_ours} letter(s) of other groups and {result.unredrivable} that are no row batch")
        return 0
    except OPS_ERRORS as exc:
        return _fail(f"dlq {args.action}: {exc}")


def _short_error(error: str, width: int = 100) -> str:
    """The informative tail of a ClickHouse error (after the last "DB::Exception: "), on one line."""
    line = error.splitlines()[0] if error else ""
    return line.rsplit("DB::Exception: ", 1)[-1][:width]


# -- registration -------------------------------------------------------------------------------------


def register(add: Add, sub: Any, common: argparse.ArgumentParser, load: Load) -> None:
    """Add the operations subcommands to `maple`'s parser (called from maple/cli.py)."""
    replay = add("replay", "re-run the sink or worker stage from an offset, a time or the earliest record",
                 lambda args: cmd_replay(args, load),
                 "Moves a stopped consumer group back so its stage processes a range again, or replays the "
                 "processed topics into another database with a one-shot sink. Nothing is duplicated:\n"
                 "  sink (default)       offsets move back, watermarks stay: batches already inserted are dropped\n"
                 "                       when re-read, so a replay over rows that are there changes no count;\n"
                 "  sink --reinsert      after rows were removed (TRUNCATE, DROP PARTITION): watermarks lowered\n"
                 "                       for the range, new tokens; refused while the tables still hold rows in\n"
                 "                       the replayed time range (unless --force);\n"
                 "  worker --reinsert    rewinds the worker group and lowers the sink's watermarks for those raw\n"
                 "                       partitions (both groups stopped, the sink caught up);\n"
                 "  sink --into-database DB   a separate group writes the range into DB; the live tables are\n"
                 "                       untouched; running it again resumes.\n"
                 "Refused while the group has running members. See docs/operations.md.")
    replay.add_argument("stage", choices=("sink", "worker"), help="which stage to re-run")
    where = replay.add_mutually_exclusive_group(required=True)
    where.add_argument("--from-earliest", action="store_true", help="from the earliest retained record")
    where.add_argument("--from-time", metavar="WHEN",
                       help="from the first record at or after WHEN: ISO 8601 (2026-11-23T02:00:00Z, naive = UTC), "
                            "Unix ms, or a duration ago (90s, 15m, 2h, 1d); uses Kafka's offsets_for_times")
    where.add_argument("--offset", action="append", metavar="[TOPIC:]P=O",
                       help="from offset O of partition P (repeatable; only the named partitions move)")
    replay.add_argument("--topic", action="append",
                        help="limit to this topic (repeatable; default: every Maple topic the group committed)")
    replay.add_argument("--group", help="the group to rewind (default: sink.group or worker.group)")
    replay.add_argument("--sink-group", help="worker replays: the sink group whose watermarks are lowered "
                                             "(default: sink.group)")
    replay.add_argument("--reinsert", action="store_true",
                        help="insert the replayed rows again (after they were removed from ClickHouse)")
    replay.add_argument("--force", action="store_true",
                        help="--reinsert even though the tables hold rows in the replayed time range")
    replay.add_argument("--into-database", metavar="DB",
                        help="sink stage: replay into database DB (schema applied) with a separate group, now")
    replay.add_argument("--target-group", help="the group of an --into-database job (default: "
                                               "<sink.group>.replay.<DB>); reuse it to resume")
    replay.add_argument("--dry-run", action="store_true",
                        help="show the offset moves and message (and row) counts per partition; change nothing")
    replay.add_argument("--json", action="store_true", help="print the plan as JSON")

    lag = add("lag", "consumer lag per group: messages not yet processed, the age of the oldest, OK or behind",
              lambda args: cmd_lag(args, load),
              "One line per group (default: worker.group and sink.group): messages between its committed "
              "offsets and the ends of the topics it consumes, the age of the oldest of them (now minus its Kafka "
              "timestamp), and a status: OK, or behind once that age passes --behind-after. Maple's groups are "
              "shown on the topics their stage reads (maple/topics.py), other groups on the topics they "
              "committed. The sampler's tick records on otel.spans carry no rows and are not lag: an idle "
              "pipeline shows 0. --verbose adds one row per partition (committed, end, lag, ticks, oldest). "
              "Workers and sinks export the same as maple_consumer_lag{group,topic,partition} and "
              "maple_consumer_lag_seconds on /metrics.")
    lag.add_argument("--group", action="append", help="a consumer group (repeatable)")
    lag.add_argument("--topic", action="append", help="only this topic (repeatable); a group that does not "
                                                       "consume it is left out")
    lag.add_argument("--verbose", "-v", action="store_true", help="also one row per group, topic and partition")
    lag.add_argument("--behind-after", type=float, default=30.0, metavar="SECONDS",
                     help="a group is behind once its oldest unprocessed record is older than this (default 30; "
                          "spans wait decision_wait in the sampler by design)")
    lag.add_argument("--no-time", action="store_true", help="skip reading record timestamps (oldest)")
    lag.add_argument("--json", action="store_true", help="print the partition rows as JSON")

    dlq = sub.add_parser("dlq", help="dead letters in maple.dlq: list, show, redrive", parents=[common],
                         description="Rows ClickHouse refused (sink) and raw records the workers could not "
                                     "decode (worker) wait in maple.dlq with the reason.")
    dlq_sub = dlq.add_subparsers(dest="action", metavar="ACTION", required=True)
    dlq_list = add("list", "list this deployment's dead letters: stage, table, error, code, source, size, rows",
                   lambda args: cmd_dlq(args, load),
                   "One line per letter with its id (PARTITION:OFFSET), time, stage, table, ClickHouse error code, "
                   "rows, bytes, whether `maple dlq redrive` already sent it back, the source range and the error. "
                   "Letters of other sink/worker groups sharing the topic are hidden unless --all.", into=dlq_sub)
    dlq_list.add_argument("--stage", choices=("sink", "worker"))
    dlq_list.add_argument("--table")
    dlq_list.add_argument("--all", action="store_true", help="include other groups' letters")
    dlq_list.add_argument("--json", action="store_true")
    dlq_show = add("show", "one dead letter in detail: every header and a preview of its rows",
                   lambda args: cmd_dlq(args, load), into=dlq_sub)
    dlq_show.add_argument("id", help="PARTITION:OFFSET as `maple dlq list` prints it")
    dlq_show.add_argument("--rows", type=int, default=5, help="rows to preview (default 5)")
    dlq_show.add_argument("--json", action="store_true")
    dlq_redrive = add("redrive", "send dead letters back after a fix: rows into ClickHouse exactly once, raw "
                                 "records to their raw topic", lambda args: cmd_dlq(args, load),
                      "Reads maple.dlq with the group <sink.group>.dlq-redrive, from where the last redrive stopped "
                      "to the current end. Sink letters are inserted into their table with a token derived from "
                      "the letter (a repeat is dropped by ClickHouse); rows still refused become new dead letters. "
                      "Worker letters are produced back to their raw topic. Each letter is committed after its "
                      "effect was acknowledged, so running it twice redrives nothing twice.", into=dlq_sub)
    dlq_redrive.add_argument("--timeout", type=float, default=300.0,
                             help="give up when ClickHouse does not take a letter for this many seconds (default 300)")
    dlq_redrive.add_argument("--json", action="store_true")
