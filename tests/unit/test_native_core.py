"""The compiled core (maple_native) against the Python processors, which define the behaviour: the same
request gives the same rows (values, order, map order, partitions, RED points) or fails on both paths.

Random requests with hostile values (duplicate keys, deep and broken JSON, NaN, huge numbers, unusual
Unicode, ids of any length, merged repeated fields) and byte-level damage. Skipped when the core is not
built (MAPLE_NATIVE=0): the Python processors then do the work alone."""

from __future__ import annotations

import random

import pytest

from maple.native import core
from tests.helpers import otlp_fuzz as fz

pytestmark = pytest.mark.skipif(core is None, reason="the compiled core is not built (MAPLE_NATIVE=0)")

MAKERS = {"logs": fz.logs_request, "traces": fz.trace_request, "metrics": fz.metrics_request}


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_random_requests_give_identical_rows(kind: str) -> None:
    rng = random.Random(f"native-{kind}")
    compared = rows = 0
    for case in range(300):
        value = MAKERS[kind](rng)
        python, native = fz.python_rows(kind, value), fz.native_rows(kind, value, core)
        assert fz.first_difference(python, native) == "", f"case {case}: {value.hex()}"
        compared += 1
        rows += 0 if isinstance(python, str) else sum(len(next(iter(c.values()), [])) for c in python.values())
    assert compared == 300 and rows > 1000  # the generator makes real rows, not only failures


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_damaged_requests_fail_or_succeed_alike(kind: str) -> None:
    rng = random.Random(f"damage-{kind}")
    failures = 0
    for case in range(400):
        value = fz.mutate(rng, MAKERS[kind](rng))
        python, native = fz.python_rows(kind, value), fz.native_rows(kind, value, core)
        assert fz.first_difference(python, native) == "", f"case {case}: {value.hex()}"
        failures += isinstance(python, str)
    assert 20 < failures < 400  # damage both breaks requests and leaves some readable


def _nested_array(levels: int) -> bytes:
    """An AnyValue holding `levels` nested array_values, as raw protobuf (Python refuses to build it)."""
    def ld(field: int, payload: bytes) -> bytes:
        size, out = len(payload), bytearray()
        while True:
            out.append((size & 0x7F) | (0x80 if size > 0x7F else 0))
            size >>= 7
            if not size:
                break
        return bytes([field << 3 | 2]) + bytes(out) + payload
    value = ld(1, b"x")
    for _ in range(levels):
        value = ld(5, ld(1, value))
    # ExportLogsServiceRequest{resource_logs{scope_logs{log_records{body: value}}}}
    return ld(1, ld(2, ld(2, ld(5, value))))


@pytest.mark.parametrize("levels", [45, 48, 49, 50])
def test_the_protobuf_depth_limit_is_the_same(levels: int) -> None:
    value = _nested_array(levels)
    python, native = fz.python_rows("logs", value), fz.native_rows("logs", value, core)
    assert fz.first_difference(python, native) == ""


@pytest.mark.parametrize("body", ["İNFO: started", "ınfo", "über error", "warn\u00a0x", "fatalé", "日本 error 日本",
                                  "K-warning", "x_error", "error_x", "ERROR!", "\u0301error"])
def test_severity_of_non_ascii_text_follows_python(body: str) -> None:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    request = ExportLogsServiceRequest()
    request.resource_logs.add().scope_logs.add().log_records.add(body={"string_value": body})
    value = request.SerializeToString()
    assert fz.first_difference(fz.python_rows("logs", value), fz.native_rows("logs", value, core)) == ""


def test_floats_are_written_as_python_and_orjson_write_them() -> None:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    rng = random.Random(5)
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    for _ in range(2000):
        x = rng.choice([rng.uniform(-1e30, 1e30), 10 ** rng.uniform(-330, 308), rng.random() * 10 ** rng.randint(-8, 20),
                        float(rng.randint(-10**18, 10**18))])
        record = records.add()
        record.attributes.add(key="x", value={"double_value": x})
        record.body.kvlist_value.values.add(key="v", value={"array_value": {"values": [{"double_value": x}]}})
    value = request.SerializeToString()
    assert fz.first_difference(fz.python_rows("logs", value), fz.native_rows("logs", value, core)) == ""
