"""`maple up`: the all-in-one local run, a small supervisor over Maple's processes.

It checks every port it will listen on (apps/ports.py) before it starts anything, brings up Kafka (the
local KRaft broker unless MAPLE_KAFKA_BOOTSTRAP is set), creates Maple's topics, starts the embedded
ClickHouse host (unless MAPLE_CLICKHOUSE_URL is set), then the pipeline stages and the query API, each as a
child process. It says "maple is up" only once every part is ready: Kafka produces and consumes,
ClickHouse answers, the ingest's and the API's /readyz are 200, the worker and the sink created their ready
files (maple/ready.py). After that it prints nothing unless something happens. A child that dies is
restarted with exponential backoff and the reason is logged. SIGINT/SIGTERM stop everything in reverse
order of start; children also get SIGTERM from the kernel if the supervisor itself is killed
(PR_SET_PDEATHSIG), so no process is left behind.

Everything is logged in Maple's one format (maple/log.py), the children's lines included; only the
"maple is up" summary is printed as a table, on stdout.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from apps import localkafka, maple_command, ports
from maple import clickhouse, ready
from maple import kafka as kafka_clients
from maple.net import http_ok, port_open
from maple.settings import Settings

log = logging.getLogger("maple.up")

BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0  # a child that ran this long has its backoff reset
STOP_GRACE_S = 20.0
READY_TIMEOUT_S = 120.0  # a worker's first start creates topics and joins its group: seconds on a busy machine


class StartupError(RuntimeError):
    """`maple up` cannot start; the message says what and which setting to change."""



def die_with_parent() -> None:
    """preexec_fn: ask the kernel to SIGTERM this child when the supervisor dies, however it dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    """One supervised process, with how to (re)start it and its restart history."""

    name: str
    start: Callable[[], list[subprocess.Popen[bytes]]]
    stop: Callable[[list[subprocess.Popen[bytes]]], None] | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started_at: float = 0.0
    backoff: float = BACKOFF_START_S
    restart_at: float | None = None
    ready_file: Path | None = None  # the child creates it once ready (maple/ready.py); None: ready once started
    announce_ready: bool = False    # restarted after "maple is up": say when it is ready again

    def launch(self) -> None:
        if self.ready_file is not None:
            ready.clear(self.ready_file)
        # Keep members still alive (the other nodes of a Kafka cluster); start() brings up the rest.
        self.procs = [p for p in self.procs if p.poll() is None] + self.start()
        self.started_at = time.monotonic()

    def exited(self) -> list[tuple[int, int]]:
        return [(p.pid, code) for p in self.procs if (code := p.poll()) is not None]

    def is_ready(self) -> bool:
        alive = [p for p in self.procs if p.poll() is None]
        if not alive:
            return False
        return self.ready_file is None or ready.is_ready(self.ready_file, alive[0].pid)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def _terminate(procs: list[subprocess.Popen[bytes]], grace: float) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("pid %d did not stop within %.0fs; killing it", proc.pid, grace)
            proc.kill()
            proc.wait()


class Supervisor:
    def __init__(self, settings: Settings, config: str | None, say: Callable[[str], None],
                 show: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.config = config
        self.say = say                  # progress and events: a log line each
        self.show = show or say         # the "maple is up" summary
        self.children: list[Child] = []
        self.run_dir = settings.data_path / "run"  # ready files of the children
        self.stopping = threading.Event()
        self.env = dict(os.environ)
        if config:
            self.env["MAPLE_CONFIG"] = str(Path(config).resolve())
        self.env["MAPLE_DATA_DIR"] = str(settings.data_path)

    # -- before anything starts --------------------------------------------------------------------

    def _preflight(self) -> None:
        """Refuse to start what cannot run: a second `maple up` on this data dir, or a port in use."""
        settings = self.settings
        if settings.embedded_clickhouse and (other := clickhouse.running_host(settings)) is not None:
            raise StartupError(f"an embedded ClickHouse host (pid {other['pid']}) already serves "
                               f"{settings.data_path}; is another `maple up` running on this data dir?")
        reused: list[int] = []  # a local Kafka that already runs is used as it is
        if settings.local_kafka:
            cluster = localkafka.LocalCluster(settings)
            running = localkafka.running_nodes(cluster)
            reused = [port for n in cluster.nodes if n.node_id in running for port in (n.port, n.controller_port)]
        findings = ports.check(ports.claims(settings), reused)
        for warning in findings.warnings:
            log.warning("%s", warning)
        if findings.errors:
            for error in findings.errors:
                log.error("%s", error)
            raise StartupError(f"{len(findings.errors)} port problem(s), nothing was started")

    # -- the parts ---------------------------------------------------------------------------------

    def _maple(self, *args: str) -> list[subprocess.Popen[bytes]]:
        cmd = maple_command(*args)
        return [subprocess.Popen(cmd, env=self.env, stdin=subprocess.DEVNULL, start_new_session=True,
                                 preexec_fn=die_with_parent)]

    def _start_kafka(self) -> str:
        settings = self.settings
        if not settings.local_kafka:
            bootstrap = kafka_clients.bootstrap_servers(settings)
            kafka_clients.probe(bootstrap, timeout=settings.kafka.start_timeout_s,
                                replication_factor=settings.kafka.replication_factor)
            return f"{bootstrap} (existing cluster)"
        cluster = localkafka.LocalCluster(settings)
        running = localkafka.running_nodes(cluster)
        if len(running) == len(cluster.nodes):
            localkafka.wait_healthy(cluster, settings.kafka.start_timeout_s)
            return f"{cluster.bootstrap} (local KRaft, already running; left running on exit)"

        def start() -> list[subprocess.Popen[bytes]]:
            return localkafka.spawn(cluster, detach=True, say=self.say, preexec_fn=die_with_parent)

        child = Child("kafka", start, stop=lambda procs: _terminate(procs, 60.0))
        child.launch()
        self.children.append(child)
        localkafka.wait_healthy(cluster, settings.kafka.start_timeout_s)
        nodes = len(cluster.nodes)
        return f"{cluster.bootstrap} (local KRaft, {nodes} node{'s' if nodes > 1 else ''}, data {cluster.root})"

    def _start_clickhouse(self) -> str:
        settings = self.settings
        if not settings.embedded_clickhouse:
            client = clickhouse.connect(settings)
            version = client.server_version
            client.close()
            return f"{clickhouse.describe_engine(settings)} (ClickHouse {version})"
        child = Child("clickhouse", lambda: self._maple("clickhouse", "serve"))
        child.launch()
        self.children.append(child)
        deadline = time.monotonic() + 60
        while clickhouse.running_host(settings) is None:
            if child.exited():
                raise RuntimeError("the embedded ClickHouse host exited during start-up (see its log above)")
            if time.monotonic() > deadline:
                raise RuntimeError("the embedded ClickHouse host did not answer /ping within 60s")
            time.sleep(0.2)
        client = clickhouse.connect(settings, in_process=False)
        try:
            version = client.server_version  # a query answered by the host
        finally:
            client.close()
        host = clickhouse.running_host(settings)
        assert host is not None
        return f"{host['url']} (embedded chDB, ClickHouse {version}, data {clickhouse.embedded_data_path(settings)})"

    def _start_ingest(self) -> str:
        cfg = self.settings.ingest
        scheme = self._start_served("ingest", "the OTLP ingest", cfg.host, cfg.http_port,
                                    bool(self.settings.ingest_tls.cert_file))
        return (f"OTLP gRPC {cfg.host}:{cfg.grpc_port}, OTLP HTTP {scheme}://{cfg.host}:{cfg.http_port} "
                f"(metrics /metrics)")

    def _start_served(self, command: str, what: str, host: str, port: int, secure: bool) -> str:
        """Start `maple <command>` (an HTTP server) and wait until it answers; returns its URL scheme.

        Over TLS this process may hold no (client) certificate the server accepts, and needs none: both servers
        listen only once their start-up (Kafka, ClickHouse) is done, so the port accepting connections is enough.
        """
        child = Child(command, lambda: self._maple(command))
        child.launch()
        self.children.append(child)
        scheme = "https" if secure else "http"
        ready = f"{scheme}://{host}:{port}/readyz"
        deadline = time.monotonic() + 60
        while not (port_open(host, port) if secure else http_ok(ready)):
            if child.exited():
                raise RuntimeError(f"{what} exited during start-up (see its log above)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} was not ready within 60s ({ready})")
            time.sleep(0.2)
        return scheme

    def _start_pipeline(self) -> list[str]:
        """Apply the schema, then start the workers and the sink and wait until both are ready."""
        from maple import schema

        client = clickhouse.connect(self.settings, in_process=False)
        try:
            cfg = self.settings.clickhouse  # a cluster name makes it the ON CLUSTER schema (docs/cluster.md)
            ran = schema.apply(client, schema.Target(cfg.database, cfg.ttl_days, cfg.cluster), say=self.say)
        finally:
            client.close()
        lines = [f"  schema      ready    `{self.settings.clickhouse.database}` "
                 f"({len(ran)} migration(s) applied now)"]
        stages = []
        for name in ("worker", "sink"):
            ready_file = self.run_dir / f"{name}.ready"
            child = Child(name, partial(self._maple, name, "--ready-file", str(ready_file)), ready_file=ready_file)
            child.launch()
            self.children.append(child)
            stages.append(child)
        self._wait_ready(stages)
        for child in stages:
            what = "consuming" if child.name == "worker" else "holding its partitions"
            lines.append(f"  {child.name:<10}  ready    pid {child.procs[0].pid}, {what}")
        return lines

    def _wait_ready(self, children: list[Child]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all(child.is_ready() for child in children):
            for child in children:
                if child.exited():
                    raise StartupError(f"the {child.name} exited during start-up (see its log above)")
            if self.stopping.is_set():
                return
            if time.monotonic() > deadline:
                late = ", ".join(c.name for c in children if not c.is_ready())
                raise StartupError(f"not ready within {READY_TIMEOUT_S:.0f}s: {late} (see the log above)")
            time.sleep(0.2)

    def _traces_line(self) -> str:
        """When sampled traces become queryable: after decision_wait, which a user should know about."""
        from topologies.sampler import sampling_config

        config = sampling_config(self.settings)
        wait_s = config.decision_wait_ms / 1000
        policies = ("errors, traces of 1 s or more, 10% of the rest" if not self.settings.traces.sampling_config
                    else f"policies of {self.settings.traces.sampling_config}")
        root = ("" if config.decision_wait_after_root_ms is None else
                f", or {config.decision_wait_after_root_ms / 1000:g} s after its root span if sooner")
        return (f"  traces      sampled  {policies}; queryable about {wait_s:g} s after a trace's first span "
                f"(decision_wait){root}")

    def _start_api(self) -> str:
        cfg = self.settings.api
        scheme = self._start_served("api", "the query API", cfg.host, cfg.port, bool(self.settings.api_tls.cert_file))
        return f"{scheme}://{cfg.host}:{cfg.port}/ (API /api/v1, OpenAPI /api/openapi.json)"

    def _login_lines(self) -> list[str]:
        """How to log in: on a first start, how to create the first admin."""
        from query.store import open_store
        from query.teams import count_users, list_keys

        cfg = self.settings.api
        url = f"http://{'127.0.0.1' if cfg.host in ('0.0.0.0', '::') else cfg.host}:{cfg.port}/"
        try:
            store = open_store(self.settings)
            try:
                users = count_users(store)
                ingest_keys = [k for k in list_keys(store) if k["kind"] == "ingest"]
            finally:
                store.close()
        except Exception as exc:  # the API opened the store; say why this could not, and go on
            return [f"  log in      {url} (could not read the metadata store: {exc})"]
        if users:
            lines = [f"  log in      {url} (accounts: maple users list|create|passwd)"]
        else:
            lines = ["  log in      no account yet: create the first admin (of team 'default', which holds data sent",
                     "              without a key) and log in with it:",
                     "                maple users create you@example.com --generate-password",
                     f"              then open {url}"]
        if not ingest_keys and not self.settings.ingest.api_keys:
            lines.append("  ingest      takes data without a key (team 'default') until the first ingest key: "
                         "maple keys create --kind ingest --team <team>")
        return lines

    # -- running -----------------------------------------------------------------------------------

    def reload_certificates(self) -> None:
        """SIGHUP to `maple up`: the TLS servers it runs load rotated certificate files (docs/security.md)."""
        serving_tls = {"ingest": bool(self.settings.ingest_tls.cert_file),
                       "clickhouse": bool(self.settings.clickhouse_host_tls.cert_file),
                       "api": bool(self.settings.api_tls.cert_file)}
        for child in self.children:
            if serving_tls.get(child.name):  # without TLS, SIGHUP would end the child
                for proc in child.procs:
                    if proc.poll() is None:
                        proc.send_signal(signal.SIGHUP)

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stopping.set())
        signal.signal(signal.SIGHUP, lambda *_: self.reload_certificates())
        try:
            self._preflight()
            kafka_line = self._start_kafka()
            created = kafka_clients.create_topics(self.settings)
            if created:
                self.say(f"created topics: {', '.join(created)}")
            if self.stopping.is_set():
                return self.shutdown(0)
            clickhouse_line = self._start_clickhouse()
            ingest_line = self._start_ingest()
            pipeline_lines = self._start_pipeline()
            api_line = self._start_api()
            traces_line = self._traces_line() if "traces" in self.settings.worker.signals else None
            if self.stopping.is_set():
                return self.shutdown(0)
        except Exception as exc:
            log.error("maple up failed: %s", exc)
            return self.shutdown(1)
        lines = ["maple is up", f"  kafka       healthy  {kafka_line}", f"  clickhouse  healthy  {clickhouse_line}",
                 f"  ingest      ready    {ingest_line}"]
        lines += pipeline_lines
        lines.append(f"  api         ready    {api_line}")
        if traces_line:
            lines.append(traces_line)
        lines += self._login_lines()
        lines.append(f"  query it:   maple query \"SELECT version()\"   (data dir {self.settings.data_path})")
        lines.append("  send some:  maple send-test-data   (logs, traces and metrics)")
        lines.append("Ctrl-C stops everything.")
        self.show("\n".join(lines))
        while not self.stopping.wait(0.5):
            self._watch()
        return self.shutdown(0)

    def _watch(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restart_at = None
                    try:
                        child.launch()
                        child.announce_ready = child.ready_file is not None
                        self.say(f"{child.name} restarted")
                    except Exception as exc:
                        log.error("%s could not be restarted: %s", child.name, exc)
                        child.restart_at, child.backoff = now + child.backoff, min(child.backoff * 2, BACKOFF_MAX_S)
                continue
            if child.announce_ready and child.is_ready():
                child.announce_ready = False
                self.say(f"{child.name} ready again")
            exited = child.exited()
            if not exited:
                if now - child.started_at > STABLE_AFTER_S:
                    child.backoff = BACKOFF_START_S
                continue
            pid, code = exited[0]
            log.warning("%s (pid %d) %s; restarting in %.0fs", child.name, pid, _describe_exit(code), child.backoff)
            child.restart_at = now + child.backoff
            child.backoff = min(child.backoff * 2, BACKOFF_MAX_S)

    def shutdown(self, code: int) -> int:
        for child in reversed(self.children):
            if not any(p.poll() is None for p in child.procs):
                continue
            self.say(f"stopping {child.name}")
            (child.stop or (lambda procs: _terminate(procs, STOP_GRACE_S)))(child.procs)
        if self.children:
            self.say("maple stopped")
        return code


def run_up(settings: Settings, config: str | None) -> int:
    def show(summary: str) -> None:
        print(summary, flush=True)

    return Supervisor(settings, config, say=log.info, show=show).run()
