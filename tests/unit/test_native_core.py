"""The compiled core (maple_native) against the Python processors, which define the behaviour: the same
request gives the same rows (values, order, map order, partitions, RED points) or fails on both paths.

Random requests with hostile values (duplicate keys, deep and broken JSON, NaN, huge numbers, unusual
Unicode, ids of any length, merged repeated fields) and byte-level damage. Skipped when the core is not
built (NATIVE=0): the Python processors then do the work alone."""

from __future__ import annotations

import random

import pytest

from maple.native import core
from tests.helpers import otlp_fuzz as fz

pytestmark = pytest.mark.skipif(core is None, reason="the compiled core is not built (NATIVE=0)")

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


def test_a_json_bodys_level_over_the_senders_severity_is_the_same_on_both() -> None:
    from processors.logs import LogOptions

    rng = random.Random("prefer-body")
    options = LogOptions(prefer_body_level=True)
    for case in range(200):
        value = fz.logs_request(rng)
        python, native = fz.python_rows("logs", value, options), fz.native_rows("logs", value, core, options)
        assert fz.first_difference(python, native) == "", f"case {case}: {value.hex()}"


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


def test_the_sampler_decides_and_emits_the_same_on_span_blocks_as_on_columns() -> None:
    """One span partition fed the same requests as column dicts (Python) and as Native span blocks (core),
    from two tenants: some requests sent by both, so their traces share ids and are kept apart by tenant."""
    import orjson

    from apps.bench.e2e import trace_request
    from maple import blocks
    from maple.topics import FORMAT_NATIVE, SPANS
    from processors.sampling import DEFAULT_CONFIG, decode_config
    from processors.tail_sampler import PartitionSampler, SpanBatch, SpanColumns
    from topologies.batches import RawRecord, trace_batches

    rng = random.Random("sampler")
    config = decode_config({**DEFAULT_CONFIG, "decision_wait": "2s", "decision_wait_after_root_received": "1s", "policies": [
        *DEFAULT_CONFIG["policies"],
        {"name": "route", "type": "string_attribute", "string_attribute": {"key": "service.name", "values": ["db"]}},
        {"name": "many", "type": "span_count", "span_count": {"min_spans": 5}}]})
    python, native = PartitionSampler(config, 1), PartitionSampler(config, 1)
    out_python: list[tuple[int, str, dict]] = []
    out_native: list[tuple[int, str, dict]] = []
    offset = 0
    for n in range(120):
        # valid requests (the fuzzed ones mostly hold an item the processors refuse, decided on the Python path)
        body = trace_request(f"svc-{n % 3}", 64, n)[0] if n % 4 else fz.trace_request(rng)
        raw = RawRecord(body, "otlp.traces.raw", 0, n, {"maple.received": str(10**12 + n * 10**8).encode()},
                        10**6 + n * 100)
        try:
            python_out, native_out = trace_batches(raw, 1, 1), trace_batches(raw, 1, 1, None, core)
            if python_out.refused or native_out.refused:
                continue  # items refused (the Python path decided them): no span batches to compare
            pairs = zip(python_out.records, native_out.records, strict=True)
        except Exception:
            continue  # a request both paths refuse (covered above)
        for a, b in pairs:
            if a.topic != SPANS.name or dict(b.headers).get("maple.format") != b"Native":
                continue  # RED points, or a request the core left to the Python path (a time past Int64)
            for tenant in ("team-a", "team-b") if n % 5 == 0 else ("team-b" if n % 3 else "team-a",):
                columns = orjson.loads(a.value)
                block = SpanColumns(core.SpanBlock(b.value)) if n % 2 else core.SpanBlock(b.value)
                source = (f"otlp.traces.raw/0/{tenant}", (n, 0), 0)  # two senders: not copies of each other
                for sampler, cols, out in ((python, columns, out_python), (native, block, out_native)):
                    for emission in sampler.step(SpanBatch(offset, raw.timestamp_ms, cols, *source, tenant=tenant)):
                        rows = (emission.columns if isinstance(emission.columns, dict)
                                else blocks.decode(emission.columns, FORMAT_NATIVE))
                        out.append((emission.first_offset, emission.tenant, fz.normalize(rows)))
                offset += 1
    for sampler, out in ((python, out_python), (native, out_native)):
        for emission in sampler.step(SpanBatch(offset, 0, progress={0: 10**13})):
            rows = emission.columns if isinstance(emission.columns, dict) else blocks.decode(emission.columns, FORMAT_NATIVE)
            out.append((emission.first_offset, emission.tenant, fz.normalize(rows)))
    assert python.counts == native.counts and python.counts.spans_sampled > 50
    assert {tenant for _, tenant, _ in out_python} == {"team-a", "team-b"}
    assert out_python == out_native


def test_the_compiled_hash_is_the_collectors_fnv1a64() -> None:
    from processors.sampling import fnv1a64

    rng = random.Random(9)
    for n in range(300):
        data = rng.randbytes(n % 40)
        assert core.fnv1a64(data) == fnv1a64(data)


def test_the_python_native_codec_reads_and_writes_the_cores_blocks_byte_for_byte() -> None:
    """maple/blocks.py's plain-Python Native code (used where the core is not installed) against the core."""
    from apps.bench import e2e
    from maple import blocks

    rng = random.Random("codec")
    valid = {"logs": lambda n: e2e.log_request("svc", 40, n), "traces": lambda n: e2e.trace_request("svc", 40, n)[0],
             "metrics": lambda n: e2e.metric_request("svc", 40, n)}
    checked = 0
    for kind in ("logs", "traces", "metrics"):
        for n in range(40):
            body = valid[kind](n) if n % 2 else MAKERS[kind](rng)  # fuzzed ones often go to the Python path
            raw = fz.RawRecord(body, f"otlp.{kind}.raw", 0, 0, {}, 1)
            try:
                records = fz.native_records(kind, raw, core).records
            except Exception:
                continue
            for record in records:
                if dict(record.headers).get("maple.format") != b"Native":
                    continue  # left to the Python path: JSONColumns
                block = record.value
                columns, types = blocks._decode_native(block)
                assert blocks.encode_native(columns, types) == block
                assert blocks._native_rows(block) == core.block_rows(block)
                rows = blocks._native_rows(block)
                if rows >= 2:
                    picked = sorted(rng.sample(range(rows), rng.randint(1, rows)))
                    expected = blocks.encode_native({k: [v[i] for i in picked] for k, v in columns.items()}, types)
                    assert core.take_rows(block, picked) == expected
                    halves = core.split_block(block)
                    assert halves is not None and halves[0] + halves[1] != block
                    assert blocks._native_rows(halves[0]) + blocks._native_rows(halves[1]) == rows
                checked += 1
    assert checked > 60
