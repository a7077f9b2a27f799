"""OTLP/HTTP receiver (:4318): POST /v1/traces, /v1/logs, /v1/metrics, plus /healthz, /readyz, /metrics.

Responses use the request's content type (protobuf or JSON), errors carry a google.rpc.Status body,
and retryable refusals (429, 503) carry Retry-After, as the OTLP specification asks.
"""

from __future__ import annotations

import logging

from aiohttp import web
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2

from ingest.otlp import SIGNALS, Signal
from ingest.service import IngestService, Refusal, refusal_for
from maple.compression import PayloadTooLarge, UnsupportedEncoding, inflate
from maple.metrics import exposition

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
ENCODINGS = {PROTOBUF: "protobuf", "application/protobuf": "protobuf", JSON: "json"}


def _status_response(content_type: str, http_status: int, grpc_code: int, message: str,
                     retry_after: int | None = None) -> web.Response:
    status = status_pb2.Status(code=grpc_code, message=message)
    headers = {"Retry-After": str(retry_after)} if retry_after else {}
    if content_type == JSON:
        return web.Response(status=http_status, body=json_format.MessageToJson(status, indent=None).encode(),
                            content_type=JSON, headers=headers)
    return web.Response(status=http_status, body=status.SerializeToString(), content_type=PROTOBUF, headers=headers)


def build_app(service: IngestService, retry_after_s: int) -> web.Application:
    metrics = service.metrics

    def refuse(signal: Signal, content_type: str, refusal: Refusal) -> web.Response:
        metrics.requests.labels(signal.name, "http", "unavailable" if refusal.retry else "rejected").inc()
        metrics.rejections.labels(refusal.reason).inc()
        return _status_response(content_type, refusal.http_status, refusal.grpc_code, refusal.message,
                                retry_after_s if refusal.retry else None)

    async def export(request: web.Request) -> web.Response:
        signal = SIGNALS[request.match_info["signal"]]
        encoding = ENCODINGS.get(request.content_type)
        reply_type = JSON if encoding == "json" else PROTOBUF
        held = 0
        try:
            if encoding is None:
                raise UnsupportedEncoding(request.content_type)  # reported as 415 below
            tenant = service.tenant(request.headers.get(service.api_key_header))
            declared = request.content_length
            if declared is not None and declared > service.max_request_bytes:
                raise PayloadTooLarge(service.max_request_bytes)
            service.budget.acquire(declared or 0)
            held = declared or 0
            try:
                raw = await request.read()
            except web.HTTPRequestEntityTooLarge as exc:
                raise PayloadTooLarge(service.max_request_bytes) from exc
            if len(raw) > held:  # a chunked body declares no length: count it now
                service.budget.acquire(len(raw) - held)
                held = len(raw)
            encoding_header = request.headers.get("Content-Encoding")
            if len(raw) <= service.decoder.inline_bytes:
                body = inflate(raw, encoding_header, service.max_request_bytes)
            else:  # a big body inflates in a thread (zlib and lz4 release the GIL), never on the event loop
                body = await service.decoder.off_loop(inflate, raw, encoding_header, service.max_request_bytes)
            if body is not raw:
                service.budget.acquire(len(body))
                held += len(body)
            outcome = await service.export(signal, body, encoding, tenant, "http")
        except Exception as exc:
            refusal = refusal_for(exc)
            if isinstance(exc, UnsupportedEncoding) and encoding is None:
                refusal = Refusal("unsupported_media_type", 415, code_pb2.INVALID_ARGUMENT, False,
                                  f"unsupported Content-Type {request.content_type!r}; use {PROTOBUF} or {JSON}")
            if refusal is None:
                log.exception("unexpected error handling an OTLP/HTTP %s request", signal.name)
                refusal = Refusal("internal", 503, code_pb2.UNAVAILABLE, True, f"internal error: {exc}")
            return refuse(signal, reply_type, refusal)
        finally:
            service.budget.release(held)
        metrics.requests.labels(signal.name, "http", "ok").inc()
        response = signal.response_message(outcome.rejected, outcome.message)
        if reply_type == JSON:
            return web.Response(body=json_format.MessageToJson(response, indent=None).encode(), content_type=JSON)
        return web.Response(body=response.SerializeToString(), content_type=PROTOBUF)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if service.writer.ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="Kafka is not reachable\n")

    async def prometheus(_: web.Request) -> web.Response:
        body, content_type = exposition(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    # The body limit is enforced in export(); aiohttp's own check is the backstop for chunked bodies.
    app = web.Application(client_max_size=service.max_request_bytes)
    app.router.add_post("/v1/{signal:traces|logs|metrics}", export)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", prometheus)
    return app
