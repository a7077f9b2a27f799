"""`maple bench chaos`: kill the pipeline's parts again and again under load, then count what was lost.

Everything runs in the bench's own sandbox (a data dir of its own under data_dir, free ports): a local
Kafka (1 or 3 brokers), the embedded ClickHouse host, an ingest, workers and sinks, all as `maple`
processes, so the bench may kill any of them without touching anyone else's.

The verifying client behaves like OTLP exporters: `--clients` threads each send OTLP/HTTP log requests of
`--per-request` records; every record carries a unique id (`chaos.id` = request.record). A request is
retried, with the same body, on anything but 200 (503, 429, a reset connection, a timeout), with backoff,
until it is acknowledged. Meanwhile a fault every `--interval` seconds, round robin over `--faults`:

* worker, sink, ingest: kill -9 one process, start a new one at once;
* broker: kill -9 one broker (of 3), or the only one, for `--broker-down` seconds, then start it again;
* clickhouse-pause: SIGSTOP the ClickHouse host for `--pause` seconds, then SIGCONT;
* clickhouse-kill: kill -9 the ClickHouse host, start it again on the same data.

At the end the client stops, the pipeline drains, and ClickHouse is asked for every id: **lost** are
acknowledged records that are not there, **duplicated** are ids stored more than once. A duplicate can
only be legitimate in one way (docs/ingest.md): a request whose acknowledgement was lost (a timeout, a
reset connection) and which the client therefore sent again: those are reported apart.
"""

from __future__ import annotations

import http.client
import itertools
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from apps import localkafka, maple_command
from maple import clickhouse
from maple import kafka as kafka_clients
from maple.net import free_port, http_ok
from maple.settings import Settings, load_settings

FAULTS = ("worker", "sink", "ingest", "broker", "clickhouse-pause", "clickhouse-kill")
ID_KEY = "chaos.id"


def _consecutive_free_ports(count: int) -> int:
    while True:
        first = free_port()
        if all(_free(p) for p in range(first, first + count)):
            return first


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class Process:
    """One `maple` child; killed with -9 and started again by the bench."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.command, self.env = name, command, env
        self.log = logs / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Process:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(maple_command(*self.command), env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.starts += 1
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Ledger:
    """What the verifying client knows: acknowledged requests, and which were sent more than once after an
    ambiguous failure (the acknowledgement may have been lost: a copy may exist)."""

    acked: dict[int, int] = field(default_factory=dict)  # request -> records
    ambiguous_retries: set[int] = field(default_factory=set)
    attempts: int = 0
    answers: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, answer: str) -> None:
        with self.lock:
            self.answers[answer] = self.answers.get(answer, 0) + 1
            self.attempts += 1


def _request(service: str, seq: int, records: int) -> bytes:
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    rl.resource.attributes.add(key="service.name", value={"string_value": service})
    sl = rl.scope_logs.add()
    now = time.time_ns()
    for i in range(records):
        record = sl.log_records.add(time_unix_nano=now + i, severity_number=9)
        record.body.string_value = f"chaos request {seq} record {i}"
        record.attributes.add(key=ID_KEY, value={"string_value": f"{seq}.{i}"})
    return request.SerializeToString()


class Client(threading.Thread):
    """Sends numbered requests at `rate` per second and retries each until it is acknowledged."""

    def __init__(self, port: int, service: str, sequence: Any, per_request: int, rate: float, ledger: Ledger,
                 stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.service, self.sequence = port, service, sequence
        self.per_request, self.rate, self.ledger, self.halt = per_request, rate, ledger, stop

    def run(self) -> None:
        while not self.halt.is_set():
            seq = next(self.sequence)
            body = _request(self.service, seq, self.per_request)
            backoff, ambiguous = 0.2, False
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                outcome = self._post(body)
                self.ledger.note(outcome)
                if outcome == "200":
                    with self.ledger.lock:
                        self.ledger.acked[seq] = self.per_request
                        if ambiguous:
                            self.ledger.ambiguous_retries.add(seq)
                    break
                # No answer (timeout, reset) or 503 after Kafka did not acknowledge in time: the request may
                # be stored already (docs/ingest.md); a retry can make a copy.
                ambiguous = ambiguous or outcome in ("timeout", "reset", "503")
                time.sleep(backoff * random.uniform(0.5, 1.5))
                backoff = min(backoff * 2, 5.0)
            time.sleep(1.0 / self.rate)

    def _post(self, body: bytes) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            conn.request("POST", "/v1/logs", body=body, headers={"Content-Type": "application/x-protobuf"})
            response = conn.getresponse()
            response.read()
            return str(response.status)
        except TimeoutError:
            return "timeout"
        except ConnectionRefusedError:
            return "refused"  # nothing listened: the request was never received
        except OSError:
            return "reset"
        finally:
            conn.close()


class Chaos:
    """The sandbox: its Kafka, ClickHouse host and stages."""

    def __init__(self, settings: Settings, root: Path, brokers: int, workers: int, sinks: int,
                 say: Callable[[str], None]) -> None:
        self.say = say
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        port = _consecutive_free_ports(brokers)
        controller = _consecutive_free_ports(brokers)
        self.tag = uuid.uuid4().hex[:8]
        self.database = f"chaos_{self.tag}"
        base = {"MAPLE_DATA_DIR": str(root), "MAPLE_KAFKA_PORT": str(port),
                "MAPLE_KAFKA_CONTROLLER_PORT": str(controller), "MAPLE_KAFKA_BROKERS": str(brokers),
                "MAPLE_KAFKA_HEAP": "384m", "MAPLE_CACHE_DIR": str(settings.cache_path),
                "MAPLE_CLICKHOUSE_EMBEDDED_PORT": str(free_port())}
        self.settings = load_settings(environ=base)
        self.bootstrap = localkafka.LocalCluster(self.settings).bootstrap
        self.http_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAPLE_")}
        self.env = {**env, **base, "MAPLE_KAFKA_BOOTSTRAP": self.bootstrap,
                    "MAPLE_KAFKA_REPLICATION_FACTOR": str(min(3, brokers)),
                    "MAPLE_CLICKHOUSE_DATABASE": self.database, "MAPLE_WORKER_GROUP": f"chaos-worker-{self.tag}",
                    "MAPLE_SINK_GROUP": f"chaos-sink-{self.tag}", "MAPLE_SINK_METRICS_PORT": "0",
                    "MAPLE_WORKER_LAG_INTERVAL_S": "1", "MAPLE_WORKER_SIGNALS": "logs",
                    "MAPLE_INGEST_HTTP_PORT": str(self.http_port), "MAPLE_INGEST_GRPC_PORT": str(free_port()),
                    "MAPLE_INGEST_KAFKA_TIMEOUT_S": "5"}
        self.host = Process("clickhouse", ["clickhouse", "serve"], self.env, self.logs)
        self.ingest = Process("ingest", ["ingest"], self.env, self.logs)
        self.workers = [Process(f"worker-{i}", ["worker"], {**self.env, "MAPLE_WORKER_METRICS_PORT": str(free_port())},
                                self.logs) for i in range(workers)]
        self.sinks = [Process(f"sink-{i}", ["sink"], self.env, self.logs) for i in range(sinks)]
        self.faults: dict[str, int] = {}

    @property
    def processes(self) -> list[Process]:
        return [self.host, self.ingest, *self.workers, *self.sinks]

    def start(self) -> None:
        self.say(f"sandbox {self.root}: Kafka {self.bootstrap}, ClickHouse database {self.database}")
        localkafka.start(self.settings, say=lambda _m: None)
        kafka_clients.create_topics(load_settings(environ={k: v for k, v in self.env.items()
                                                           if k.startswith("MAPLE_")}))
        self.host.start()
        self._wait(lambda: clickhouse.running_host(self.settings) is not None, "the ClickHouse host")
        subprocess.run(maple_command("schema", "apply"), env=self.env, check=True, stdout=subprocess.DEVNULL)
        self.ingest.start()
        self._wait(lambda: http_ok(f"http://127.0.0.1:{self.http_port}/readyz"), "the ingest")
        for process in self.workers + self.sinks:
            process.start()

    def _wait(self, ready: Callable[[], bool], what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not come up; logs in {self.logs}")
            time.sleep(0.3)

    def fault(self, kind: str, broker_down_s: float, pause_s: float) -> None:
        self.faults[kind] = self.faults.get(kind, 0) + 1
        if kind in ("worker", "sink"):
            victim = random.choice(self.workers if kind == "worker" else self.sinks)
            victim.kill()
            victim.start()
        elif kind == "ingest":
            self.ingest.kill()
            self.ingest.start()
        elif kind == "broker":
            nodes = [n.node_id for n in localkafka.LocalCluster(self.settings).nodes]
            killed = localkafka.kill(self.settings, [random.choice(nodes)] if len(nodes) > 1 else None)
            time.sleep(broker_down_s)
            localkafka.start(self.settings, say=lambda _m: None)
            self.say(f"  broker {killed} killed and back")
        elif kind == "clickhouse-pause":
            assert self.host.proc is not None
            self.host.proc.send_signal(signal.SIGSTOP)
            time.sleep(pause_s)
            self.host.proc.send_signal(signal.SIGCONT)
        elif kind == "clickhouse-kill":
            self.host.kill()
            self.host.start()
        else:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULTS)}")

    def stop(self) -> None:
        for process in [*self.sinks, *self.workers, self.ingest, self.host]:
            process.stop()
        localkafka.stop(self.settings, say=lambda _m: None)


def _stored(chaos: Chaos, service: str) -> dict[str, int]:
    client = clickhouse.connect(chaos.settings, database=chaos.database, in_process=False)
    try:
        rows = client.query("SELECT LogAttributes[{k:String}] AS id, count() FROM otel_logs "
                            "WHERE ServiceName = {s:String} GROUP BY id",
                            parameters={"k": ID_KEY, "s": service}).result_rows
        return {str(row[0]): int(row[1]) for row in rows}
    finally:
        client.close()


def run(settings: Settings, *, duration: float, interval: float, faults: tuple[str, ...], brokers: int,
        workers: int, sinks: int, clients: int, rate: float, per_request: int, broker_down_s: float,
        pause_s: float, keep: bool, say: Callable[[str], None]) -> dict[str, Any]:
    unknown = set(faults) - set(FAULTS)
    if unknown:
        raise ValueError(f"unknown fault(s) {sorted(unknown)}; known: {', '.join(FAULTS)}")
    root = settings.data_path / f"chaos-{uuid.uuid4().hex[:8]}"
    chaos = Chaos(settings, root, brokers, workers, sinks, say)
    ledger, halt = Ledger(), threading.Event()
    service = f"chaos-{chaos.tag}"
    started = time.monotonic()
    try:
        chaos.start()
        sequence = itertools.count()
        senders = [Client(chaos.http_port, service, sequence, per_request, rate, ledger, halt) for _ in range(clients)]
        for sender in senders:
            sender.start()
        say(f"{clients} clients at {rate:g} requests/s each, {per_request} records per request; a fault every "
            f"{interval:g} s for {duration:g} s: {', '.join(faults)}")
        plan = itertools.cycle(faults)
        end = time.monotonic() + duration
        while time.monotonic() + interval < end:
            time.sleep(interval)
            kind = next(plan)
            chaos.fault(kind, broker_down_s, pause_s)
            say(f"  {time.monotonic() - started:6.0f}s {kind:<16} acked so far: "
                f"{sum(ledger.acked.values()):,} records")
        time.sleep(max(0.0, end - time.monotonic()))
        halt.set()
        for sender in senders:
            sender.join(660)
        acked = {f"{seq}.{i}" for seq, n in ledger.acked.items() for i in range(n)}
        say(f"clients stopped: {len(acked):,} records acknowledged; waiting for the pipeline to drain")
        stored: dict[str, int] = {}
        deadline, last, stable = time.monotonic() + 600, -1, 0
        while time.monotonic() < deadline:
            stored = _stored(chaos, service)
            total = sum(stored.values())
            stable = stable + 1 if total == last else 0
            if acked <= stored.keys() and stable >= 5:
                break
            last = total
            time.sleep(2)
        dead = [p.name for p in chaos.processes if not p.alive]
    finally:
        halt.set()
        chaos.stop()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    lost = acked - stored.keys()
    duplicated = {i: n for i, n in stored.items() if n > 1}
    explained = {i for i in duplicated if int(i.split(".")[0]) in ledger.ambiguous_retries}
    return {
        "seconds": round(time.monotonic() - started), "brokers": brokers, "workers": workers, "sinks": sinks,
        "faults": chaos.faults, "requests_acked": len(ledger.acked), "records_acked": len(acked),
        "records_stored": len(stored), "rows": sum(stored.values()), "lost": len(lost),
        "lost_examples": sorted(lost)[:10], "duplicated": len(duplicated),
        "duplicated_after_ambiguous_retry": len(explained), "duplicated_otherwise": len(duplicated) - len(explained),
        "stored_not_acked": len(stored.keys() - acked), "client_attempts": ledger.attempts,
        "client_answers": dict(sorted(ledger.answers.items())),
        "process_starts": {p.name: p.starts for p in chaos.processes}, "dead_at_end": dead,
        "sandbox": str(root) if keep else None,
    }
