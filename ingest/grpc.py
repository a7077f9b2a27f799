"""OTLP/gRPC receiver (:4317): the Trace, Logs and Metrics services' Export method.

Requests arrive as raw bytes (no generated deserializer), so the service parses them once and forwards
the client's bytes to Kafka untouched. Refusals use the OTLP-specified codes; RESOURCE_EXHAUSTED
carries RetryInfo, because clients retry it only then.
"""

from __future__ import annotations

import logging

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from ingest.otlp import SIGNALS, Signal
from ingest.service import IngestService, Refusal, refusal_for

log = logging.getLogger(__name__)


def _rich_status_metadata(refusal: Refusal, retry_after_s: int) -> tuple[tuple[str, bytes], ...]:
    status = status_pb2.Status(code=refusal.grpc_code, message=refusal.message)
    if refusal.retry:
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=retry_after_s)))
        status.details.append(detail)
    return (("grpc-status-details-bin", status.SerializeToString()),)


def _handler(service: IngestService, signal: Signal, retry_after_s: int) -> grpc.RpcMethodHandler:
    metrics = service.metrics

    async def export(body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        held = 0
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


# google.rpc.Code number -> grpc.StatusCode.
_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}


def build_server(service: IngestService, max_request_bytes: int, retry_after_s: int) -> grpc.aio.Server:
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", max_request_bytes),
        ("grpc.max_send_message_length", 4 * 1024 * 1024),
    ])
    handlers = [grpc.method_handlers_generic_handler(signal.grpc_service, {"Export": _handler(service, signal,
                                                                                              retry_after_s)})
                for signal in SIGNALS.values()]
    server.add_generic_rpc_handlers(handlers)
    return server
