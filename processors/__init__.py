"""Stage 2a, transform: pure functions over batches (decode OTLP, parse JSON bodies, infer severity,
sample, compute RED metrics). No Kafka, no Faust, no ClickHouse here, so each is tested on plain data.
"""
