"""The `maple` command line: one entry point for every stage and operation."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

from maple import __version__
from maple.log import setup_logging
from maple.settings import Settings, SettingsError, as_yaml, describe, load_settings, setting_sources

EPILOG = """\
Settings come from MAPLE_* environment variables and an optional YAML file (--config or MAPLE_CONFIG);
`maple config show` prints every setting, its variable and its effective value.
"""


def _settings(args: argparse.Namespace, **flags: object) -> Settings:
    """Load settings; command-line flags override like environment variables and are validated alike."""
    environ = dict(os.environ)
    environ.update({f"MAPLE_{name.upper()}": str(value) for name, value in flags.items() if value is not None})
    settings = load_settings(args.config, environ)
    setup_logging(args.command, settings.log_level)
    return settings


def _say(message: str) -> None:
    print(message, flush=True)


# -- commands --------------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    from apps.supervisor import run_up

    return run_up(_settings(args), args.config)


def cmd_kafka(args: argparse.Namespace) -> int:
    from apps import localkafka

    settings = _settings(args, kafka_brokers=args.brokers, kafka_port=args.port)
    if not settings.local_kafka:
        print(f"MAPLE_KAFKA_BOOTSTRAP is set ({settings.kafka.bootstrap}): Maple does not manage that cluster",
              file=sys.stderr)
        return 2
    if args.action == "start":
        bootstrap = localkafka.start(settings, say=_say)
        _say(f"kafka healthy at {bootstrap}; stop it with `maple kafka stop`")
    elif args.action == "stop":
        stopped = localkafka.stop(settings, say=_say)
        if not stopped:
            _say("kafka was not running")
    else:
        rows = localkafka.status(settings)
        for row in rows:
            state = f"running (pid {row['pid']})" if row["pid"] else "stopped"
            _say(f"node {row['node']}  127.0.0.1:{row['port']}  {state}  log {row['log']}")
        return 0 if all(row["pid"] for row in rows) else 3
    return 0


def cmd_sink(args: argparse.Namespace) -> int:
    from sinks.runner import run

    run(_settings(args), ready_file=args.ready_file)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from topologies.app import run

    run(_settings(args), ready_file=args.ready_file)
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from ingest.server import run

    run(_settings(args))
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    from query.app import run

    run(_settings(args, api_host=args.host, api_port=args.port))
    return 0


def cmd_bench_ingest(args: argparse.Namespace) -> int:
    from apps.bench import ingest as bench

    _settings(args)  # validates the configuration the benchmark's own ingest will start with
    progress = partial(print, file=sys.stderr, flush=True)  # progress on stderr, results on stdout
    if args.tls:
        if args.url:
            raise SettingsError("--tls starts its own ingests (plaintext, TLS, mutual TLS); it cannot use --url")
        compared = bench.run_tls(spans=args.spans, concurrency=args.concurrency, duration=args.duration,
                                 warmup=args.warmup, rounds=args.rounds, say=progress)
        if args.json:
            print(json.dumps(compared, indent=2))
            return 0
        _say(f"{'mode':<10} {'CPU s/M spans':>14} {'vs plaintext':>13} {'spans/s':>9} {'p50 ms':>7} {'p99 ms':>7}")
        for mode, row in compared["modes"].items():
            ratio = compared["cpu_ratio"][mode]
            _say(f"{mode:<10} {row.get('ingest_cpu_s_per_million_spans', 0):>14.2f} "
                 f"{ratio if ratio is not None else float('nan'):>12.3f}x {row['spans_per_s']:>9.0f} "
                 f"{row['latency_p50_ms']:>7.1f} {row['latency_p99_ms']:>7.1f}")
        return 0
    report = bench.run(url=args.url, pid=args.pid, spans=args.spans, concurrency=args.concurrency,
                       duration=args.duration, warmup=args.warmup, say=progress)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _say(f"requests/s          {report['requests_per_s']:.0f}   ({report['requests']} requests, errors "
         f"{report['errors'] or 'none'})")
    _say(f"spans/s             {report['spans_per_s']:.0f}")
    _say(f"MB/s                {report['mb_per_s']:.1f}")
    _say(f"latency p50 / p99   {report['latency_p50_ms']:.1f} / {report['latency_p99_ms']:.1f} ms")
    if "ingest_cpu_s_per_million_spans" in report:
        _say(f"ingest CPU          {report['ingest_cpu_s_per_million_spans']:.2f} s per million spans "
             f"({report['ingest_cpu_cores']:.2f} cores)")
    return 0


def cmd_bench_compare(args: argparse.Namespace) -> int:
    from apps.bench import compare

    settings = _settings(args)
    report = compare.run(settings, spans=args.spans, logs=args.logs, batch=args.batch, rate=args.rate,
                         decision_wait_s=args.decision_wait, runs=args.runs, pipelines=tuple(args.pipelines),
                         collector_exporter=args.collector_exporter, workers=args.workers,
                         say=lambda message: print(message, file=sys.stderr, flush=True))
    print(json.dumps(report, indent=2) if args.json else compare.render(report))
    return 0


def cmd_bench_e2e(args: argparse.Namespace) -> int:
    from apps.bench import e2e as bench_e2e

    settings = _settings(args)
    report = bench_e2e.run(settings, signal=args.signal, records=args.records, per_request=args.per_request,
                           rate=args.rate, duration=args.duration, workers=args.workers, sinks=args.sinks,
                           decision_wait_s=args.decision_wait if args.decision_wait is not None
                           else (10.0 if args.after_root is not None else 2.0),
                           after_root_s=args.after_root,
                           say=lambda message: print(message, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _say(f"{report['signal']}: {report['records_per_s']:,.0f} records/s through {report['workers']} worker(s) and "
         f"{report['sinks']} sink(s) ({report['records_per_s_incl_startup']:,.0f}/s including "
         f"{report['startup_s']:.1f}s start-up; {report['records']:,} records)")
    if report["signal"] == "traces":
        _say(f"sampled {report['sampled_spans']:,} spans (expected {report['expected_sampled_spans']:,}) with "
             f"decision_wait {report['decision_wait_s']}s")
    p50, p99 = report["freshness_p50_s"], report["freshness_p99_s"]
    since = "sampling decision" if report["signal"] == "traces" else "ingest receipt"
    _say(f"freshness at {report['freshness_rate_per_s']:,.0f} records/s: p50 {p50:.2f}s, p99 {p99:.2f}s "
         f"({since} -> queryable)" if p50 is not None else "freshness: no samples")
    probe = report.get("root_probe")
    if probe is not None:
        for label, what in (("with_root", f"root received, after_root {report['after_root_s']}s"),
                            ("without_root", f"no root, decision_wait {report['decision_wait_s']}s")):
            row = probe[label]
            figures = (f"p50 {row['p50_s']:.2f}s, p99 {row['p99_s']:.2f}s, max {row['max_s']:.2f}s"
                       if row["queryable"] else "none queryable")
            _say(f"error traces ({what}) -> queryable: {figures} ({row['queryable']} of {row['sent']})")
    return 0


def cmd_bench_ingest_limits(args: argparse.Namespace) -> int:
    from apps.bench import ingest_limits

    settings = _settings(args)  # the configuration the benchmark's own ingest starts with
    report = ingest_limits.run(shape=args.shape, size_bytes=int(args.size_mb * 1e6), concurrency=args.concurrency,
                               settings=settings, url=args.url, pid=args.pid,
                               say=lambda message: print(message, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _say(f"{report['concurrency']} x {report['shape']} of {report['request_mb']:.1f} MB: statuses "
         f"{report['statuses']}, answered after {report['request_seconds']} s")
    _say(f"/healthz during the run: {report['healthz_probes']} probes, median {report['healthz_median_ms']:.1f} ms, "
         f"p99 {report['healthz_p99_ms']:.1f} ms, max {report['healthz_max_ms']:.1f} ms")
    ceiling = f", ceiling {report['rss_ceiling_mb']:.0f} MB" if report["rss_ceiling_mb"] else ""
    _say(f"memory (ingest and its parse processes): baseline {report['rss_baseline_mb']:.0f} MB, peak "
         f"{report['rss_peak_mb']:.0f} MB (+{report['rss_peak_over_baseline_mb']:.0f} MB){ceiling}")
    return 0


def cmd_bench_chaos(args: argparse.Namespace) -> int:
    from apps.bench import chaos

    settings = _settings(args)
    faults = tuple(f.strip() for f in args.faults.split(",") if f.strip())
    report = chaos.run(settings, duration=args.duration, interval=args.interval, faults=faults, brokers=args.brokers,
                       workers=args.workers, sinks=args.sinks, clients=args.clients, rate=args.rate,
                       per_request=args.per_request, broker_down_s=args.broker_down, pause_s=args.pause,
                       keep=args.keep, say=lambda message: print(message, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _say(f"{report['seconds']} s, faults {report['faults']}")
        _say(f"records acknowledged {report['records_acked']:,}, stored {report['records_stored']:,} "
             f"({report['rows']:,} rows)")
        _say(f"lost {report['lost']}, duplicated {report['duplicated']} ({report['duplicated_after_ambiguous_retry']} "
             f"after a retry whose first attempt had no clear answer, {report['duplicated_otherwise']} otherwise)")
        if report["dead_at_end"]:
            _say(f"not running at the end: {', '.join(report['dead_at_end'])}")
    return 0 if report["lost"] == 0 and report["duplicated_otherwise"] == 0 else 1


def cmd_send_test_data(args: argparse.Namespace) -> int:
    import time

    from apps import testdata

    settings = _settings(args)
    host = settings.ingest.host if settings.ingest.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    endpoint = args.endpoint or f"http://{host}:{settings.ingest.http_port}"
    run = str(time.time_ns())
    _say(f"sending {args.traces} traces (3 spans each, every fifth with an error), {args.traces} log records and "
         f"{2 * args.traces} metric points to {endpoint}, run {run}")
    if not testdata.send_all(endpoint, args.traces, run, args.api_key):
        print(f"maple send-test-data: the ingest at {endpoint} did not take them; is `maple up` (or `maple ingest`) "
              "running with these settings?", file=sys.stderr)
        return 1
    if args.wait:
        return 0 if testdata.wait_for_rows(settings, run, args.traces, args.wait_timeout, _say) else 1
    where = f"ResourceAttributes['{testdata.RUN_ATTRIBUTE}'] = '{run}'"
    _say("logs and metrics are queryable within seconds, traces after the sampler's decision_wait (10 s by "
         "default); then:")
    _say(f'  maple query "SELECT SeverityText, Body FROM otel_logs WHERE {where} LIMIT 5"')
    _say(f'  maple query "SELECT MetricName, count() FROM otel_metrics_sum WHERE {where} GROUP BY MetricName"')
    _say(f'  maple query "SELECT TraceId, SpanName, StatusCode FROM otel_traces WHERE {where}"')
    return 0


def cmd_bench_query(args: argparse.Namespace) -> int:
    from apps.bench import query as bench_query

    settings = _settings(args)
    report = bench_query.run(settings, database=args.database, logs=args.logs, spans=args.spans, hours=args.hours,
                             iterations=args.iterations, reuse=args.reuse,
                             say=lambda message: print(message, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    data = report["data"]
    _say(f"data: {data['logs']:,} log rows and {data['spans']:,} spans over {data['hours']} h in `{data['database']}` "
         f"(generated in ClickHouse: {data['generation_s'] or 'reused'})")
    _say(f"{'call':<46} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'CH p50':>8} {'CH p95':>8} {'CPU API':>8} "
         f"{'CPU CH':>8}  items")
    for row in report["results"]:
        _say(f"{row['call']:<46} {row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f} {row['max_ms']:>8.1f} "
             f"{row['clickhouse_p50_ms']:>8.1f} {row['clickhouse_p95_ms']:>8.1f} {row['api_cpu_ms']:>8.1f} "
             f"{row['clickhouse_cpu_ms']:>8.1f}  {row['items']}")
    _say(f"({report['iterations']} calls each, one at a time. CH: time waiting for ClickHouse (Server-Timing). CPU: "
         "CPU ms per call of the API process and of the embedded ClickHouse host, from /proc)")
    _say("load average (1, 5, 15 min) at the end: " + ", ".join(f"{x:.1f}" for x in report["load_average"]))
    for name, plan in report["explain"].items():
        _say(f"\nEXPLAIN indexes = 1 -- {name}\n{plan}")
    return 0


def cmd_bench_alerts(args: argparse.Namespace) -> int:
    from apps.bench import alerts as bench_alerts

    settings = _settings(args, api_alert_workers=args.workers)
    report = bench_alerts.run(settings, rules=args.rules, rounds=args.rounds, logs=args.logs, spans=args.spans,
                              database=args.database, reuse=args.reuse,
                              say=lambda message: print(message, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _say(f"{report['rules']} rules, {report['workers']} evaluator threads, on {report['data']['logs']:,} log rows and "
         f"{report['data']['spans']:,} spans (the last hour) in `{report['data']['database']}`")
    _say(f"{'round':>5} {'rules':>6} {'seconds':>8} {'rules/s':>8} {'CPU ms/rule: evaluator':>23} {'ClickHouse':>11}")
    for row in report["rounds"]:
        _say(f"{row['round']:>5} {row['rules']:>6} {row['seconds']:>8.2f} {row['rules_per_s']:>8.1f} "
             f"{row['evaluator_cpu_ms_per_rule']:>23.2f} {row['clickhouse_cpu_ms_per_rule']:>11.2f}")
    _say(f"median: {report['median_rules_per_s']:.1f} rules/s")
    _say("one rule at a time, per kind:")
    for label, row in report["per_kind"].items():
        _say(f"  {label:<22} {row['rules']:>4} rules  p50 {row['p50_ms']:>7.1f} ms  p95 {row['p95_ms']:>7.1f} ms")
    _say("load average (1, 5, 15 min) at the end: " + ", ".join(f"{x:.1f}" for x in report["load_average"]))
    return 0


def cmd_bench_rekey(args: argparse.Namespace) -> int:
    from apps.bench import rekey

    report = rekey.run(rows=args.rows, say=lambda message: print(message, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _say(f"{report['rows']:,} rows: in place (ALTER) {report['alter_in_place_s']} s; copy to the new key "
         f"{report['copy_s']} s wall, {report['copy_cpu_s']} CPU s ({report['copy_rows_per_s']:,} rows/s); "
         f"on disk {report['old_table']['bytes'] / 2**20:,.0f} MiB old, {report['new_table']['bytes'] / 2**20:,.0f} "
         f"MiB new (indexes {report['old_table']['index_bytes'] / 2**20:,.0f} and "
         f"{report['new_table']['index_bytes'] / 2**20:,.0f} MiB)")
    for name, read in report["reads"].items():
        _say(f"{name}: old key reads {read['old_key_rows_read']:,} rows ({read['old_key_s']} s), new key "
             f"{read['new_key_rows_read']:,} rows ({read['new_key_s']} s)")
    return 0


def cmd_clickhouse_serve(args: argparse.Namespace) -> int:
    from apps import chhost

    settings = _settings(args)
    if not settings.embedded_clickhouse:
        print("MAPLE_CLICKHOUSE_URL is set: there is no embedded engine to serve", file=sys.stderr)
        return 2
    chhost.serve(settings, threads=args.threads)
    return 0


def query_format(explicit: str | None, interactive: bool) -> str:
    """The output format of `maple query`: the one asked for, else a table for a person at a terminal and
    TSV for a pipe or a file (what clickhouse-client does), so scripts get no box-drawing characters."""
    return explicit or ("PrettyCompactMonoBlock" if interactive else "TSV")


def cmd_query(args: argparse.Namespace) -> int:
    from maple import clickhouse

    settings = _settings(args)
    database = args.database or settings.clickhouse.database
    in_process = settings.embedded_clickhouse and clickhouse.running_host(settings) is None
    client = clickhouse.connect(settings)
    if in_process:  # on stderr: stdout carries only the result
        print(f"maple query: no ClickHouse host runs for this data dir; opened the embedded engine (chDB, "
              f"ClickHouse {client.server_version}) in this process on {clickhouse.embedded_data_path(settings)}",
              file=sys.stderr, flush=True)
    fmt = query_format(args.format, sys.stdout.isatty())
    try:
        exists = client.query("SELECT count() FROM system.databases WHERE name = {db:String}",
                              parameters={"db": database}).result_rows[0][0]
        if exists:
            client.database = database  # so Maple's tables can be named unqualified
        elif args.database:
            raise SettingsError(f"--database {database}: no such database")
        elif in_process:
            print(f"maple query: there is no database `{database}` in {clickhouse.embedded_data_path(settings)}: "
                  "if you expected data, is MAPLE_DATA_DIR (or data_dir in --config) the one `maple up` uses?",
                  file=sys.stderr, flush=True)
        # Only row-returning statements take an output format; `INSERT ... VALUES` would choke on one.
        out = client.raw_query(args.sql, fmt=fmt if _wants_format(args.sql) else None)
    finally:
        client.close()
    sys.stdout.write(out.decode("utf-8", errors="replace"))
    sys.stdout.flush()
    return 0


def _wants_format(sql: str) -> bool:
    words = sql.lstrip(" \t\n(").split(None, 1)
    first = words[0].upper() if words else ""
    has_own = re.search(r"\bFORMAT\s+\w+\s*;?\s*$", sql, re.IGNORECASE) is not None
    return first in ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS", "CHECK") and not has_own


def cmd_schema_apply(args: argparse.Namespace) -> int:
    from maple import clickhouse, schema

    settings = _settings(args, clickhouse_cluster=args.cluster)
    cfg = settings.clickhouse
    target = schema.Target(cfg.database, cfg.ttl_days, cfg.cluster)
    if args.dry_run:
        for statement in schema.all_statements(target):
            _say(statement + ";")
        return 0
    if cfg.cluster and not cfg.url:
        raise SettingsError("clickhouse.cluster (MAPLE_CLICKHOUSE_CLUSTER, --cluster) needs clickhouse.url "
                            "(MAPLE_CLICKHOUSE_URL): the URL of one of the cluster's servers (the embedded engine "
                            "has no cluster)")
    # ON CLUSTER DDL runs on every node from one of them; without a cluster each URL is a separate server
    # (a shard the sink routes to) and gets the single-node schema of its own.
    if cfg.cluster or len(cfg.url) <= 1:
        clients: list[tuple[str, Callable[[], Client]]] = [("", partial(clickhouse.connect, settings))]
    else:
        clients = [(e.display, partial(clickhouse.connect_endpoint, e, settings))
                   for e in clickhouse.endpoints(settings)]
    for where, connect in clients:
        client = connect()
        try:
            ran = schema.apply(client, target, say=_say)
            version = max(schema.applied_versions(client, target.database), default=0)
        finally:
            client.close()
        scope = (f"cluster {cfg.cluster} via {clickhouse.endpoints(settings)[0].display}" if cfg.cluster
                 else where or clickhouse.describe_engine(settings))
        _say(f"schema of `{target.database}` at version {version} ({len(ran)} migration(s) applied now) on {scope}")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    settings = _settings(args)
    rows = describe(settings, sources=setting_sources(args.config))
    if args.format == "yaml":
        sys.stdout.write(as_yaml(settings))
    elif args.format == "json":
        print(json.dumps(rows, indent=2, default=str))
    else:
        # Values as JSON, so types show: "text" is a string, 2.0 a number, [..] a list. Values last: some are long.
        table = [("setting", "source", "environment variable", "value")] + [
            (row["key"], row["source"], row["env"], json.dumps(row["value"], default=str)) for row in rows]
        widths = [max(len(line[i]) for line in table) for i in range(3)]
        for line in table:
            _say("  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[3])
    return 0


# -- parser ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="YAML settings file (default: $MAPLE_CONFIG)")

    parser = argparse.ArgumentParser(
        prog="maple", parents=[common], epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Maple: OpenTelemetry into ClickHouse through Kafka. OTLP ingest -> Kafka -> Faust workers "
                    "-> exactly-once sinks -> ClickHouse (embedded chDB by default).")
    parser.add_argument("--version", action="version", version=f"maple {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_text: str, func: Callable[[argparse.Namespace], int], description: str = "",
            into: argparse._SubParsersAction = sub) -> argparse.ArgumentParser:
        p = into.add_parser(name, help=help_text, description=description or help_text, parents=[common],
                            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        return p

    add("up", "run everything locally: Kafka, embedded ClickHouse, the pipeline stages and the query API", cmd_up,
        "Check every port it will listen on (a taken one stops it before anything starts, naming the port and "
        "its setting), start the local Kafka broker (unless MAPLE_KAFKA_BOOTSTRAP is set), create Maple's "
        "topics, start the embedded ClickHouse host (unless MAPLE_CLICKHOUSE_URL is set), the pipeline stages "
        "and the query API (`maple api`, api.port 8080) as child processes. Says \"maple is up\" with the "
        "endpoints once every stage is ready, then prints nothing unless something happens; restarts a stage "
        "that dies (with backoff), and stops everything on Ctrl-C or SIGTERM. Every child logs in one format "
        "at log_level. Data persists in the data dir, so a second `maple up` resumes where the first stopped.")

    kafka = add("kafka", "run Maple's local Apache Kafka (KRaft, jars from Maven Central)", cmd_kafka,
                "Manage the local Kafka cluster under <data_dir>/kafka. `start` fetches the broker jars with mvn "
                "into the cache dir (once), formats KRaft storage, starts the nodes in the background and returns "
                "when a record can be produced and consumed. `stop` is clean and idempotent; a stopped broker "
                "restarts with its data. `status` exits 3 unless every node runs.")
    kafka.add_argument("action", choices=("start", "stop", "status"))
    kafka.add_argument("--brokers", type=int, help="number of KRaft nodes (default: kafka.brokers, 1)")
    kafka.add_argument("--port", type=int, help="client port of the first node (default: kafka.port, 9092)")

    ch = sub.add_parser("clickhouse", help="the embedded ClickHouse host", parents=[common],
                        description="The embedded ClickHouse engine (chDB).")
    ch_sub = ch.add_subparsers(dest="action", metavar="ACTION", required=True)
    serve = add("serve", "own the embedded chDB data dir and serve ClickHouse's HTTP protocol on loopback",
                cmd_clickhouse_serve,
                "chDB lets one process open a data dir. This process owns it and serves ClickHouse's HTTP "
                "interface (clickhouse.embedded_host:embedded_port, default 127.0.0.1:8123) so that sinks, "
                "`maple query` and curl reach the same engine. `maple up` runs it for you.", into=ch_sub)
    serve.add_argument("--threads", type=int, default=4, help="concurrent queries (default 4)")

    query = add("query", "run one SQL statement against Maple's ClickHouse and print the result", cmd_query,
                "Runs against MAPLE_CLICKHOUSE_URL, else the running embedded host (`maple up`), else opens the "
                "embedded engine in this process (and says so on stderr, with its data directory, warning when "
                "that directory holds no Maple database). Tables of Maple's database can be named unqualified. "
                "Output: a table on a terminal, TSV when piped or redirected (like clickhouse-client), or the "
                "--format given.")
    query.add_argument("sql", help='the statement, e.g. "SELECT count() FROM otel_logs"')
    query.add_argument("--format",
                       help="ClickHouse output format, e.g. TSV, TSVWithNames, CSV, JSONEachRow, PrettyCompact "
                            "(default: PrettyCompactMonoBlock on a terminal, TSV otherwise)")
    query.add_argument("--database", help="default database for the statement (default: clickhouse.database)")

    send = add("send-test-data", "send a few traces, logs and metrics to the ingest, to see Maple work",
               cmd_send_test_data,
               "Sends --traces traces of three spans (every fifth with an error span, which the default tail "
               "sampling keeps; 10% of the others), as many log records (a third with JSON bodies) and two metric "
               "points per trace, as OTLP/HTTP JSON, to the configured ingest (ingest.host, ingest.http_port) or "
               "--endpoint. Every record carries the resource attribute maple.test_run with the run's id. "
               "With --wait it watches the rows arrive in ClickHouse. Logs and metrics are queryable within "
               "seconds, traces after decision_wait (10 s by default). Standalone: python3 apps/testdata.py.")
    send.add_argument("--endpoint", help="OTLP/HTTP base URL (default: http://<ingest.host>:<ingest.http_port>)")
    send.add_argument("--traces", type=int, default=20, help="traces, log records and points per metric (default 20)")
    send.add_argument("--api-key", help="when the ingest has MAPLE_INGEST_API_KEYS set")
    send.add_argument("--wait", action="store_true", help="wait until the rows are in ClickHouse, and say when")
    send.add_argument("--wait-timeout", type=float, default=60.0, metavar="SECONDS",
                      help="how long --wait waits (default 60)")

    schema = sub.add_parser("schema", help="Maple's ClickHouse schema", parents=[common])
    schema_sub = schema.add_subparsers(dest="action", metavar="ACTION", required=True)
    apply = add("apply", "create or upgrade Maple's database and tables (idempotent)", cmd_schema_apply,
                "Creates the database and applies every schema migration not yet recorded in "
                "maple_schema_versions, in order. Re-applying is a no-op. With several clickhouse.url and no "
                "cluster, each URL is a separate server and gets the schema. With --cluster (or "
                "clickhouse.cluster) the DDL runs ON CLUSTER from the first URL: Replicated <table>_local "
                "tables on every shard and Distributed tables with the exporter's names over them "
                "(docs/cluster.md).", into=schema_sub)
    apply.add_argument("--dry-run", action="store_true",
                       help="print the DDL (single node, or cluster with --cluster) instead of applying it; "
                            "needs no ClickHouse")
    apply.add_argument("--cluster", metavar="NAME",
                       help="cluster name from the servers' remote_servers: create the cluster schema ON CLUSTER "
                            "NAME (default: clickhouse.cluster, $MAPLE_CLICKHOUSE_CLUSTER; empty = single node)")

    config = sub.add_parser("config", help="inspect settings", parents=[common])
    config_sub = config.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = add("show", "print the effective settings (secrets masked) and where each came from", cmd_config_show,
               "One row per setting: its key, where its value came from (default, file: the YAML of --config or "
               "MAPLE_CONFIG, environment: its MAPLE_* variable, which wins), the variable, and the value as JSON "
               "(strings quoted, numbers and lists typed). --format yaml prints a file --config accepts back.",
               into=config_sub)
    show.add_argument("--format", choices=("table", "yaml", "json"), default="table")

    add("ingest", "serve OTLP gRPC :4317 and HTTP :4318, writing every accepted request to Kafka", cmd_ingest,
        "The OTLP receivers. Each accepted export request becomes one Kafka record (split at resource/scope "
        "boundaries if it exceeds the topic's record limit) on otlp.{traces,logs,metrics}.raw; the client "
        "gets success only after Kafka acknowledged. Also serves /healthz, /readyz (ready while Kafka is "
        "reachable) and Prometheus /metrics on the HTTP port. See `maple config show` for ingest.*.")
    api = add("api", "serve the query API (and the web UI): search logs and traces, services, metrics, SQL",
              cmd_api,
              "The query service: an HTTP API over Maple's ClickHouse tables under /api/v1 (logs search, aggregate "
              "and live tail; traces search, one trace, services with RED figures, the service map; metrics names, "
              "labels, series and a PromQL subset; read-only SQL; sources; health), its OpenAPI document at "
              "/api/openapi.json (browsable at /api/docs), and the built web UI at / when there is one. Every "
              "query runs read-only with ClickHouse's limits (api.max_execution_time_s, api.max_result_rows, ...). "
              "Operator-added sources live in the metadata store (api.metadata_url; default a SQLite file in the "
              "data dir), migrated at start. Needs a running ClickHouse: `maple up` starts this with the rest. "
              "See docs/query.md.")
    api.add_argument("--host", help="listen address (default: api.host, 127.0.0.1)")
    api.add_argument("--port", type=int, help="listen port (default: api.port, 8080)")

    bench = sub.add_parser("bench", help="benchmarks (figures for the README's performance section)",
                           parents=[common])
    bench_sub = bench.add_subparsers(dest="action", metavar="BENCHMARK", required=True)
    bench_ingest = add("ingest", "drive OTLP/HTTP protobuf trace requests at an ingest and measure it",
                       cmd_bench_ingest,
                       "Sends pre-built ExportTraceServiceRequest bodies from `--concurrency` connections for "
                       "`--duration` seconds after a warm-up, then reports requests/s, spans/s, MB/s, p50/p99 "
                       "latency and the ingest's CPU seconds per million spans (read from /proc). Without --url it "
                       "starts its own `maple ingest` against the configured Kafka (which must be running: "
                       "`maple kafka start`).", into=bench_sub)
    bench_ingest.add_argument("--url", help="a running ingest's HTTP base URL (default: start one)")
    bench_ingest.add_argument("--pid", type=int, help="that ingest's pid, for its CPU time")
    bench_ingest.add_argument("--spans", type=int, default=512, help="spans per request (default 512)")
    bench_ingest.add_argument("--concurrency", type=int, default=8, help="concurrent connections (default 8)")
    bench_ingest.add_argument("--duration", type=float, default=20, help="measured seconds (default 20)")
    bench_ingest.add_argument("--warmup", type=float, default=3, help="warm-up seconds, not measured (default 3)")
    bench_ingest.add_argument("--tls", action="store_true",
                              help="run the same load against its own ingest plaintext, with TLS and with mutual "
                                   "TLS in turn (throwaway certificates, apps/resources/test-certs.sh; needs "
                                   "openssl) and report each one's CPU per span against plaintext's")
    bench_ingest.add_argument("--rounds", type=int, default=1,
                              help="with --tls: rounds of the three modes; each mode's median round is reported "
                                   "(default 1)")
    bench_ingest.add_argument("--json", action="store_true", help="print the report as JSON")

    limits = add("ingest-limits", "send worst-case requests at once; measure /healthz latency and the ingest's memory",
                 cmd_bench_ingest_limits,
                 "Sends --concurrency copies of one expensive OTLP request at once (--shape: json-tiny, json-spans, "
                 "protobuf-empty, protobuf-spans; the costliest per byte OTLP allows) while probing /healthz every "
                 "20 ms and sampling the resident memory of the ingest and its parse processes every 50 ms. Reports "
                 "the answers, /healthz latency (median, p99, max) and peak memory over the baseline. Without --url "
                 "it starts its own `maple ingest` (Kafka must be running); with --url and --pid it measures that "
                 "one.", into=bench_sub)
    limits.add_argument("--shape", choices=("json-tiny", "json-spans", "protobuf-empty", "protobuf-spans"),
                        default="json-tiny")
    limits.add_argument("--size-mb", type=float, default=31.0, help="size of the request in MB (default 31)")
    limits.add_argument("--concurrency", type=int, default=3,
                        help="copies sent at once (default 3; 0: none, probe an idle ingest for 20 s as a baseline)")
    limits.add_argument("--url", help="a running ingest's HTTP base URL (default: start one)")
    limits.add_argument("--pid", type=int, help="that ingest's pid, for its memory")
    limits.add_argument("--json", action="store_true", help="print the report as JSON")

    bench_e2e = add("e2e", "measure records/s through workers and sinks, and ingest-to-queryable freshness",
                    cmd_bench_e2e,
                    "Phase 1 produces --records raw records straight into the raw topic, starts workers and sinks, "
                    "and measures records/s while rows appear in ClickHouse. Phase 2 sends requests through a real "
                    "ingest at --rate records/s (default: half of phase 1) for --duration seconds and reports the "
                    "p50/p99 of ingest receipt -> ClickHouse acknowledgement. Traces: spans go through "
                    "repartitioning, RED, tail sampling (default policies) and the sink; a span counts once its RED "
                    "point and every sampled trace are queryable, and freshness is measured from the sampling "
                    "decision. With --after-root, phase 2 also times error traces from root received to "
                    "queryable. Uses its own consumer groups and database (bench_<id>). Kafka must be running "
                    "(`maple kafka start`).", into=bench_sub)
    bench_e2e.add_argument("--signal", choices=("logs", "metrics", "traces"), default="logs")
    bench_e2e.add_argument("--records", type=int, default=1_000_000, help="phase 1 backlog (default 1,000,000)")
    bench_e2e.add_argument("--per-request", type=int, default=500, help="records per OTLP request (default 500)")
    bench_e2e.add_argument("--rate", type=float, help="phase 2 records/s (default: half the phase 1 rate)")
    bench_e2e.add_argument("--duration", type=float, default=30, help="phase 2 seconds (default 30)")
    bench_e2e.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    bench_e2e.add_argument("--sinks", type=int, default=1, help="sink processes (default 1)")
    bench_e2e.add_argument("--decision-wait", type=float,
                           help="traces: the sampler's decision_wait in seconds (default 2; 10 with --after-root)")
    bench_e2e.add_argument("--after-root", type=float, metavar="SECONDS",
                           help="traces: set decision_wait_after_root_received and, during phase 2, time error "
                                "traces from their root's receipt to queryable in otel_traces, against error traces "
                                "whose root never arrives (decided by decision_wait alone)")
    bench_e2e.add_argument("--json", action="store_true", help="print the report as JSON")

    bench_chaos = add("chaos", "kill the pipeline's parts again and again under load; count records lost, duplicated",
                      cmd_bench_chaos,
                      "Runs a sandbox of its own (local Kafka with --brokers, the embedded ClickHouse host, an ingest, "
                      "workers and sinks, under data_dir/chaos-<id>, on free ports) and a verifying client that sends "
                      "OTLP/HTTP logs with a unique id per record and retries each request until acknowledged, as "
                      "OTLP exporters do. Every --interval seconds one fault, round robin over --faults: kill -9 of a "
                      "worker, sink or the ingest; a broker killed for --broker-down seconds; the ClickHouse host "
                      "paused (SIGSTOP) for --pause seconds or killed. Then it drains the pipeline and reports "
                      "records acknowledged, lost and duplicated (docs/reliability.md). Exits 1 on any loss.",
                      into=bench_sub)
    bench_chaos.add_argument("--duration", type=float, default=300, help="seconds of faults (default 300)")
    bench_chaos.add_argument("--interval", type=float, default=15, help="seconds between faults (default 15)")
    bench_chaos.add_argument("--faults", default="worker,sink,ingest,broker,clickhouse-pause,clickhouse-kill",
                             help="comma-separated, in this order, round robin (default: all six)")
    bench_chaos.add_argument("--brokers", type=int, choices=(1, 3), default=1, help="local Kafka brokers (default 1)")
    bench_chaos.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    bench_chaos.add_argument("--sinks", type=int, default=2, help="sink processes (default 2)")
    bench_chaos.add_argument("--clients", type=int, default=4, help="verifying client threads (default 4)")
    bench_chaos.add_argument("--rate", type=float, default=10, help="requests/s per client (default 10)")
    bench_chaos.add_argument("--per-request", type=int, default=50, help="records per request (default 50)")
    bench_chaos.add_argument("--broker-down", type=float, default=5, help="seconds a killed broker stays down")
    bench_chaos.add_argument("--pause", type=float, default=10, help="seconds the ClickHouse host stays paused")
    bench_chaos.add_argument("--keep", action="store_true", help="keep the sandbox (logs, data) afterwards")
    bench_chaos.add_argument("--json", action="store_true", help="print the report as JSON")

    bench_rekey = add("rekey", "measure what moving otel_logs to the exporter's sort key costs (docs/schema.md)",
                      cmd_bench_rekey,
                      "In a private embedded engine (a temporary directory), fills an otel_logs table of the "
                      "previous generation with --rows generated rows over one day, then times migration 3's "
                      "in-place path (ALTER ... ADD COLUMN) and a full copy into a table with the new key, and "
                      "compares the rows each key reads for a 15-minute and a one-service query.", into=bench_sub)
    bench_rekey.add_argument("--rows", type=int, default=10_000_000, help="rows to fill (default 10,000,000)")
    bench_rekey.add_argument("--json", action="store_true", help="print the report as JSON")

    bench_compare = add("compare", "Maple and the OpenTelemetry Collector side by side: CPU per million records "
                        "per stage, peak RSS, freshness", cmd_bench_compare,
                        "Runs the same telemetrygen load (spans in traces of 8 and logs with a JSON body, sent at "
                        "once over OTLP/gRPC) through Maple (ingest, worker, sink; once with the Python processors, "
                        "once with the compiled core) and through an OpenTelemetry Collector pair (ingest: otlp -> "
                        "kafka; worker: kafka -> tail_sampling, spanmetrics, transform), on the same Kafka, in "
                        "alternating order. Reports each process's own CPU seconds per million records (Kafka and "
                        "ClickHouse apart), peak RSS and Maple's freshness. The Collector and telemetrygen are "
                        "built from the Go module proxy into the cache on first use (several minutes). Kafka must "
                        "be running (`maple kafka start`).", into=bench_sub)
    bench_compare.add_argument("--spans", type=int, default=160_000, help="spans to send (default 160,000)")
    bench_compare.add_argument("--logs", type=int, default=200_000, help="log records to send (default 200,000)")
    bench_compare.add_argument("--batch", type=int, default=512, help="records per OTLP request (default 512)")
    bench_compare.add_argument("--rate", type=float, default=20_000,
                               help="records/s each generator sends (default 20,000)")
    bench_compare.add_argument("--decision-wait", type=float, default=2.0,
                               help="tail sampling decision_wait in seconds, both sides (default 2)")
    bench_compare.add_argument("--runs", type=int, default=2, help="runs of every pipeline, alternating (default 2)")
    bench_compare.add_argument("--pipelines", nargs="+", default=["maple-python", "maple-native", "collector"],
                               choices=["maple-python", "maple-native", "collector"],
                               help="which pipelines to run (default all three)")
    bench_compare.add_argument("--collector-exporter", action="store_true",
                               help="end the Collector's worker in its ClickHouse exporter instead of the debug one")
    bench_compare.add_argument("--workers", type=int, default=1,
                               help="Maple worker processes (default 1; the CPU of all of them is the worker's)")
    bench_compare.add_argument("--json", action="store_true", help="print the report as JSON")

    bench_q = add("query", "measure the query API on a generated data set (10M log rows, 2M spans by default)",
                  cmd_bench_query,
                  "Generates a reproducible data set inside ClickHouse (INSERT ... SELECT over numbers(): every value "
                  "a function of the row number; timestamps end at the minute of generation), derives RED metrics "
                  "from its spans, starts `maple api` on it and reports p50/p95/max latency of log search with a "
                  "text term over 24 h, trace by id, the service list, the service map over 1 h and a histogram "
                  "quantile, then ClickHouse's EXPLAIN (indexes = 1) of the SQL behind them. Needs the embedded "
                  "engine (started if no host runs) or MAPLE_CLICKHOUSE_URL.", into=bench_sub)
    bench_q.add_argument("--database", default="bench_query", help="database for the data set (default bench_query; "
                                                                   "dropped and recreated unless --reuse)")
    bench_q.add_argument("--logs", type=int, default=10_000_000, help="log rows (default 10,000,000)")
    bench_q.add_argument("--spans", type=int, default=2_000_000, help="spans, in traces of 8 (default 2,000,000)")
    bench_q.add_argument("--hours", type=float, default=24.0, help="time span of the data (default 24)")
    bench_q.add_argument("--iterations", type=int, default=30, help="measured calls per case (default 30)")
    bench_q.add_argument("--reuse", action="store_true", help="keep an existing data set of the same size")
    bench_q.add_argument("--json", action="store_true", help="print the report as JSON")

    bench_a = add("alerts", "measure alert evaluation: rules evaluated per second with 100 rules (embedded engine)",
                  cmd_bench_alerts,
                  "Generates a data set in ClickHouse (as `maple bench query` does, over the last hour), creates "
                  "--rules rules (log searches, span searches, PromQL metric rules, 5-minute windows) in a private "
                  "metadata store, and runs the API's alert evaluator: all rules due at once, --rounds times, "
                  "reporting rules/s and CPU ms per rule of the evaluator and of the embedded ClickHouse host; then "
                  "each rule alone for p50/p95 per kind. Starts the embedded engine if no host runs.",
                  into=bench_sub)
    bench_a.add_argument("--rules", type=int, default=100, help="rules (default 100)")
    bench_a.add_argument("--rounds", type=int, default=5, help="measured rounds (default 5)")
    bench_a.add_argument("--workers", type=int, help="evaluator threads (default: api.alert_workers, 4)")
    bench_a.add_argument("--logs", type=int, default=2_000_000, help="log rows (default 2,000,000)")
    bench_a.add_argument("--spans", type=int, default=400_000, help="spans (default 400,000)")
    bench_a.add_argument("--database", default="bench_alerts", help="database of the data set (default bench_alerts)")
    bench_a.add_argument("--reuse", action="store_true", help="keep an existing data set of the same size")
    bench_a.add_argument("--json", action="store_true", help="print the report as JSON")

    worker = add("worker", "run the Faust processing workers: raw OTLP topics -> row batches", cmd_worker,
        "A Faust app (consumer group worker.group) with one agent per signal in worker.signals: logs (JSON "
        "bodies parsed, severity inferred), metrics (one row per data point, by type) and traces (spans "
        "repartitioned by TraceId onto otel.spans with RED points onto otel.metrics, then tail-sampled onto "
        "otel.spans.sampled by the policies in traces.sampling_config). Each raw record becomes row batches "
        "(ClickHouse Native from the compiled core, JSONColumns from the Python processors: worker.core), "
        "acknowledged in order after Kafka stored them. Run more processes to scale, up to the partition count.")
    worker.add_argument("--ready-file", type=Path, metavar="PATH",
                        help="create PATH (holding the pid) once the worker consumes, remove it at exit; "
                             "`maple up` waits for it, and an exec readiness probe can test for it")
    sink = add("sink", "run the exactly-once ClickHouse sink: processed topics -> ClickHouse tables", cmd_sink,
        "Consumes otel.logs, otel.metrics and otel.spans.sampled (group sink.group), gathers row batches per "
        "partition up to sink.batch_rows / batch_bytes / flush_interval_s, inserts them with deduplication "
        "tokens, and commits offsets only after ClickHouse acknowledged. Rows ClickHouse rejects for good go to "
        "maple.dlq. Run "
        "more processes to scale, up to the partition count. See docs/exactly-once.md.")
    sink.add_argument("--ready-file", type=Path, metavar="PATH",
                      help="create PATH (holding the pid) once the group assigned this sink its partitions, "
                           "remove it at exit; `maple up` waits for it")

    from ops.commands import register as register_ops  # replay, lag, dlq: docs/operations.md

    register_ops(add, sub, common, _settings)
    from apps.access import register as register_access  # teams, users, keys: docs/teams.md

    register_access(add, sub, common, _settings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:
        print(f"maple: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `maple ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141
    except Exception as exc:  # a clear one-line reason, the traceback only at debug level
        logging.getLogger("maple").debug("command failed", exc_info=True)
        print(f"maple {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
