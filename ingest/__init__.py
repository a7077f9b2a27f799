"""Stage 1, receive: OTLP/gRPC and OTLP/HTTP receivers that write each accepted request to a raw Kafka topic."""
