"""The OTLP ingest over TLS and mutual TLS: the official SDK exporters land exactly; a client without a valid
certificate is refused at the handshake; a certificate rotated on disk is served without a restart.

Certificates are made at test time (tests/helpers/certs.py); the ingest writes to the session's broker.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.resources import Resource

from maple.topics import RAW_LOGS, RAW_TRACES
from tests.helpers.certs import PKI, Pair
from tests.helpers.ingest import IngestProcess, end_offsets, numbered_log_request, read_since

PROTOBUF = {"Content-Type": "application/x-protobuf"}
TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI.create(tmp_path_factory.mktemp("pki"))


def client_context(pki: PKI, client: Pair | None = None, *, ca: Path | None = None,
                   max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca or pki.server_ca.cert))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    if max_version is not None:
        context.maximum_version = max_version
    return context


def tls_env(server: Pair, client_ca: Path | None = None, **extra: str) -> dict[str, str]:
    env = {"MAPLE_INGEST_TLS_CERT_FILE": str(server.cert), "MAPLE_INGEST_TLS_KEY_FILE": str(server.key), **extra}
    if client_ca is not None:
        env["MAPLE_INGEST_TLS_CLIENT_CA_FILE"] = str(client_ca)
    return env


@pytest.fixture(scope="module")
def tls_ingest(kafka_bootstrap: str, pki: PKI) -> Iterator[IngestProcess]:
    process = IngestProcess(kafka_bootstrap, tls_env(pki.server), client_context(pki)).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def mtls_ingest(kafka_bootstrap: str, pki: PKI) -> Iterator[IngestProcess]:
    env = tls_env(pki.server, pki.client_ca.cert, MAPLE_INGEST_TLS_MIN_VERSION="1.3")
    process = IngestProcess(kafka_bootstrap, env, client_context(pki, pki.client)).start()
    yield process
    process.stop()


def _resource() -> Resource:
    return Resource.create({"service.name": f"svc-{uuid.uuid4().hex[:8]}"})


def grpc_credentials(pki: PKI, client: Pair | None = None, ca: Path | None = None) -> grpc.ChannelCredentials:
    root = (ca or pki.server_ca.cert).read_bytes()
    if client is None:
        return grpc.ssl_channel_credentials(root)
    chain, key = client.pem()
    return grpc.ssl_channel_credentials(root, private_key=key, certificate_chain=chain)


def _send_traces_with_sdk(ingest: IngestProcess, protocol: str, pki: PKI, client: Pair | None) -> None:
    """Spans through the SDK's own exporter over TLS; what Kafka holds must be exactly what the SDK encoded."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    if protocol == "http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=f"{ingest.http}/v1/traces", certificate_file=str(pki.server_ca.cert),
                                    client_certificate_file=str(client.cert) if client else None,
                                    client_key_file=str(client.key) if client else None, timeout=10)
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter

        exporter = GrpcSpanExporter(endpoint=ingest.grpc, credentials=grpc_credentials(pki, client), timeout=10)
    start = end_offsets(ingest.bootstrap, RAW_TRACES.name)
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=_resource())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("maple.tests.tls")
    with tracer.start_as_current_span("checkout", attributes={"tls": True}), \
            tracer.start_as_current_span("charge-card"):
        pass
    spans = memory.get_finished_spans()
    assert exporter.export(spans).name == "SUCCESS"
    provider.shutdown()
    exporter.shutdown()
    records = read_since(ingest.bootstrap, RAW_TRACES.name, start)
    assert len(records) == 1
    assert trace_service_pb2.ExportTraceServiceRequest.FromString(records[0].value()) == encode_spans(spans)


def _send_logs_with_sdk(ingest: IngestProcess, protocol: str, pki: PKI, client: Pair | None) -> None:
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    if protocol == "http":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        exporter = OTLPLogExporter(endpoint=f"{ingest.http}/v1/logs", certificate_file=str(pki.server_ca.cert),
                                   client_certificate_file=str(client.cert) if client else None,
                                   client_key_file=str(client.key) if client else None, timeout=10)
    else:
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter

        exporter = GrpcLogExporter(endpoint=ingest.grpc, credentials=grpc_credentials(pki, client), timeout=10)
    start = end_offsets(ingest.bootstrap, RAW_LOGS.name)
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=_resource())
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = provider.get_logger("maple.tests.tls")
    for i in range(3):
        logger.emit(body=f"over tls {i}", attributes={"i": i})
    logs = memory.get_finished_logs()
    assert exporter.export(logs).name == "SUCCESS"
    provider.shutdown()
    exporter.shutdown()
    records = read_since(ingest.bootstrap, RAW_LOGS.name, start)
    assert len(records) == 1
    assert logs_service_pb2.ExportLogsServiceRequest.FromString(records[0].value()) == encode_logs(logs)


# -- TLS and mutual TLS: the SDK exporters land exactly -----------------------------------------------


@pytest.fixture(autouse=True)
def _exporter_ca_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace a session's CA file (requests issue 3829), so
    where they are set the SDK's HTTP exporter ignores its certificate_file. Clients here use their own CA."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_sdk_exporters_over_tls_land_exactly(tls_ingest: IngestProcess, pki: PKI, protocol: str) -> None:
    _send_traces_with_sdk(tls_ingest, protocol, pki, None)
    _send_logs_with_sdk(tls_ingest, protocol, pki, None)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_sdk_exporters_over_mutual_tls_land_exactly(mtls_ingest: IngestProcess, pki: PKI, protocol: str) -> None:
    _send_traces_with_sdk(mtls_ingest, protocol, pki, pki.client)
    _send_logs_with_sdk(mtls_ingest, protocol, pki, pki.client)


def test_tls_port_refuses_plaintext(tls_ingest: IngestProcess) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", tls_ingest.http_port, timeout=10)
    try:
        connection.request("POST", "/v1/logs", body=b"", headers=PROTOBUF)
        response = connection.getresponse()
        assert response.status == 400  # aiohttp answers a plaintext request on a TLS port with a bare 400
        assert b"ExportLogs" not in response.read()
    except (ConnectionResetError, http.client.RemoteDisconnected):
        pass  # or just closes: either way no request is served
    finally:
        connection.close()
    channel = grpc.insecure_channel(tls_ingest.grpc)
    with pytest.raises(grpc.RpcError) as refused:
        channel.unary_unary(TRACE_EXPORT)(b"", timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    channel.close()


# -- refused at the handshake -------------------------------------------------------------------------


def _https_post(port: int, context: ssl.SSLContext, body: bytes | None = None) -> int:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        connection.request("POST", "/v1/logs", headers=PROTOBUF,
                           body=body if body is not None else numbered_log_request("tls", 0, 1))
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.parametrize("client", [None, "expired_client", "foreign_client"])
def test_mutual_tls_refuses_clients_without_a_valid_certificate(mtls_ingest: IngestProcess, pki: PKI,
                                                                client: str | None) -> None:
    pair = getattr(pki, client) if client else None
    start = end_offsets(mtls_ingest.bootstrap, RAW_LOGS.name)
    # HTTP: the server ends the connection in its handshake, so the request gets no HTTP answer at all. (In TLS
    # 1.3 the client's side of the handshake is over before the server checks its certificate, so the client
    # learns of it at its first read: as the server's alert, or as the connection closing.)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _https_post(mtls_ingest.http_port, client_context(pki, pair))
    # gRPC: the channel never gets to send the call.
    channel = grpc.secure_channel(mtls_ingest.grpc, grpc_credentials(pki, pair))
    with pytest.raises(grpc.RpcError) as refused:
        channel.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export")(
            numbered_log_request("tls", 1, 1), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    channel.close()
    # Nothing from the refused clients reached Kafka; the valid client's request does.
    assert end_offsets(mtls_ingest.bootstrap, RAW_LOGS.name) == start
    assert _https_post(mtls_ingest.http_port, client_context(pki, pki.client)) == 200
    assert sum(end_offsets(mtls_ingest.bootstrap, RAW_LOGS.name).values()) == sum(start.values()) + 1


def test_client_refuses_a_server_from_another_ca(tls_ingest: IngestProcess, pki: PKI) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        _https_post(tls_ingest.http_port, client_context(pki, ca=pki.other_ca.cert))


def test_minimum_version_refuses_older_tls_at_the_handshake(mtls_ingest: IngestProcess, pki: PKI) -> None:
    """ingest_tls.min_version 1.3: a TLS 1.2 client is refused on the HTTP port during the handshake."""
    # The handshake itself fails (the server's protocol_version alert, or its closing the connection).
    with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL|UNEXPECTED_EOF"):
        _served_certificate(mtls_ingest.http_port, client_context(pki, pki.client, max_version=ssl.TLSVersion.TLSv1_2))
    context = client_context(pki, pki.client)
    connection = http.client.HTTPSConnection("127.0.0.1", mtls_ingest.http_port, context=context, timeout=10)
    connection.request("GET", "/readyz")
    assert connection.getresponse().status == 200
    assert connection.sock.version() == "TLSv1.3"  # type: ignore[union-attr]
    connection.close()


# -- certificates rotated on disk ---------------------------------------------------------------------


def _served_certificate(port: int, context: ssl.SSLContext) -> bytes:
    """The certificate a new connection is given (DER)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        return sock.getpeercert(binary_form=True) or b""


@pytest.mark.parametrize("trigger", ["sighup", "interval"])
def test_rotated_certificate_is_served_without_a_restart(kafka_bootstrap: str, pki: PKI, tmp_path: Path,
                                                         trigger: str) -> None:
    """The server certificate and the client CA are replaced on disk by ones from other CAs. New connections
    get the new certificate and are checked against the new client CA; connections opened before keep
    working; the process is the same one throughout."""
    live = Pair(tmp_path / "server.pem", tmp_path / "server-key.pem")
    pki.server.copy_to(live)
    client_ca = tmp_path / "clients.pem"
    shutil.copy(pki.client_ca.cert, client_ca)
    extra = {"MAPLE_INGEST_TLS_RELOAD_INTERVAL_S": "0.3"} if trigger == "interval" else {}
    before = client_context(pki, pki.client)
    ingest = IngestProcess(kafka_bootstrap, tls_env(live, client_ca, **extra), before).start()
    try:
        pid = ingest.proc.pid  # type: ignore[union-attr]
        kept = http.client.HTTPSConnection("127.0.0.1", ingest.http_port, context=before, timeout=10)
        kept.request("GET", "/readyz")
        assert kept.getresponse().read() == b"ready\n"
        kept_channel = grpc.secure_channel(ingest.grpc, grpc_credentials(pki, pki.client))
        kept_call = kept_channel.unary_unary(TRACE_EXPORT)
        assert kept_call(trace_service_pb2.ExportTraceServiceRequest().SerializeToString(), timeout=10) is not None

        # Rotate: a server certificate from another CA, and clients now need certificates from that CA too.
        rotated_server = pki.other_ca.issue("server-rotated", "127.0.0.1", "localhost")
        rotated_client = pki.other_ca.issue("client-rotated", "maple-test-client")
        rotated_server.copy_to(live)
        shutil.copy(pki.other_ca.cert, client_ca)
        if trigger == "sighup":
            os.kill(pid, signal.SIGHUP)
        after = client_context(pki, rotated_client, ca=pki.other_ca.cert)
        deadline = time.monotonic() + 30
        while True:
            try:
                served = _served_certificate(ingest.http_port, after)
                break
            except ssl.SSLError:
                assert time.monotonic() < deadline, "the rotated certificate was never served:\n" + ingest.output()
                time.sleep(0.2)
        assert served == ssl.PEM_cert_to_DER_cert(rotated_server.cert.read_text())
        assert _https_post(ingest.http_port, after) == 200
        # The old certificate and old client certificates are no longer accepted by new connections...
        with pytest.raises(ssl.SSLError):
            _https_post(ingest.http_port, before)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _https_post(ingest.http_port, client_context(pki, pki.client, ca=pki.other_ca.cert))
        # ...while the connections made before the rotation still work.
        kept.request("GET", "/readyz")
        assert kept.getresponse().read() == b"ready\n"
        assert kept_call(trace_service_pb2.ExportTraceServiceRequest().SerializeToString(), timeout=10) is not None
        # gRPC: a new channel gets the rotated certificate and client CA.
        new_channel = grpc.secure_channel(ingest.grpc, grpc_credentials(pki, rotated_client, pki.other_ca.cert))
        assert new_channel.unary_unary(TRACE_EXPORT)(
            trace_service_pb2.ExportTraceServiceRequest().SerializeToString(), timeout=10) is not None
        stale = grpc.secure_channel(ingest.grpc, grpc_credentials(pki, pki.client))
        with pytest.raises(grpc.RpcError):
            stale.unary_unary(TRACE_EXPORT)(b"", timeout=10)
        for channel in (kept_channel, new_channel, stale):
            channel.close()
        kept.close()
        assert ingest.alive and ingest.proc.pid == pid  # type: ignore[union-attr]
        assert "reloaded" in ingest.output(200)
    finally:
        ingest.stop()


def test_a_broken_rotation_keeps_the_served_certificate(kafka_bootstrap: str, pki: PKI, tmp_path: Path) -> None:
    """A key that does not match the new certificate (a rotation caught half-way) is not loaded: the ingest
    says why and goes on serving the previous certificate, then takes the pair once it matches."""
    live = Pair(tmp_path / "server.pem", tmp_path / "server-key.pem")
    pki.server.copy_to(live)
    context = client_context(pki)
    ingest = IngestProcess(kafka_bootstrap, tls_env(live), context).start()
    try:
        rotated = pki.server_ca.issue("server-next", "127.0.0.1")
        live.cert.write_bytes(rotated.cert.read_bytes())  # the certificate first, the key not yet
        os.kill(ingest.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]
        deadline = time.monotonic() + 20
        while "new files not loaded" not in ingest.output(200):
            assert time.monotonic() < deadline, ingest.output()
            time.sleep(0.2)
        assert _served_certificate(ingest.http_port, context) == ssl.PEM_cert_to_DER_cert(pki.server.cert.read_text())
        live.key.write_bytes(rotated.key.read_bytes())
        os.kill(ingest.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]
        while _served_certificate(ingest.http_port, context) != ssl.PEM_cert_to_DER_cert(rotated.cert.read_text()):
            assert time.monotonic() < deadline + 10, ingest.output()
            time.sleep(0.2)
        assert _https_post(ingest.http_port, context) == 200
    finally:
        ingest.stop()
