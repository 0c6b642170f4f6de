"""The OTLP ingest service: ``decisiontrace serve``.

Agents export their spans over OTLP (directly, or through an OpenTelemetry Collector
that routes by trace id); the service assembles the runs in them with the processor's
own code and writes them to a shared store. See ``docs/ingest.md``.
"""

from __future__ import annotations

from decisiontrace.ingest.service import (
    DEFAULT_GRPC,
    DEFAULT_HTTP,
    TOKEN_ENV_VAR,
    IngestService,
    token_from_environment,
)

__all__ = [
    "DEFAULT_GRPC",
    "DEFAULT_HTTP",
    "TOKEN_ENV_VAR",
    "IngestService",
    "token_from_environment",
]
