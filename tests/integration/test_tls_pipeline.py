"""The whole pipeline with every link secured: OTel SDK -(mutual TLS)-> ingest -(SASL_SSL, SCRAM-SHA-512, client
certificate)-> Kafka -> worker (Faust/aiokafka) -> sink -(HTTPS, password and client certificate)-> ClickHouse
<-(HTTPS)- query service <-(mutual TLS)- a client, and the operations commands on the same cluster. The broker is Maple's local one with only a SASL_SSL client
port, and ClickHouse is Maple's embedded host serving only HTTPS with client certificates required, so any
client built without the security settings fails instead of passing quietly.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from apps import localkafka, maple_command
from maple import clickhouse, kafka
from maple.net import free_port
from maple.settings import Settings, load_settings
from query.store import Store
from tests.helpers.access import bearer, query_key
from tests.helpers.certs import PKI, Pair
from tests.helpers.environment import clean_environ
from tests.helpers.ingest import IngestProcess, status
from tests.helpers.pipeline import Pipeline, apply_schema, pipeline_env
from tests.helpers.stages import Stage

USER, PASSWORD = "maple-pipeline", "scram-s3cret"
CH_PASSWORD = "ch-s3cret"


@dataclass
class SecuredKafka:
    settings: Settings  # the broker's own (it is started and stopped with them)
    env: dict[str, str]  # what a Maple client needs to reach it
    pki: PKI

    @property
    def bootstrap(self) -> str:
        return self.env["MAPLE_KAFKA_BOOTSTRAP"]


@pytest.fixture(scope="module")
def secured_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafka]:
    root = tmp_path_factory.mktemp("secured-kafka")
    pki = PKI.create(root / "pki")
    secret = root / "kafka-password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    port = free_port()
    client = {"MAPLE_KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "MAPLE_KAFKA_SECURITY_CA_FILE": str(pki.server_ca.cert),
              "MAPLE_KAFKA_SECURITY_CERT_FILE": str(pki.client.cert),
              "MAPLE_KAFKA_SECURITY_KEY_FILE": str(pki.client.key),
              "MAPLE_KAFKA_SECURITY_SASL_MECHANISM": "SCRAM-SHA-512", "MAPLE_KAFKA_SECURITY_SASL_USERNAME": USER,
              "MAPLE_KAFKA_SECURITY_SASL_PASSWORD_FILE": str(secret)}
    broker = load_settings(environ={
        **client, "MAPLE_DATA_DIR": str(root / "data"), "MAPLE_KAFKA_PORT": str(port),
        "MAPLE_KAFKA_CONTROLLER_PORT": str(free_port()), "MAPLE_KAFKA_HEAP": "384m",
        "MAPLE_KAFKA_LOCAL_CERT_FILE": str(pki.server.cert), "MAPLE_KAFKA_LOCAL_KEY_FILE": str(pki.server.key),
        "MAPLE_KAFKA_LOCAL_CLIENT_CA_FILE": str(pki.client_ca.cert)})
    localkafka.start(broker)
    try:
        yield SecuredKafka(broker, {**client, "MAPLE_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"}, pki)
    finally:
        localkafka.stop(broker)


@dataclass
class SecuredClickHouse:
    host: Stage  # `maple clickhouse serve` on its own data dir, HTTPS only, client certificates required
    env: dict[str, str]  # what a Maple client needs to reach it

    @property
    def settings(self) -> Settings:
        return load_settings(environ=self.env)


@pytest.fixture(scope="module")
def secured_clickhouse(secured_kafka: SecuredKafka, tmp_path_factory: pytest.TempPathFactory
                       ) -> Iterator[SecuredClickHouse]:
    pki = secured_kafka.pki
    port = free_port()
    host = Stage(["clickhouse", "serve"], {
        "MAPLE_DATA_DIR": str(tmp_path_factory.mktemp("secured-clickhouse")),
        "MAPLE_CLICKHOUSE_EMBEDDED_PORT": str(port), "MAPLE_CLICKHOUSE_EMBEDDED_PASSWORD": CH_PASSWORD,
        "MAPLE_CLICKHOUSE_HOST_TLS_CERT_FILE": str(pki.server.cert),
        "MAPLE_CLICKHOUSE_HOST_TLS_KEY_FILE": str(pki.server.key),
        "MAPLE_CLICKHOUSE_HOST_TLS_CLIENT_CA_FILE": str(pki.client_ca.cert)}).start()
    probe = ssl.create_default_context(cafile=str(pki.server_ca.cert))
    probe.load_cert_chain(str(pki.client.cert), str(pki.client.key))
    deadline = time.monotonic() + 60
    while status(f"https://127.0.0.1:{port}/ping", probe) != 200:
        assert host.alive and time.monotonic() < deadline, "the HTTPS host did not start:\n" + host.output()
        time.sleep(0.2)
    env = {"MAPLE_CLICKHOUSE_URL": f"https://default:{CH_PASSWORD}@127.0.0.1:{port}/",
           "MAPLE_CLICKHOUSE_TLS_CA_FILE": str(pki.server_ca.cert),
           "MAPLE_CLICKHOUSE_TLS_CERT_FILE": str(pki.client.cert),
           "MAPLE_CLICKHOUSE_TLS_KEY_FILE": str(pki.client.key)}
    yield SecuredClickHouse(host, env)
    host.stop()


@pytest.fixture(scope="module")
def pipeline(secured_kafka: SecuredKafka, secured_clickhouse: SecuredClickHouse,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    pki = secured_kafka.pki
    sampling = tmp_path_factory.mktemp("sampling") / "sampling.yaml"
    sampling.write_text("tail_sampling:\n  decision_wait: 2s\n  policies:\n"
                        "    - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}\n")
    env, database = pipeline_env(secured_kafka.bootstrap, secured_clickhouse.settings, uuid.uuid4().hex[:8])
    env.update(secured_kafka.env)
    env.update(secured_clickhouse.env)
    env.update({"MAPLE_TRACES_SAMPLING_CONFIG": str(sampling), "MAPLE_TRACES_TICK_INTERVAL_S": "0.5",
                "MAPLE_INGEST_TLS_CERT_FILE": str(pki.server.cert), "MAPLE_INGEST_TLS_KEY_FILE": str(pki.server.key),
                "MAPLE_INGEST_TLS_CLIENT_CA_FILE": str(pki.client_ca.cert)})
    apply_schema(env)
    readiness = ssl.create_default_context(cafile=str(pki.server_ca.cert))
    readiness.load_cert_chain(str(pki.client.cert), str(pki.client.key))
    ingest = IngestProcess(secured_kafka.bootstrap, env, readiness).start()
    worker, sink = Stage(["worker"], env).start(), Stage(["sink"], env).start()
    yield Pipeline(secured_kafka.bootstrap, env, database, ingest, worker, sink, secured_clickhouse.settings)
    for stage in (ingest, worker, sink):
        stage.stop()
    for stage in (ingest, worker, sink, secured_clickhouse.host):
        logged = stage.log.read_text(errors="replace")
        assert PASSWORD not in logged and CH_PASSWORD not in logged, f"a password was logged by {stage.command}"


def test_the_broker_refuses_plaintext_and_wrong_credentials(secured_kafka: SecuredKafka, tmp_path: Path) -> None:
    settings = load_settings(environ=secured_kafka.env)
    kafka.probe(kafka.bootstrap_servers(settings), timeout=30)  # the configured client gets through
    with pytest.raises(RuntimeError, match="not reachable|did not acknowledge"):
        kafka.probe(kafka.Bootstrap(secured_kafka.bootstrap), timeout=5)  # a client without the settings
    no_certificate = {k: v for k, v in secured_kafka.env.items() if "_CERT_FILE" not in k and "_KEY_FILE" not in k}
    with pytest.raises(RuntimeError):  # the broker requires client certificates on its SASL_SSL port too
        kafka.probe(kafka.bootstrap_servers(load_settings(environ=no_certificate)), timeout=10)
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password")
    settings = load_settings(environ={**secured_kafka.env, "MAPLE_KAFKA_SECURITY_SASL_PASSWORD_FILE": str(wrong)})
    with pytest.raises(RuntimeError, match="[Aa]uthentication|not reachable"):
        kafka.probe(kafka.bootstrap_servers(settings), timeout=10)


def test_logs_and_sampled_traces_land_exactly_over_secured_links(pipeline: Pipeline, secured_kafka: SecuredKafka,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import Status, StatusCode

    # requests lets these replace the exporter's own CA file (requests issue 3829).
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    pki = secured_kafka.pki
    tls = {"certificate_file": str(pki.server_ca.cert), "client_certificate_file": str(pki.client.cert),
           "client_key_file": str(pki.client.key)}
    service = f"svc-{uuid.uuid4().hex[:10]}"
    resource = Resource.create({"service.name": service})

    logs = LoggerProvider(resource=resource)
    logs.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(
        endpoint=f"{pipeline.ingest.http}/v1/logs", **tls)))
    logger = logs.get_logger("maple.tests.tls")
    for i in range(25):
        logger.emit(body=f"secured line {i}", attributes={"i": i})
    assert logs.force_flush(10_000)
    logs.shutdown()

    traces = TracerProvider(resource=resource)
    traces.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{pipeline.ingest.http}/v1/traces",
                                                                  **tls)))
    tracer = traces.get_tracer("maple.tests.tls")
    with tracer.start_as_current_span("failed-order") as root:
        root.set_status(Status(StatusCode.ERROR, "out of stock"))
        for step in range(3):
            with tracer.start_as_current_span(f"step-{step}"):
                pass
    error_trace = f"{root.get_span_context().trace_id:032x}"
    with tracer.start_as_current_span("fine-order"):  # not sampled: no error
        pass
    assert traces.force_flush(10_000)
    traces.shutdown()

    pipeline.wait_for(f"SELECT count(), uniqExact(LogAttributes['i']) FROM otel_logs WHERE ServiceName = '{service}'",
                      [(25, 25)], timeout=120)
    pipeline.wait_for(f"SELECT TraceId, count() FROM otel_traces WHERE ServiceName = '{service}' GROUP BY TraceId",
                      [(error_trace, 4)], timeout=120)


def test_operations_commands_reach_the_secured_cluster(pipeline: Pipeline) -> None:
    result = subprocess.run(maple_command("lag", "--json"), env=clean_environ(**pipeline.env),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    groups = {row["group"] for row in json.loads(result.stdout)}
    assert pipeline.env["MAPLE_SINK_GROUP"] in groups
    assert PASSWORD not in result.stdout + result.stderr
    shown = subprocess.run(maple_command("config", "show", "--format", "json"), env=clean_environ(**pipeline.env),
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and PASSWORD not in shown.stdout and CH_PASSWORD not in shown.stdout
    query = subprocess.run(maple_command("query", "SELECT count() FROM otel_logs", "--format", "TSV"),
                           env=clean_environ(**pipeline.env),
                           capture_output=True, text=True, timeout=60)
    assert query.returncode == 0, query.stderr


def test_clickhouse_https_refuses_clients_without_its_ca_or_a_certificate(secured_clickhouse: SecuredClickHouse
                                                                         ) -> None:
    client = clickhouse.connect(secured_clickhouse.settings, in_process=False)
    assert client.command("SELECT 1") == 1
    client.close()
    env = secured_clickhouse.env
    no_ca = {k: v for k, v in env.items() if k != "MAPLE_CLICKHOUSE_TLS_CA_FILE"}
    with pytest.raises(clickhouse.ClickHouseUnavailable, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        clickhouse.connect(load_settings(environ=no_ca), in_process=False)
    no_cert = {k: v for k, v in env.items() if "_TLS_CERT_FILE" not in k and "_TLS_KEY_FILE" not in k}
    with pytest.raises(clickhouse.ClickHouseUnavailable):
        clickhouse.connect(load_settings(environ=no_cert), in_process=False)
    plain = {**env, "MAPLE_CLICKHOUSE_URL": env["MAPLE_CLICKHOUSE_URL"].replace("https:", "http:")}
    plain = {k: v for k, v in plain.items() if "_TLS_" not in k}
    with pytest.raises(clickhouse.ClickHouseUnavailable):
        clickhouse.connect(load_settings(environ=plain), in_process=False)


# -- the query service over mutual TLS, reading through HTTPS ------------------------------------------


def _api_client(pki: PKI, client: Pair | None = None, ca: Path | None = None,
                headers: dict[str, str] | None = None) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(ca or pki.server_ca.cert))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    return httpx.Client(verify=context, timeout=30, headers=headers)


def test_query_api_over_mutual_tls(pipeline: Pipeline, secured_kafka: SecuredKafka, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`maple api` serves only mutual TLS (certificates rotated with SIGHUP), and reads ClickHouse over HTTPS and
    Kafka over SASL_SSL: the logs sent through the ingest come back through it."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)  # see test_logs_and_sampled_traces_land_exactly...
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    pki = secured_kafka.pki
    live = Pair(tmp_path / "api.pem", tmp_path / "api-key.pem")
    pki.server.copy_to(live)
    port = free_port()
    store = Store(f"sqlite:///{tmp_path / 'meta.db'}")  # the certificate opens the connection, a key the API
    store.migrate()
    headers = bearer(query_key(store, "default", "viewer"))
    store.close()
    api = Stage(["api"], {**pipeline.env, "MAPLE_API_PORT": str(port),
                          "MAPLE_API_METADATA_URL": f"sqlite:///{tmp_path / 'meta.db'}", "MAPLE_API_HEALTH_INTERVAL_S": "2",
                          "MAPLE_API_TLS_CERT_FILE": str(live.cert), "MAPLE_API_TLS_KEY_FILE": str(live.key),
                          "MAPLE_API_TLS_CLIENT_CA_FILE": str(pki.client_ca.cert)}).start()
    url = f"https://127.0.0.1:{port}"
    try:
        with _api_client(pki, pki.client, headers=headers) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get(f"{url}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert api.alive and time.monotonic() < deadline, "maple api never became ready:\n" + api.output()
                time.sleep(0.3)

            service = f"api-{uuid.uuid4().hex[:8]}"
            provider = LoggerProvider(resource=Resource.create({"service.name": service}))
            provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(
                endpoint=f"{pipeline.ingest.http}/v1/logs", certificate_file=str(pki.server_ca.cert),
                client_certificate_file=str(pki.client.cert), client_key_file=str(pki.client.key))))
            logger = provider.get_logger("maple.tests.tls")
            for i in range(5):
                logger.emit(body=f"read back over tls {i}")
            provider.shutdown()
            deadline = time.monotonic() + 120
            while True:
                found = client.get(f"{url}/api/v1/logs/search", params={"service": service, "from": "now-1d"})
                assert found.status_code == 200, found.text
                if len(found.json()["rows"]) == 5:
                    break
                assert time.monotonic() < deadline, found.json()
                time.sleep(1)
            assert sorted(r["body"] for r in found.json()["rows"]) == [f"read back over tls {i}" for i in range(5)]
            health = client.get(f"{url}/api/v1/health").json()
            deadline = time.monotonic() + 30
            while health["status"] == "starting" and time.monotonic() < deadline:
                time.sleep(1)
                health = client.get(f"{url}/api/v1/health").json()
            assert health["kafka"]["ok"] and health["clickhouse"]["ok"], health

        with _api_client(pki) as no_certificate, pytest.raises((httpx.ConnectError, httpx.ReadError,
                                                                 httpx.RemoteProtocolError)):
            no_certificate.get(f"{url}/readyz")
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)

        # A rotated certificate is served after SIGHUP, by the same process.
        rotated = pki.other_ca.issue("api-rotated", "127.0.0.1")
        rotated.copy_to(live)
        os.kill(api.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while True:
            try:
                with _api_client(pki, pki.client, ca=pki.other_ca.cert) as after:
                    assert after.get(f"{url}/readyz").status_code == 200
                break
            except httpx.HTTPError:
                assert api.alive and time.monotonic() < deadline, "not reloaded:\n" + api.output()
                time.sleep(0.3)
    finally:
        api.stop()
    assert PASSWORD not in api.output(500) and CH_PASSWORD not in api.output(500)
