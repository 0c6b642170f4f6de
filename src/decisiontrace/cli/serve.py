"""``decisiontrace serve``: the OTLP ingest service in the foreground."""

from __future__ import annotations

import logging

import click

from decisiontrace.cli._errors import CommandError
from decisiontrace.cli._options import store_option
from decisiontrace.cli._store import store_url

_OFF = ("none", "off", "")


@click.command(
    epilog="""\b
Examples:
  decisiontrace serve --store postgresql://ingest@db:5432/runs
  decisiontrace serve --store runs.db --grpc 0.0.0.0:4317 --http none
  DECISIONTRACE_INGEST_TOKEN=s3cret decisiontrace serve --tls-cert c.pem --tls-key k.pem

Agents export to it with the standard OTLP exporter variables, e.g.
OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 and, with a token,
OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer s3cret".
""",
)
@store_option
@click.option(
    "--grpc",
    "grpc_address",
    default="127.0.0.1:4317",
    show_default=True,
    metavar="HOST:PORT",
    help="OTLP/gRPC address ('none' for none).",
)
@click.option(
    "--http",
    "http_address",
    default="127.0.0.1:4318",
    show_default=True,
    metavar="HOST:PORT",
    help="OTLP/HTTP address, also serving /health ('none').",
)
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="File holding the bearer token clients must send "
    "(default: $DECISIONTRACE_INGEST_TOKEN; none: no token needed).",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="PEM certificate: serve TLS on both protocols (with --tls-key).",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="PEM private key for --tls-cert.",
)
@click.option(
    "--max-request-bytes",
    type=click.IntRange(min=1),
    default=16 * 1024 * 1024,
    show_default=True,
    help="Larger requests are refused (HTTP 413).",
)
@click.option(
    "--max-concurrency",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Requests handled at once per protocol.",
)
@click.option(
    "--max-queue-spans",
    type=click.IntRange(min=1),
    default=200_000,
    show_default=True,
    help="Spans waiting to be assembled; beyond, HTTP 429.",
)
@click.pass_context
def serve(
    ctx: click.Context,
    grpc_address: str,
    http_address: str,
    token_file: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    max_request_bytes: int,
    max_concurrency: int,
    max_queue_spans: int,
) -> int:
    """Receive OTLP traces (gRPC and HTTP) and store the runs in them.

    Runs are assembled from the spans with the same code as the in-process processor and
    written to the store (--store, else $DECISIONTRACE_STORE). Binds 127.0.0.1 unless
    told otherwise. SIGTERM or Ctrl-C stops it after storing everything it holds.
    """
    from decisiontrace.ingest import IngestService, token_from_environment
    from decisiontrace.stores import open_store

    if token_file is not None:
        with open(token_file, encoding="utf-8") as file:
            token: str | None = file.read().strip()
        if not token:
            raise CommandError(f"the token file {token_file} is empty")
    else:
        token = token_from_environment()
    url = store_url(ctx)
    store = open_store(url)
    # Before the service: its writer logs at once what it takes back from the journal.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        service = IngestService(
            store,
            grpc_address=None if grpc_address.lower() in _OFF else grpc_address,
            http_address=None if http_address.lower() in _OFF else http_address,
            token=token,
            tls_cert=tls_cert,
            tls_key=tls_key,
            max_request_bytes=max_request_bytes,
            max_concurrency=max_concurrency,
            max_queue_spans=max_queue_spans,
        )
    except BaseException:
        store.close()
        raise

    def started() -> None:
        listening = []
        if service.grpc_port is not None:
            host = grpc_address.rpartition(":")[0]
            listening.append(f"OTLP/gRPC on {host}:{service.grpc_port}")
        if service.http_port is not None:
            host = http_address.rpartition(":")[0]
            listening.append(f"OTLP/HTTP on {host}:{service.http_port}")
        click.echo(
            f"decisiontrace ingest: {', '.join(listening)}; storing runs in "
            f"{getattr(store, 'url', url)}{'; bearer token required' if token else ''}",
            err=True,
        )

    try:
        service.serve_until_signal(on_started=started)
    except OSError:
        store.close()
        raise
    health = service.receiver.health()
    click.echo(
        f"decisiontrace ingest: stopped; {health['runs_written']} runs written, "
        f"{health['spans_accepted']} spans accepted, {health['spans_ignored']} ignored",
        err=True,
    )
    return 0


__all__ = ["serve"]
