"""OTLP/gRPC receiver (:4317): the Trace, Logs and Metrics services' Export method.

Requests arrive as raw bytes (no generated deserializer), so the service parses them once and forwards
the client's bytes to Kafka untouched. Refusals use the OTLP-specified codes; RESOURCE_EXHAUSTED
carries RetryInfo, because clients retry it only then.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from ingest.otlp import SIGNALS, Signal
from ingest.service import IngestService, Refusal, refusal_for
from maple import tls
from maple.tls import ServerCertificates, ServerTLS

log = logging.getLogger(__name__)


def _rich_status_metadata(refusal: Refusal, retry_after_s: int) -> tuple[tuple[str, bytes], ...]:
    status = status_pb2.Status(code=refusal.grpc_code, message=refusal.message)
    if refusal.retry:
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=retry_after_s)))
        status.details.append(detail)
    return (("grpc-status-details-bin", status.SerializeToString()),)


def _handler(service: IngestService, signal: Signal, retry_after_s: int,
             min_tls_version: str | None) -> grpc.RpcMethodHandler:
    metrics = service.metrics

    async def export(body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        held = 0
        if min_tls_version == "1.3":
            await _require_tls13(context)
        try:
            metadata = {key.lower(): value for key, value in (context.invocation_metadata() or ())
                        if isinstance(value, str)}
            tenant = service.tenant(metadata.get(service.api_key_header))
            service.budget.acquire(len(body))
            held = len(body)
            outcome = await service.export(signal, body, "protobuf", tenant, "grpc")
        except Exception as exc:
            refusal = refusal_for(exc)
            if refusal is None:
                log.exception("unexpected error handling an OTLP/gRPC %s request", signal.name)
                refusal = Refusal("internal", 503, code_pb2.UNAVAILABLE, True, f"internal error: {exc}")
            metrics.requests.labels(signal.name, "grpc", "unavailable" if refusal.retry else "rejected").inc()
            metrics.rejections.labels(refusal.reason).inc()
            await context.abort(_GRPC_CODES[refusal.grpc_code], refusal.message,
                                trailing_metadata=_rich_status_metadata(refusal, retry_after_s))
            raise  # abort() raises AbortError itself; this re-raise is only a guard
        finally:
            service.budget.release(held)
        metrics.requests.labels(signal.name, "grpc", "ok").inc()
        return signal.response_message(outcome.rejected, outcome.message).SerializeToString()

    return grpc.unary_unary_rpc_method_handler(export)


async def _require_tls13(context: grpc.aio.ServicerContext) -> None:
    """grpcio cannot raise its handshake floor above TLS 1.2, so with ingest_tls.min_version 1.3 a call on a
    connection that negotiated less is refused here, before its body is looked at (PERMISSION_DENIED: OTLP
    clients do not retry it)."""
    negotiated = b"".join(context.auth_context().get("ssl_tls_version", [])).decode()
    if not tls.version_allowed(negotiated, "1.3"):
        await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                            f"this connection negotiated {negotiated or 'no TLS'}; the ingest requires TLS 1.3 "
                            "(ingest_tls.min_version)")


def credentials(server_tls: ServerTLS) -> grpc.ServerCredentials:
    """Server credentials that follow the certificate reloads: gRPC asks the fetcher before every new
    connection's handshake, and it hands over a new configuration only after a reload."""
    served = server_tls.current

    def configuration(loaded: ServerCertificates) -> Any:
        return grpc.ssl_server_certificate_configuration([(loaded.private_key, loaded.cert_chain)],
                                                         root_certificates=loaded.client_ca)

    def fetch() -> Any:
        nonlocal served
        loaded = server_tls.current
        if loaded.generation == served.generation:
            return None  # keep the current configuration
        served = loaded
        return configuration(loaded)

    return grpc.dynamic_ssl_server_credentials(configuration(served), fetch,
                                               require_client_authentication=server_tls.mutual)


# google.rpc.Code number -> grpc.StatusCode.
_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}


def build_server(service: IngestService, max_request_bytes: int, retry_after_s: int,
                 min_tls_version: str | None = None) -> grpc.aio.Server:
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", max_request_bytes),
        ("grpc.max_send_message_length", 4 * 1024 * 1024),
    ])
    handlers = [grpc.method_handlers_generic_handler(
                    signal.grpc_service, {"Export": _handler(service, signal, retry_after_s, min_tls_version)})
                for signal in SIGNALS.values()]
    server.add_generic_rpc_handlers(handlers)
    return server
