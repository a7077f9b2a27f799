"""The `maple` command as a user runs it: help, clear errors, and `maple up` end to end."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from apps import maple_command
from maple import schema
from maple.log import LINE_PATTERN
from maple.net import free_port
from tests.helpers.environment import clean_environ

COMMANDS = [[], ["up"], ["kafka"], ["clickhouse"], ["clickhouse", "serve"], ["query"], ["schema"],
            ["schema", "apply"], ["config"], ["config", "show"], ["ingest"], ["worker"], ["sink"], ["bench"],
            ["bench", "ingest"], ["bench", "e2e"], ["bench", "rekey"], ["bench", "query"], ["api"], ["replay"], ["lag"],
            ["dlq"], ["dlq", "list"], ["dlq", "show"], ["dlq", "redrive"], ["send-test-data"]]


def maple(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(maple_command(*args), capture_output=True, text=True,
                          env=env or clean_environ(), timeout=timeout)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "maple")
def test_every_command_explains_itself(command: list[str]) -> None:
    result = maple(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: maple" in result.stdout
    assert "MAPLE_" in result.stdout  # points at how settings are given


def test_invalid_setting_stops_start_up_naming_the_key() -> None:
    result = maple("up", env=clean_environ(MAPLE_KAFKA_PARTITIONS="many"))
    assert result.returncode == 2
    assert "kafka.partitions (MAPLE_KAFKA_PARTITIONS): 'many'; expected an integer" in result.stderr


def test_config_show_masks_the_password() -> None:
    result = maple("config", "show", "--format", "yaml",
                   env=clean_environ(MAPLE_CLICKHOUSE_URL="http://writer:hunter2@ch:8123/otel"))
    assert result.returncode == 0
    assert "http://writer:****@ch:8123/otel" in result.stdout and "hunter2" not in result.stdout


def test_query_and_schema_open_the_engine_in_process_when_no_host_runs(tmp_path: Path) -> None:
    env = clean_environ(MAPLE_DATA_DIR=str(tmp_path))
    fresh = maple("query", "SELECT 1", "--format", "TSV", env=env)
    assert fresh.stdout == "1\n"  # stdout stays the result; what was opened goes to stderr
    data = tmp_path / "clickhouse" / "data"
    assert f"in this process on {data}" in fresh.stderr
    # An empty data dir looks like lost data: the command says the database is not there, and why that may be.
    assert f"there is no database `otel` in {data}" in fresh.stderr and "MAPLE_DATA_DIR" in fresh.stderr
    first = maple("schema", "apply", env=env)
    assert first.returncode == 0, first.stderr
    newest = max(m.version for m in schema.MIGRATIONS)
    assert f"schema of `otel` at version {newest} ({len(schema.MIGRATIONS)} migration(s) applied now)" in first.stdout
    again = maple("schema", "apply", env=env)
    assert f"at version {newest} (0 migration(s) applied now)" in again.stdout
    result = maple("query", "SELECT name FROM system.tables WHERE database = 'otel' ORDER BY name", "--format",
                   "TSV", env=env)
    assert "opened the embedded engine" in result.stderr and "no database" not in result.stderr
    assert result.stdout.split() == ["maple_schema_versions", "otel_logs", "otel_metrics_exponential_histogram",
                                     "otel_metrics_gauge", "otel_metrics_histogram", "otel_metrics_sum",
                                     "otel_metrics_summary", "otel_traces", "otel_traces_trace_id_ts",
                                     "otel_traces_trace_id_ts_mv"]
    dry = maple("schema", "apply", "--dry-run", env=clean_environ(MAPLE_DATA_DIR=str(tmp_path / "untouched")))
    assert dry.returncode == 0 and dry.stdout.count("CREATE TABLE IF NOT EXISTS") == 10  # otel_logs twice (3 replaces it)
    assert [line for line in dry.stdout.split(";\n") if line] == schema.all_statements(schema.Target("otel"))
    assert not (tmp_path / "untouched").exists()
    bad = maple("query", "SELECT * FROM nowhere", env=env)
    assert bad.returncode == 1 and "UNKNOWN_TABLE" in bad.stderr


def test_query_output_is_tsv_when_piped_and_says_which_engine_it_opened(tmp_path: Path) -> None:
    env = clean_environ(MAPLE_DATA_DIR=str(tmp_path))
    piped = maple("query", "SELECT number * 2 + 1 AS n, if(n = 1, 'two words', 'x') AS s FROM numbers(2) ORDER BY n", env=env)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == "1\ttwo words\n3\tx\n"  # no box drawing: fit for `cut`, `sort`, `wc -l`
    # The host is down, so the engine was opened in this process: stderr says which and where, stdout stays clean.
    assert "opened the embedded engine (chDB, ClickHouse" in piped.stderr
    assert str(tmp_path / "clickhouse" / "data") in piped.stderr
    pretty = maple("query", "SELECT 1 AS n", "--format", "PrettyCompact", env=env)
    assert "┌─n─┐" in pretty.stdout


def test_a_taken_port_stops_maple_up_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = clean_environ(MAPLE_DATA_DIR=str(tmp_path), MAPLE_KAFKA_PORT=str(free_port()),
                            MAPLE_KAFKA_CONTROLLER_PORT=str(free_port()),
                            MAPLE_CLICKHOUSE_EMBEDDED_PORT=str(free_port()), MAPLE_INGEST_HTTP_PORT=str(port),
                            MAPLE_INGEST_GRPC_PORT=str(free_port()), MAPLE_WORKER_METRICS_PORT="0",
                            MAPLE_SINK_METRICS_PORT="0")
        result = maple("up", env=env, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (f"port {port} is already in use: 127.0.0.1:{port} (OTLP/HTTP; setting ingest.http_port, "
            f"MAPLE_INGEST_HTTP_PORT)") in result.stderr
    assert "nothing was started" in result.stderr
    assert "kafka node" not in result.stderr and not (tmp_path / "kafka").exists()  # Kafka never started
    assert not (tmp_path / "clickhouse").exists()


class Up:
    """A `maple up` child process whose output is read line by line in the background."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(maple_command("up"), env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                assert self.proc.poll() is None, "maple up exited:\n" + "".join(self.output)
                continue
            self.output.append(line)
            if text in line:
                return
        raise AssertionError(f"no {text!r} within {timeout}s:\n" + "".join(self.output))

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(120)
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return code


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _processes_of(data_dir: Path) -> list[str]:
    """Command lines of live processes started for this data dir (they inherit MAPLE_DATA_DIR)."""
    marker = f"MAPLE_DATA_DIR={data_dir}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid() or not _alive(int(proc.name)):
            continue
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return found


def _children(env: dict[str, str]) -> list[int]:
    """Pids of the Kafka node and the ClickHouse host that `maple up` runs for this data dir."""
    data = Path(env["MAPLE_DATA_DIR"])
    host = json.loads((data / "clickhouse" / "host.json").read_text())
    broker = int((data / "kafka" / "node-1" / "broker.pid").read_text())
    return [int(host["pid"]), broker]


def test_up_runs_kafka_and_clickhouse_answers_queries_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    env = clean_environ(MAPLE_DATA_DIR=str(tmp_path), MAPLE_KAFKA_PORT=str(free_port()),
                        MAPLE_WORKER_METRICS_PORT="0", MAPLE_SINK_METRICS_PORT="0",
                        MAPLE_KAFKA_CONTROLLER_PORT=str(free_port()), MAPLE_KAFKA_HEAP="384m",
                        MAPLE_CLICKHOUSE_EMBEDDED_PORT=str(free_port()), MAPLE_INGEST_HTTP_PORT=str(free_port()),
                        MAPLE_INGEST_GRPC_PORT=str(free_port()), MAPLE_API_PORT=str(free_port()))
    up = Up(env)
    try:
        up.wait_for("Ctrl-C stops everything")
        text = "".join(up.output)
        assert "kafka       healthy" in text and "clickhouse  healthy" in text and "ingest      ready" in text
        assert f"OTLP HTTP http://127.0.0.1:{env['MAPLE_INGEST_HTTP_PORT']}" in text
        assert "worker      ready" in text and "sink        ready" in text
        assert f"127.0.0.1:{env['MAPLE_KAFKA_PORT']}" in text
        assert f"http://127.0.0.1:{env['MAPLE_CLICKHOUSE_EMBEDDED_PORT']}" in text
        # One format: every line of every child is a Maple log line, except the "maple is up" summary.
        before, summary = text.split("maple is up\n")
        foreign = [line for line in before.splitlines() if not re.match(LINE_PATTERN, line)]
        assert not foreign, "lines not in Maple's log format:\n" + "\n".join(foreign)
        assert all(line.startswith("  ") or line == "Ctrl-C stops everything." for line in summary.splitlines())
        # The worker and the sink were ready before "up" was said (they logged so, in order).
        assert "worker maple-worker ready" in before and "sinks.runner: assigned" in before
        # Nothing after "up" while nothing happens (no Faust chatter, no librdkafka lines, no late "ready").
        quiet_until = time.monotonic() + 10
        while time.monotonic() < quiet_until:
            try:
                line = up.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            up.output.append(line)
            raise AssertionError(f"printed after 'maple is up' with nothing happening: {line!r}")

        # The main job: a log sent to the ingest becomes a row anyone can query.
        body = json.dumps({"resourceLogs": [{"resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "up-test"}}]}, "scopeLogs": [{"logRecords": [
                {"timeUnixNano": str(time.time_ns()), "body": {"stringValue": "hello from maple up ERROR"}}]}]}]})
        request = urllib.request.Request(f"http://127.0.0.1:{env['MAPLE_INGEST_HTTP_PORT']}/v1/logs",
                                         data=body.encode(), headers={"Content-Type": "application/json"})
        assert urllib.request.urlopen(request, timeout=30).status == 200
        deadline = time.monotonic() + 90
        while True:
            landed = maple("query", "SELECT SeverityText, Body FROM otel_logs WHERE ServiceName = 'up-test'",
                           "--format", "TSV", env=env)
            if landed.stdout.strip():
                break
            assert time.monotonic() < deadline, "the log never became queryable:\n" + "".join(up.output)
            time.sleep(1)
        assert landed.stdout.strip() == "ERROR\thello from maple up ERROR"
        api = f"http://127.0.0.1:{env['MAPLE_API_PORT']}"
        assert f"api         ready    {api}/" in text
        with urllib.request.urlopen(f"{api}/api/v1/logs/search?service=up-test&q=level:error", timeout=30) as found:
            assert [row["body"] for row in json.load(found)["rows"]] == ["hello from maple up ERROR"]

        # The README's first step: test data in, and seen arriving, within a minute.
        sent = maple("send-test-data", "--wait", env=env)
        assert sent.returncode == 0, sent.stdout + sent.stderr + "".join(up.output)
        for kind in ("logs", "metrics", "traces"):
            assert re.search(rf"^{kind} +\d+ .* after [\d.]+s$", sent.stdout, re.MULTILINE), sent.stdout

        # Idle again: `maple lag` says 0 for both groups, each only on the topics its stage reads.
        deadline = time.monotonic() + 90
        while True:
            lag = maple("lag", env=env)
            assert lag.returncode == 0, lag.stderr
            summary_rows = [line.split(None, 4) for line in lag.stdout.splitlines()[1:3]]
            if all(row[1] == "0" for row in summary_rows):
                break
            assert time.monotonic() < deadline, "lag never reached 0 on an idle pipeline:\n" + lag.stdout
            time.sleep(2)
        assert summary_rows == [
            ["maple-worker", "0", "0.0s", "OK", "otel.spans, otlp.logs.raw, otlp.metrics.raw, otlp.traces.raw"],
            ["maple-sink", "0", "0.0s", "OK", "otel.logs, otel.metrics, otel.spans.sampled"]], lag.stdout
        spans_only = maple("lag", "--topic", "otel.spans", "--json", env=env)
        assert {(r["group"], r["topic"]) for r in json.loads(spans_only.stdout)} == {("maple-worker", "otel.spans")}

        version = maple("query", "SELECT version()", "--format", "TSV", env=env)
        assert version.returncode == 0, version.stderr
        assert version.stdout.strip().split(".")[0].isdigit()
        assert maple("schema", "apply", env=env).returncode == 0
        created = maple("query", "CREATE TABLE otel.resume_check (n UInt32) ENGINE = MergeTree ORDER BY n", env=env)
        assert created.returncode == 0, created.stderr
        assert maple("query", "INSERT INTO otel.resume_check VALUES (7)", env=env).returncode == 0
        assert maple("kafka", "status", env=env).returncode == 0
        pids = _children(env)

        # A dying stage is restarted, and says why.
        os.kill(pids[0], signal.SIGKILL)
        up.wait_for("clickhouse restarted", timeout=60)
        deadline = time.monotonic() + 60
        while (maple("query", "SELECT 1", env=env).returncode != 0 or _children(env)[0] == pids[0]):
            assert time.monotonic() < deadline, "the restarted ClickHouse host never served"
            time.sleep(0.5)
        old_host, pids = pids[0], _children(env)
        assert not _alive(old_host)
    finally:
        code = up.stop(signal.SIGINT)
    assert code == 0, "".join(up.output)
    assert "maple stopped" in "".join(up.output)
    assert not any(_alive(pid) for pid in pids), "a process outlived maple up"
    assert _processes_of(tmp_path) == [], "a process outlived maple up"

    second = Up(env)
    try:
        second.wait_for("Ctrl-C stops everything")
        kept = maple("query", "SELECT n FROM resume_check", "--format", "TSV", env=env)
        assert kept.stdout.strip() == "7", kept.stderr
        pids = _children(env)
    finally:
        code = second.stop(signal.SIGTERM)
    assert code == 0
    assert not any(_alive(pid) for pid in pids)
    assert _processes_of(tmp_path) == []
