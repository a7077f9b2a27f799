"""Dead letters keep what a redrive needs: a worker letter its tenant (and a span batch's format), a sink
letter its rows' format (its rows hold their tenant column, stamped by the sink)."""

from __future__ import annotations

from maple.deadletter import sink_letter, worker_letter
from maple.topics import HEADER_FORMAT, HEADER_TENANT, SourcePosition


def test_a_worker_letter_keeps_the_tenant_and_a_span_batchs_format() -> None:
    raw = worker_letter(b"otlp", SourcePosition("otlp.logs.raw", 0, 7), "bad", "g", b"team-a")
    assert dict(raw.headers)[HEADER_TENANT] == b"team-a" and HEADER_FORMAT not in dict(raw.headers)
    spans = worker_letter(b"block", SourcePosition("otel.spans", 1, 9), "bad", "g", b"team-b", b"Native")
    assert dict(spans.headers)[HEADER_TENANT] == b"team-b" and dict(spans.headers)[HEADER_FORMAT] == b"Native"
    assert HEADER_TENANT not in dict(worker_letter(b"", SourcePosition("t", 0, 0), "bad", "g").headers)


def test_a_sink_letter_says_when_its_rows_are_native() -> None:
    assert dict(sink_letter(b"n", "otel_logs", "e", 27, "tok", "otel.logs/0/1-2", "Native").headers)[
        HEADER_FORMAT] == b"Native"
    assert HEADER_FORMAT not in dict(sink_letter(b"{}", "otel_logs", "e", None, "tok", "otel.logs/0/1-2").headers)
